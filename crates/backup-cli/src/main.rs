//! `secrets-backup`: list, show, verify and restore snapshots of Secrets Manager secrets (and
//! run a backup by hand). Secret values are never printed.
//!
//! Every snapshot it uses is trusted first (`backup::snapshot::trust`): its manifest's signature
//! verifies with the signing key (`--signing-key` / `BACKUP_SIGNING_KEY_ID`, required), its part
//! list is whole, its chain is checked, and restore refuses another source's snapshot unless
//! `--allow-other-source`.
//!
//! Exit status: 0 success; 1 error; 2 usage; 3 integrity failure (verify found a damaged,
//! tampered, unsigned or out-of-chain snapshot, or restore refused the snapshot); 4 with
//! `verify --fail-on-drift`, live differs. `report` has its own: 0 every secret in policy; 1
//! some secret out of policy; 2 no report (bad arguments, no access, any error).

use std::process::ExitCode;

mod render;
mod report;
mod telemetry;

use anyhow::Context as _;
use backup::domain::filters::ExpectedUnreadable;
use backup::domain::filters::{Filters, NamePattern, TagFilter};
use backup::domain::settings;
use backup::lambda::config::filters_from;
use backup::operations::report::{report, Policy, Scope, Sources};
use backup::operations::restore::{restore, KeyMap, RestoreError, RestoreOptions};
use backup::operations::verify::verify;
use backup::ports::aws::{base_config, AwsPorts, Settings};
use backup::ports::Identity;
use backup::snapshot::layout::account_region_prefix;
use backup::snapshot::manifest::{Destination, Manifest, Source};
use backup::snapshot::reader::{list_snapshots, parse_time, Selector};
use backup::snapshot::trust::{
    catalogue, chain_problems, check_source, select_trusted, ChooseError, Preference,
};
use std::sync::Arc;

use backup::ports::limited::{RateLimited, PUBLISHED};
use backup::snapshot::writer::{run_backup, BackupParams};
use clap::{Args, Parser, Subcommand};
use lambda_support::env::{non_empty, parse_bool};

/// Path-style S3 addressing (also implied by a custom endpoint), as for the function.
const FORCE_PATH_STYLE: &str = "BACKUP_S3_FORCE_PATH_STYLE";
const EXIT_INTEGRITY: u8 = 3;
const EXIT_DRIFT: u8 = 4;
/// `report`: some secret is out of policy.
const EXIT_OUT_OF_POLICY: u8 = 1;
/// `report`: no report could be produced (bad arguments, no access, any error).
const EXIT_NO_REPORT: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "secrets-backup",
    version,
    about = "List, verify and restore encrypted snapshots of AWS Secrets Manager secrets.",
    after_help = "Exit status: 0 ok, 1 error, 2 usage, 3 integrity failure, 4 drift (verify --fail-on-drift);\n\
                  report: 0 all in policy, 1 some secret out of policy, 2 no report (arguments, access, error).\n\
                  Snapshots live at s3://BUCKET/PREFIX/ACCOUNT/REGION/<time>-<id>/."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// Snapshot bucket.
    #[arg(long, env = "BACKUP_BUCKET", global = true)]
    bucket: Option<String>,
    /// The KMS key that signs the manifests (asymmetric, ECDSA_SHA_256): only snapshots whose
    /// signature verifies with it are used (required).
    #[arg(long = "signing-key", env = "BACKUP_SIGNING_KEY_ID", global = true)]
    signing_key: Option<String>,
    /// Key prefix of the snapshots.
    #[arg(long, env = "BACKUP_PREFIX", default_value = settings::DEFAULT_PREFIX, global = true)]
    prefix: String,
    /// Source account whose snapshots to use [default: the caller's, from STS].
    #[arg(long, global = true)]
    account: Option<String>,
    /// Source region (of the secrets) [default: the SDK's region].
    #[arg(long, global = true)]
    region: Option<String>,
    /// Region of the bucket and KMS key [default: the source region].
    #[arg(long, env = "BACKUP_REGION", global = true)]
    destination_region: Option<String>,
    /// Role to assume (STS) for S3 and KMS when the bucket is in another account.
    #[arg(long, env = "BACKUP_ROLE_ARN", global = true)]
    role_arn: Option<String>,
    #[arg(long, env = "BACKUP_ROLE_EXTERNAL_ID", global = true)]
    external_id: Option<String>,
    /// Secrets read or written at the same time.
    #[arg(long, env = "BACKUP_CONCURRENCY", default_value_t = settings::DEFAULT_CONCURRENCY,
          value_parser = |s: &str| settings::parse_concurrency(s), global = true)]
    concurrency: usize,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Debug logging on stderr.
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List snapshots: time, id, signature state, and the counts of the signed manifest.
    List,
    /// Show a snapshot's manifest (no values).
    Show {
        /// Snapshot id (or unique prefix, or folder name), or `latest`.
        #[arg(default_value = "latest")]
        snapshot: String,
    },
    /// Decrypt every part, check every hash and GCM tag, and compare with the live secrets.
    Verify {
        #[command(flatten)]
        which: Which,
        /// Only check integrity; do not read live secrets.
        #[arg(long)]
        no_live: bool,
        /// Only secrets whose name matches (prefix, or pattern with `*`); repeatable.
        #[arg(long = "filter", value_name = "PATTERN")]
        filters: Vec<String>,
        /// Exit 4 when live secrets differ from the snapshot.
        #[arg(long)]
        fail_on_drift: bool,
    },
    /// Show what a restore would change (dry run), or with --apply, restore.
    Restore {
        #[command(flatten)]
        which: Which,
        /// Only secrets whose name matches (prefix, or pattern with `*`); repeatable.
        #[arg(long = "filter", value_name = "PATTERN")]
        filters: Vec<String>,
        /// Write to Secrets Manager. Without it nothing is written.
        #[arg(long)]
        apply: bool,
        /// Also restore secrets rotated since the snapshot (skipped by default: their snapshot
        /// AWSCURRENT is now AWSPREVIOUS, or rotation is on and the live AWSCURRENT is newer).
        #[arg(long)]
        include_rotated: bool,
        /// Configure rotation again (function and schedule) on the secrets it recreates.
        #[arg(long)]
        restore_rotation: bool,
        /// KMS keys to use in place of the snapshot's, for a restore into another region:
        /// `old=new,old=new` (key ids, ARNs or aliases); repeatable.
        #[arg(long = "kms-key-map", value_name = "OLD=NEW,...",
              value_parser = |s: &str| KeyMap::parse(s))]
        kms_key_maps: Vec<KeyMap>,
        /// Restore a snapshot taken in this region into the source region (`--region`): a
        /// customer KMS key of that region then needs a `--kms-key-map` entry [default: the
        /// source region].
        #[arg(long, value_name = "REGION")]
        snapshot_region: Option<String>,
        /// Restore a snapshot of another account or region than the target (a disaster-recovery
        /// copy); without it such a snapshot is refused.
        #[arg(long)]
        allow_other_source: bool,
    },
    /// Compliance report: per secret, rotation against its schedule, the last trusted backup of
    /// its current version, the last drill that verified it, its KMS key's state and owning
    /// service. Metadata only (no value is read).
    #[command(after_help = REPORT_HELP)]
    Report(ReportArgs),
    /// Take a snapshot now (what the scheduled function does).
    Backup {
        /// KMS key for the parts' data keys.
        #[arg(long, env = "BACKUP_KMS_KEY_ID")]
        kms_key_id: String,
        /// SSE-KMS key of the objects [default: --kms-key-id].
        #[arg(long, env = "BACKUP_S3_KMS_KEY_ID")]
        s3_kms_key_id: Option<String>,
        /// Only secrets whose name starts with this; repeatable.
        #[arg(long = "name-prefix")]
        name_prefixes: Vec<String>,
        /// Only secrets with this tag (`key=value` or `key`); repeatable, all must match.
        #[arg(long = "tag", value_parser = |s: &str| TagFilter::parse(s))]
        tags: Vec<TagFilter>,
        /// Part size (bytes, KiB or MiB).
        #[arg(long, env = "BACKUP_PART_SIZE", default_value = "4MiB",
              value_parser = |s: &str| settings::parse_part_size(s))]
        part_size: usize,
        /// Secrets expected to be unreadable: names, or prefixes ending in `*` (marked as
        /// expected in the manifest; the others make the run exit 1).
        #[arg(long, env = "BACKUP_EXPECTED_UNREADABLE", value_name = "NAME|PREFIX*,...",
              value_parser = |s: &str| ExpectedUnreadable::parse(s))]
        expected_unreadable: Option<ExpectedUnreadable>,
        /// Percentage of each published Secrets Manager quota the reads may use (1-100).
        #[arg(long, env = "BACKUP_QUOTA_SHARE", default_value_t = 20,
              value_parser = clap::value_parser!(u32).range(1..=100))]
        quota_share: u32,
    },
}

const REPORT_HELP: &str = "\
Findings (a secret with any is out of policy):
  rotation-off                   rotation is not enabled (unless --allow-rotation-off)
  rotation-overdue               last rotated (or created) + schedule + --rotation-grace is past
  never-backed-up                in no trusted (signed, verified) snapshot
  current-version-not-backed-up  in trusted snapshots, but not its current version
  backup-stale                   newest trusted snapshot of its current version older than --max-backup-age
  no-recent-drill                no drill verified its current version within --max-drill-age
                                 (only with --drill-log-group)
  key-disabled, key-pending-deletion, key-unusable
                                 its KMS key (DescribeKey); aws/secretsmanager is not described

Exit status: 0 every secret in policy; 1 some secret out of policy; 2 no report could be
produced (bad arguments, no access, any other error).";

/// A duration: `48h`, `14d`, `30m`, `2days` (humantime).
fn parse_age(s: &str) -> Result<chrono::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 48h, 14d)"))?;
    chrono::Duration::from_std(d).map_err(|e| format!("{s:?}: {e}"))
}

/// The report's formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// A plain-text table, findings listed below it.
    Table,
    /// CSV with a header row.
    Csv,
    /// JSON (also `--json`).
    Json,
    /// A self-contained HTML page (inline CSS and SVG chart).
    Html,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Only secrets whose name matches (prefix, or pattern with `*`); repeatable.
    #[arg(long = "filter", value_name = "PATTERN")]
    filters: Vec<String>,
    /// The newest trusted snapshot of a secret's current version must be younger than this:
    /// twice the default daily BackupSchedule, so one missed run is not yet a finding.
    #[arg(long, default_value = "48h", value_parser = parse_age)]
    max_backup_age: chrono::Duration,
    /// The drill's log group (the template's is /aws/lambda/<stack>-secrets-backup-drill):
    /// read its `verify summary` lines to find the last drill that verified each secret.
    /// Without it drills are not checked.
    #[arg(long, env = "BACKUP_DRILL_LOG_GROUP")]
    drill_log_group: Option<String>,
    /// A drill must have verified a secret's current version within this long: twice the
    /// default weekly VerifySchedule.
    #[arg(long, default_value = "14d", value_parser = parse_age)]
    max_drill_age: chrono::Duration,
    /// How long past its due date a rotation is not yet overdue (the default rotation window
    /// of a schedule in days is the whole day).
    #[arg(long, default_value = "24h", value_parser = parse_age)]
    rotation_grace: chrono::Duration,
    /// A secret without rotation is in policy.
    #[arg(long)]
    allow_rotation_off: bool,
    /// Judge the policy at this time instead of now (RFC 3339, or `2025-01-02 03:04` UTC), e.g.
    /// to see what falls out of policy within a week.
    #[arg(long, value_parser = |s: &str| parse_time(s))]
    at: Option<chrono::DateTime<chrono::Utc>>,
    /// The most trusted snapshots read, newest first.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    max_snapshots: u32,
}

#[derive(Args, Debug)]
#[group(multiple = false)]
struct Which {
    /// Snapshot id (or unique prefix, or folder name), or `latest` [default: latest].
    #[arg(long)]
    snapshot: Option<String>,
    /// The last snapshot completed at or before this time (RFC 3339, or `2025-01-02 03:04` UTC).
    #[arg(long, value_parser = |s: &str| parse_time(s))]
    as_of: Option<chrono::DateTime<chrono::Utc>>,
}

impl Which {
    fn selector(&self) -> Selector {
        match (&self.snapshot, &self.as_of) {
            (_, Some(t)) => Selector::AsOf(*t),
            (Some(s), None) => Selector::parse(s),
            (None, None) => Selector::Latest,
        }
    }
}

fn patterns(filters: &[String]) -> Vec<NamePattern> {
    filters.iter().map(NamePattern::new).collect()
}

fn progress(what: &'static str) -> impl Fn(usize, usize) + Sync {
    move |done, total| {
        if total > 1 {
            eprintln!("{what}: part {done}/{total}");
        }
    }
}

struct Ctx {
    ports: AwsPorts,
    account: String,
    signing_key: String,
    global: Global,
}

impl Ctx {
    fn prefix(&self) -> String {
        settings::normalize_prefix(&self.global.prefix)
    }

    fn location(&self) -> String {
        self.location_in(&self.ports.source_region)
    }

    fn location_in(&self, region: &str) -> String {
        format!(
            "s3://{}/{}",
            self.bucket(),
            account_region_prefix(&self.prefix(), &self.account, region)
        )
    }

    fn bucket(&self) -> &str {
        self.global.bucket.as_deref().unwrap_or_default()
    }

    /// The snapshot `selector` names, trusted (signature, folder), with the chain's problems;
    /// every newer snapshot passed over is printed as a warning.
    async fn trusted(&self, selector: &Selector) -> Result<Trusted, Untrusted> {
        self.trusted_in(selector, &self.ports.source_region).await
    }

    /// [`Ctx::trusted`] among the snapshots taken in `region`.
    async fn trusted_in(&self, selector: &Selector, region: &str) -> Result<Trusted, Untrusted> {
        let location = self.location_in(region);
        let list = list_snapshots(&self.ports.store, &self.prefix(), &self.account, region)
            .await
            .with_context(|| format!("listing snapshots under {location}"))?;
        // The deployment's filters when the environment names them (as the function's does).
        let lookup = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let own = lookup("BACKUP_NAME_PREFIXES").is_some() || lookup("BACKUP_TAGS").is_some();
        let filters = filters_from(lookup)?;
        let chosen = select_trusted(
            &self.ports.store,
            &self.ports.keys,
            &self.signing_key,
            &list,
            selector,
            &location,
            Preference {
                filters: own.then_some(&filters),
            },
        )
        .await
        .map_err(|e| match e {
            ChooseError::Untrusted(_) | ChooseError::NoneTrusted { .. } => {
                Untrusted::Integrity(e.to_string())
            }
            e => Untrusted::Other(e.into()),
        })?;
        for note in chosen.notes.iter().chain(&chosen.rejected) {
            eprintln!("warning: {note}");
        }
        let chain = chain_problems(
            &self.ports.store,
            &self.ports.keys,
            &self.signing_key,
            &list,
            &chosen.signed,
        )
        .await;
        Ok(Trusted {
            manifest: chosen.signed.manifest,
            notes: chosen.notes,
            rejected: chosen.rejected,
            chain,
        })
    }

    fn print_json<T: serde::Serialize>(&self, v: &T) {
        println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
    }
}

/// A snapshot whose signature verified, what was passed over to choose it (already printed as
/// warnings), and its chain's problems.
struct Trusted {
    manifest: Manifest,
    notes: Vec<String>,
    /// Newer snapshots that do not verify (verify fails on them).
    rejected: Vec<String>,
    chain: Vec<String>,
}

/// Why no trusted snapshot: an integrity failure (exit 3) or another error.
enum Untrusted {
    Integrity(String),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Untrusted {
    fn from(e: E) -> Self {
        Untrusted::Other(e.into())
    }
}

/// The trusted snapshot, or the exit status after an integrity failure was printed.
macro_rules! trusted_or_exit {
    ($ctx:expr, $selector:expr) => {
        match $ctx.trusted($selector).await {
            Ok(t) => t,
            Err(Untrusted::Integrity(e)) => {
                eprintln!("error: {e}");
                return Ok(EXIT_INTEGRITY);
            }
            Err(Untrusted::Other(e)) => return Err(e),
        }
    };
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let Cli { global, command } = cli;
    let Some(bucket) = global.bucket.clone() else {
        // A usage error, like the ones clap reports: exit status 2.
        eprintln!("error: the snapshot bucket is required: --bucket or BACKUP_BUCKET");
        return Ok(2);
    };
    let Some(signing_key) = global.signing_key.clone() else {
        eprintln!(
            "error: the manifest signing key is required: --signing-key or BACKUP_SIGNING_KEY_ID \
             (an unsigned snapshot cannot be told from a forged one)"
        );
        return Ok(2);
    };
    // The function's limits (each call ends within a minute), AWS_MAX_ATTEMPTS / AWS_RETRY_MODE
    // applied.
    let limits = lambda_support::SdkLimits::BACKUP.with_env(|k| std::env::var(k).ok())?;
    let mut base = base_config(&limits).await;
    if let Some(r) = &global.region {
        base = base
            .to_builder()
            .region(aws_config::Region::new(r.clone()))
            .build();
    }
    let (kms_key_id, s3_kms_key_id) = match &command {
        Command::Backup {
            kms_key_id,
            s3_kms_key_id,
            ..
        } => (Some(kms_key_id.clone()), s3_kms_key_id.clone()),
        _ => (None, None),
    };
    let s3_force_path_style = match non_empty(|k| std::env::var(k).ok(), FORCE_PATH_STYLE) {
        Some(v) => parse_bool(FORCE_PATH_STYLE, &v)?,
        None => false,
    };
    let settings = Settings {
        bucket: bucket.clone(),
        destination_region: global.destination_region.clone(),
        role_arn: global.role_arn.clone(),
        external_id: global.external_id.clone(),
        kms_key_id,
        s3_kms_key_id,
        s3_force_path_style,
    };
    let ports = AwsPorts::new(&base, &settings).await;
    let account = match &global.account {
        Some(a) => a.clone(),
        None => ports
            .identity
            .account_id()
            .await
            .context("finding the source account (pass --account to skip STS)")?,
    };
    let ctx = Ctx {
        ports,
        account,
        signing_key,
        global,
    };
    let json = ctx.global.json;
    let concurrency = ctx.global.concurrency;

    match command {
        Command::List => {
            let list = catalogue(
                &ctx.ports.store,
                &ctx.ports.keys,
                &ctx.signing_key,
                &ctx.prefix(),
                &ctx.account,
                &ctx.ports.source_region,
            )
            .await
            .with_context(|| format!("listing snapshots under {}", ctx.location()))?;
            if json {
                ctx.print_json(&list);
            } else {
                print!("{}", render::snapshots(&list, &ctx.location()));
            }
            Ok(0)
        }
        Command::Show { snapshot } => {
            let t = trusted_or_exit!(ctx, &Selector::parse(&snapshot));
            for p in &t.chain {
                eprintln!("warning: {p}");
            }
            let m = t.manifest;
            if json {
                ctx.print_json(&m);
            } else {
                print!("{}", render::manifest(&m));
            }
            Ok(0)
        }
        Command::Verify {
            which,
            no_live,
            filters,
            fail_on_drift,
        } => {
            let t = trusted_or_exit!(ctx, &which.selector());
            let m = t.manifest;
            eprintln!(
                "verifying snapshot {} ({} parts, {} secrets)",
                m.head.snapshot_id,
                m.head.parts.len(),
                m.secrets.len()
            );
            let mut report = verify(
                ctx.ports.ports(),
                &m,
                !no_live,
                &patterns(&filters),
                concurrency,
                &progress("verify"),
            )
            .await
            .with_context(|| format!("verifying snapshot {}", m.head.snapshot_id))?;
            report.manifest_problems.extend(t.chain);
            report.manifest_problems.extend(t.rejected);
            report.warnings = t.notes;
            if json {
                ctx.print_json(&report);
            } else {
                let location = format!("s3://{}/{}", ctx.bucket(), m.head.folder);
                print!("{}", render::verify(&report, &location));
            }
            Ok(if !report.integrity_ok() {
                EXIT_INTEGRITY
            } else if fail_on_drift && report.drift() {
                EXIT_DRIFT
            } else {
                0
            })
        }
        Command::Restore {
            which,
            filters,
            apply,
            include_rotated,
            restore_rotation,
            kms_key_maps,
            snapshot_region,
            allow_other_source,
        } => {
            let mut kms_key_map = KeyMap::default();
            for m in kms_key_maps {
                kms_key_map.extend(m);
            }
            let options = RestoreOptions {
                apply,
                include_rotated,
                restore_rotation,
                kms_key_map,
                target_region: Some(ctx.ports.source_region.clone()),
            };
            let from = snapshot_region.unwrap_or_else(|| ctx.ports.source_region.clone());
            let t = match ctx.trusted_in(&which.selector(), &from).await {
                Ok(t) => t,
                Err(Untrusted::Integrity(e)) => {
                    eprintln!("error: {e}");
                    return Ok(EXIT_INTEGRITY);
                }
                Err(Untrusted::Other(e)) => return Err(e),
            };
            let m = t.manifest;
            // The chain is about the other snapshots: this one is signed and whole, so restoring
            // it stays safe; its problems are named, not refused.
            for p in &t.chain {
                eprintln!("warning: {p}");
            }
            // The target is where the credentials write: their account (STS), whatever
            // `--account` chose to read.
            let target = match &ctx.global.account {
                None => ctx.account.clone(),
                Some(_) => ctx
                    .ports
                    .identity
                    .account_id()
                    .await
                    .context("finding the target account (STS)")?,
            };
            // `--snapshot-region` is the explicit choice of another region; another account
            // still needs `--allow-other-source`.
            if let Err(e) = check_source(&m, &target, &from, allow_other_source) {
                eprintln!("error: {e}");
                return Ok(EXIT_INTEGRITY);
            }
            eprintln!(
                "{} snapshot {} ({}, {} secrets)",
                if apply {
                    "restoring from"
                } else {
                    "planning a restore from"
                },
                m.head.snapshot_id,
                m.head.started_at.to_rfc3339(),
                m.secrets.len()
            );
            match restore(
                ctx.ports.ports(),
                &m,
                &patterns(&filters),
                &options,
                concurrency,
                &progress("restore"),
            )
            .await
            {
                Ok(report) => {
                    if json {
                        ctx.print_json(&report);
                    } else {
                        print!("{}", render::restore(&report));
                    }
                    Ok(if report.errors() > 0 { 1 } else { 0 })
                }
                Err(e @ RestoreError::Integrity { .. }) => {
                    eprintln!("error: {e}");
                    Ok(EXIT_INTEGRITY)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Report(args) => {
            let base_region = ctx.ports.source_region.clone();
            let key_directory = backup::ports::aws::KmsKeys::directory(&base);
            let drills = args
                .drill_log_group
                .as_ref()
                .map(|g| backup::ports::aws::CloudWatchDrillLog::from_config(&base, g.clone()));
            let scope = Scope {
                signing_key: ctx.signing_key.clone(),
                prefix: ctx.prefix(),
                account: ctx.account.clone(),
                region: base_region,
                vault: ctx.location(),
                patterns: patterns(&args.filters),
                max_snapshots: args.max_snapshots as usize,
            };
            let policy = Policy {
                at: args.at.unwrap_or_else(chrono::Utc::now),
                max_backup_age: args.max_backup_age,
                max_drill_age: drills.is_some().then_some(args.max_drill_age),
                rotation_grace: args.rotation_grace,
                allow_rotation_off: args.allow_rotation_off,
            };
            let sources = Sources {
                secrets: &ctx.ports.secrets,
                store: &ctx.ports.store,
                vault_keys: &ctx.ports.keys,
                key_directory: &key_directory,
                drills: drills.as_ref().map(|d| d as &dyn backup::ports::DrillLog),
            };
            let r = report(sources, &scope, policy, concurrency).await?;
            let format = if json { Format::Json } else { args.format };
            match format {
                Format::Table => print!("{}", report::text(&r)),
                Format::Csv => print!("{}", report::csv(&r)?),
                Format::Json => ctx.print_json(&r),
                Format::Html => print!("{}", report::html(&r)),
            }
            Ok(if r.out_of_policy() {
                EXIT_OUT_OF_POLICY
            } else {
                0
            })
        }
        Command::Backup {
            kms_key_id,
            name_prefixes,
            tags,
            part_size,
            expected_unreadable,
            quota_share,
            ..
        } => {
            let params = BackupParams {
                snapshot_id: uuid::Uuid::new_v4().to_string(),
                started_at: chrono::Utc::now(),
                prefix: ctx.prefix(),
                source: Source {
                    account_id: ctx.account.clone(),
                    region: ctx.ports.source_region.clone(),
                },
                destination: Destination {
                    bucket: bucket.clone(),
                    region: ctx.ports.destination_region.clone(),
                    role_arn: ctx.global.role_arn.clone(),
                },
                kms_key_id,
                signing_key_id: ctx.signing_key.clone(),
                filters: Filters {
                    name_prefixes,
                    tags,
                },
                concurrency,
                part_size,
                expected_unreadable: expected_unreadable.unwrap_or_default(),
            };
            // The reads within a share of the quotas, as the function's
            // (`crates/backup/src/ports/limited.rs`).
            let limited = RateLimited::new(
                Arc::new(ctx.ports.secrets.clone()),
                f64::from(quota_share) / 100.0,
                PUBLISHED,
            );
            let mut ports = ctx.ports.ports();
            ports.secrets = &limited;
            let report = run_backup(ports, &params).await?;
            for w in &report.chain_warnings {
                eprintln!("warning: not linked into the chain: {w}");
            }
            if json {
                ctx.print_json(&report.head);
            } else {
                let s = &report.head.summary;
                println!(
                    "snapshot {} written to {}: {} secrets ({} read, {} carried over), {} versions, {} parts, {} failures",
                    params.snapshot_id,
                    report.location(),
                    s.secrets,
                    s.read,
                    s.carried_over,
                    s.versions,
                    s.parts,
                    s.failures
                );
                for f in &report.head.failures {
                    let expected = if f.expected { ", expected" } else { "" };
                    println!("  not backed up: {} ({}{expected})", f.name, f.reason);
                }
            }
            Ok(if report.head.failures.iter().all(|f| f.expected) {
                0
            } else {
                1
            })
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_cli(cli.global.verbose);
    // `report` gates pipelines: 1 means out of policy, so its failures are 2 (no report).
    let failure = if matches!(cli.command, Command::Report(_)) {
        ExitCode::from(EXIT_NO_REPORT)
    } else {
        ExitCode::FAILURE
    };
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            failure
        }
    }
}
