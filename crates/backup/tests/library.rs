//! Whole-library tests over the in-memory fakes (feature `testing`): backup, verify, diff,
//! restore, tampering, and the function end to end.

use std::sync::{Arc, Mutex};

use backup::domain::filters::{Filters, NamePattern};
use backup::domain::model::*;
use backup::lambda::config::BackupConfig;
use backup::lambda::function::Function;
use backup::operations::diff::Status;
use backup::operations::restore::{restore, RestoreError, RestoreOptions};
use backup::operations::verify::verify;
use backup::ports::fakes::*;
use backup::ports::{ObjectStore, Ports};
use backup::snapshot::crypto;
use backup::snapshot::manifest::*;
use backup::snapshot::reader::*;
use backup::snapshot::trust::*;
use backup::snapshot::writer::*;
use backup::testing::backup_params;
use chrono::Utc;
use serde_json::{json, Value};

struct World {
    secrets: Arc<FakeSecrets>,
    store: Arc<FakeStore>,
    kms: Arc<FakeKms>,
}

impl World {
    fn new() -> Self {
        World {
            secrets: Arc::default(),
            store: Arc::default(),
            kms: Arc::default(),
        }
    }

    fn ports(&self) -> Ports<'_> {
        Ports {
            secrets: self.secrets.as_ref(),
            store: self.store.as_ref(),
            keys: self.kms.as_ref(),
        }
    }

    /// 30 secrets: strings, binaries, several labelled versions, tags, policies, custom labels.
    fn populate(&self) {
        for i in 0..30 {
            let name = format!("app/s{i:02}");
            if i % 5 == 0 {
                self.secrets
                    .add(&name, SecretValue::binary(vec![i as u8, 0, 255, 10]));
            } else {
                self.secrets.add(
                    &name,
                    SecretValue::string(format!("{{\"password\":\"pw-{i}-old\"}}")),
                );
                self.secrets.put(
                    &name,
                    SecretValue::string(format!("{{\"password\":\"pw-{i}-cur\"}}")),
                    &[AWSCURRENT],
                );
            }
            if i % 3 == 0 {
                self.secrets
                    .put(&name, SecretValue::string(format!("blue-{i}")), &["BLUE"]);
            }
            self.secrets.with_secret(&name, |s| {
                s.meta.description = Some(format!("secret {i}"));
                s.meta.tags = vec![Tag { key: "team".into(), value: format!("t{}", i % 4) }];
                if i % 4 == 0 {
                    s.meta.resource_policy = Some(
                        json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny",
                        "Principal": "*", "Action": "secretsmanager:DeleteSecret", "Resource": "*"}]})
                        .to_string(),
                    );
                }
            });
        }
        self.secrets.add("other/x", SecretValue::string("not-app"));
    }

    async fn backup(&self, part_size: usize) -> BackupReport {
        let filters = Filters {
            name_prefixes: vec!["app/".into()],
            tags: vec![],
        };
        run_backup(self.ports(), &backup_params(filters, part_size))
            .await
            .unwrap()
    }

    async fn manifest(&self, sel: Selector) -> Manifest {
        let list = list_snapshots(self.store.as_ref(), "bk", "123456789012", "us-east-1")
            .await
            .unwrap();
        select_trusted(
            self.store.as_ref(),
            self.kms.as_ref(),
            FAKE_SIGNING_KEY_ARN,
            &list,
            &sel,
            "x",
            Preference::default(),
        )
        .await
        .unwrap()
        .signed
        .manifest
    }

    /// Everything that restore promises to bring back, per secret.
    fn state(&self) -> Vec<String> {
        let all = self.secrets.secrets.lock().unwrap();
        all.values()
            .map(|s| {
                let mut labelled: Vec<String> = s
                    .versions
                    .iter()
                    .flat_map(|v| {
                        v.labels
                            .iter()
                            .filter(|l| is_compared_label(l))
                            .map(|l| format!("{l}={:?}", value_bytes(&v.value)))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                labelled.sort();
                let mut tags = s.meta.tags.clone();
                tags.sort();
                format!(
                    "{} {:?} {:?} {:?} {:?} {:?}",
                    s.meta.name,
                    s.meta.description,
                    s.meta.kms_key_id,
                    tags,
                    s.meta.resource_policy,
                    labelled
                )
            })
            .collect()
    }
}

fn value_bytes(v: &SecretValue) -> Vec<u8> {
    match v {
        SecretValue::String(s) => s.as_bytes().to_vec(),
        SecretValue::Binary(b) => b.to_vec(),
    }
}

fn no_progress(_: usize, _: usize) {}

#[tokio::test]
async fn backup_then_verify_is_clean() {
    let w = World::new();
    w.populate();
    let report = w.backup(2048).await;
    let s = &report.head.summary;
    assert_eq!(s.secrets, 30, "only app/ secrets");
    assert_eq!(s.failures, 0);
    // 24 string secrets have AWSCURRENT + AWSPREVIOUS, 6 binary only AWSCURRENT, 10 have BLUE.
    assert_eq!(s.versions, 24 * 2 + 6 + 10);
    assert!(s.parts >= 3, "small parts: {}", s.parts);
    assert_eq!(w.kms.generated() as u64, s.parts, "one data key per part");
    // Parts are bounded (one record may exceed; these are all small).
    let m = w.manifest(Selector::Latest).await;
    for p in &m.head.parts {
        assert!(
            p.size < 2048 + 1024,
            "part {} is {} bytes",
            p.number,
            p.size
        );
    }
    // No value anywhere in plaintext objects, and the manifest has no values.
    for key in w.store.keys() {
        let data = w.store.read(&key);
        for needle in ["pw-1-cur", "pw-1-old", "blue-3"] {
            assert!(
                !data.windows(needle.len()).any(|x| x == needle.as_bytes()),
                "{needle} in {key}"
            );
        }
    }
    assert_eq!(m.secrets.len(), 30);
    let s03 = m.secrets.iter().find(|s| s.name == "app/s03").unwrap();
    assert_eq!(s03.versions.len(), 3);
    assert_eq!(s03.versions[0].labels, vec![AWSCURRENT]);
    assert_eq!(
        s03.versions[0].size,
        "{\"password\":\"pw-3-cur\"}".len() as u64
    );

    let v = verify(w.ports(), &m, true, &[], 4, &no_progress)
        .await
        .unwrap();
    assert!(v.integrity_ok(), "{v:?}");
    assert!(v.differences.is_empty(), "{:?}", v.differences);
    assert_eq!(v.counts.unchanged, 30);
    assert!(!v.drift());
}

#[tokio::test]
async fn change_delete_add_then_restore() {
    let w = World::new();
    w.populate();
    w.backup(4096).await;
    let before = w.state();
    let m = w.manifest(Selector::Latest).await;

    w.secrets.put(
        "app/s01",
        SecretValue::string("{\"password\":\"leaked\"}"),
        &[AWSCURRENT],
    );
    w.secrets
        .put("app/s03", SecretValue::string("blue-changed"), &["BLUE"]);
    w.secrets.with_secret("app/s02", |s| {
        s.meta.description = Some("edited".into());
        s.meta.tags.push(Tag {
            key: "extra".into(),
            value: "1".into(),
        });
        s.meta.resource_policy = Some("{}".into());
    });
    w.secrets.remove("app/s04");
    w.secrets.remove("app/s05"); // binary
    w.secrets
        .with_secret("app/s06", |s| s.deleted = Some(Utc::now()));
    w.secrets.add("app/new", SecretValue::string("n"));
    w.secrets.add("other/new", SecretValue::string("n"));

    let v = verify(w.ports(), &m, true, &[], 4, &no_progress)
        .await
        .unwrap();
    assert!(v.integrity_ok());
    let got: Vec<(String, Status)> = v
        .differences
        .iter()
        .map(|d| (d.name.clone(), d.status))
        .collect();
    assert_eq!(
        got,
        vec![
            ("app/new".into(), Status::New),
            ("app/s01".into(), Status::Changed),
            ("app/s02".into(), Status::Changed),
            ("app/s03".into(), Status::Changed),
            ("app/s04".into(), Status::Missing),
            ("app/s05".into(), Status::Missing),
            ("app/s06".into(), Status::Missing),
        ]
    );
    assert_eq!(v.counts.unchanged, 30 - 6);
    let s02 = &v.differences[2];
    assert_eq!(
        s02.detail(),
        "description differs; tags added: extra; resource policy differs"
    );

    // Dry run: the same list, nothing written.
    let writes = w.secrets.writes.load(std::sync::atomic::Ordering::SeqCst);
    let plan = restore(w.ports(), &m, &[], &opts(false), 4, &no_progress)
        .await
        .unwrap();
    assert_eq!(
        w.secrets.writes.load(std::sync::atomic::Ordering::SeqCst),
        writes
    );
    let names: Vec<&str> = plan.secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["app/s01", "app/s02", "app/s03", "app/s04", "app/s05", "app/s06"]
    );
    assert_eq!(plan.new, vec!["app/new"]);
    assert!(plan.secrets.iter().all(|s| !s.actions.is_empty()));
    // The CLI's text rendering of such a plan is checked in crates/backup-cli (src/render.rs).
    let text = serde_json::to_string(&plan).unwrap();
    assert!(!text.contains("leaked") && !text.contains("pw-"), "{text}");

    // By default app/s01 is skipped: its snapshot AWSCURRENT is now its AWSPREVIOUS (a value that
    // replaced it since, as a rotation would).
    let s01 = plan.secrets.iter().find(|s| s.name == "app/s01").unwrap();
    assert!(
        s01.actions[0].starts_with("skip: rotated since the snapshot"),
        "{s01:?}"
    );
    // Apply with --include-rotated: everything restore promises is back; app/new is left alone.
    let applied = restore(
        w.ports(),
        &m,
        &[],
        &RestoreOptions {
            apply: true,
            include_rotated: true,
            ..Default::default()
        },
        4,
        &no_progress,
    )
    .await
    .unwrap();
    assert_eq!(applied.errors(), 0, "{applied:?}");
    let mut after = w.state();
    after.retain(|s| !s.starts_with("app/new ") && !s.starts_with("other/new "));
    assert_eq!(after, before);
    // History kept: the leaked version still exists, now AWSPREVIOUS.
    w.secrets.with_secret("app/s01", |s| {
        let prev = s
            .versions
            .iter()
            .find(|v| v.labels.contains(&AWSPREVIOUS.to_string()))
            .unwrap();
        assert_eq!(value_bytes(&prev.value), b"{\"password\":\"leaked\"}");
    });
    // Recreated with the snapshot's version ids and AWSPREVIOUS.
    let snap_ids: Vec<String> = m
        .secrets
        .iter()
        .find(|s| s.name == "app/s04")
        .unwrap()
        .versions
        .iter()
        .map(|v| v.version_id.clone())
        .collect();
    w.secrets.with_secret("app/s04", |s| {
        let ids: Vec<String> = s.versions.iter().map(|v| v.id.clone()).collect();
        assert_eq!(ids, snap_ids);
        assert!(s
            .versions
            .iter()
            .any(|v| v.labels == vec![AWSPREVIOUS.to_string()]));
    });

    // Second apply: nothing to do, nothing written.
    let writes = w.secrets.writes.load(std::sync::atomic::Ordering::SeqCst);
    let again = restore(w.ports(), &m, &[], &opts(true), 4, &no_progress)
        .await
        .unwrap();
    assert!(again.secrets.is_empty(), "{:?}", again.secrets);
    assert_eq!(
        w.secrets.writes.load(std::sync::atomic::Ordering::SeqCst),
        writes
    );
    let v = verify(w.ports(), &m, true, &[], 4, &no_progress)
        .await
        .unwrap();
    assert_eq!(v.differences.len(), 1, "only app/new: {:?}", v.differences);
}

#[tokio::test]
async fn filtered_restore_touches_only_matches() {
    let w = World::new();
    w.populate();
    w.backup(4096).await;
    let m = w.manifest(Selector::Latest).await;
    w.secrets.remove("app/s10");
    w.secrets.remove("app/s20");
    let r = restore(
        w.ports(),
        &m,
        &[NamePattern::new("app/s1*")],
        &opts(true),
        4,
        &no_progress,
    )
    .await
    .unwrap();
    assert_eq!(
        r.secrets
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["app/s10"]
    );
    assert!(w.secrets.secrets.lock().unwrap().get("app/s20").is_none());
}

#[tokio::test]
async fn as_of_picks_the_right_snapshot() {
    let w = World::new();
    w.populate();
    let first = w.backup(1 << 20).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    w.secrets
        .put("app/s01", SecretValue::string("second"), &[AWSCURRENT]);
    let second = w.backup(1 << 20).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let third = w.backup(1 << 20).await;
    let between = first.head.completed_at + (second.head.started_at - first.head.completed_at) / 2;
    assert_eq!(
        w.manifest(Selector::AsOf(between)).await.head.snapshot_id,
        first.head.snapshot_id
    );
    // "As of" compares completion: at its start the second was not complete yet.
    assert_eq!(
        w.manifest(Selector::AsOf(second.head.started_at))
            .await
            .head
            .snapshot_id,
        first.head.snapshot_id
    );
    assert_eq!(
        w.manifest(Selector::AsOf(second.head.completed_at))
            .await
            .head
            .snapshot_id,
        second.head.snapshot_id
    );
    // Each snapshot chains to the one before.
    assert_eq!(first.head.previous, None);
    assert_eq!(
        second
            .head
            .previous
            .as_ref()
            .map(|p| p.snapshot_id.as_str()),
        Some(first.head.snapshot_id.as_str())
    );
    assert_eq!(
        third.head.previous.as_ref().map(|p| p.snapshot_id.as_str()),
        Some(second.head.snapshot_id.as_str())
    );
    assert_eq!(
        w.manifest(Selector::AsOf(Utc::now()))
            .await
            .head
            .snapshot_id,
        third.head.snapshot_id
    );
    assert_eq!(
        w.manifest(Selector::Latest).await.head.snapshot_id,
        third.head.snapshot_id
    );
    let list = catalogue(
        w.store.as_ref(),
        w.kms.as_ref(),
        FAKE_SIGNING_KEY_ARN,
        "bk",
        "123456789012",
        "us-east-1",
    )
    .await
    .unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|s| s.complete
        && s.signature == SignatureState::Verified
        && s.secrets == Some(30)
        && s.failures == Some(0)));
}

async fn tampered(w: &World, m: &Manifest) -> (Vec<u32>, String) {
    let v = verify(w.ports(), m, true, &[], 4, &no_progress)
        .await
        .unwrap();
    assert!(!v.integrity_ok());
    let bad: Vec<u32> = v.failed_parts().iter().map(|p| p.part).collect();
    let err = restore(w.ports(), m, &[], &opts(true), 4, &no_progress)
        .await
        .unwrap_err();
    assert!(matches!(err, RestoreError::Integrity { .. }));
    (bad, err.to_string())
}

#[tokio::test]
async fn tampering_is_detected_and_restore_refuses() {
    let w = World::new();
    w.populate();
    w.backup(2048).await;
    let m = w.manifest(Selector::Latest).await;
    let p1 = m.head.parts[0].key.clone();
    let p2 = m.head.parts[1].key.clone();
    let original1 = w.store.read(&p1);

    // A flipped byte.
    let mut flipped = original1.clone();
    let last = flipped.len() - 20;
    flipped[last] ^= 0x40;
    w.store.overwrite(&p1, flipped);
    let (bad, msg) = tampered(&w, &m).await;
    assert_eq!(bad, vec![1]);
    assert!(
        msg.contains("part 1") && msg.contains(&p1) && msg.contains("SHA-256"),
        "{msg}"
    );
    let v = verify(w.ports(), &m, false, &[], 4, &no_progress)
        .await
        .unwrap();
    assert_eq!(v.parts[0].decrypt, Check::Failed);
    assert!(
        v.parts[0].problems.iter().any(|p| p.contains("AES-GCM")),
        "{:?}",
        v.parts[0]
    );

    // Swapped parts.
    w.store.overwrite(&p1, w.store.read(&p2));
    let (bad, msg) = tampered(&w, &m).await;
    assert_eq!(bad, vec![1]);
    assert!(msg.contains("does not belong here"), "{msg}");

    // A part sealed under another encryption context, with a manifest that agrees on its hash.
    let (header, _) = crypto::parse_header(&original1).unwrap();
    let scope = m.head.scope();
    let plaintext = crypto::open(w.kms.as_ref(), FAKE_KEY_ARN, &scope, 1, &original1)
        .await
        .unwrap();
    let mut ctx: Vec<(&str, String)> = scope.encryption_context(1);
    ctx[1].1 = "other".into();
    let ctx: Vec<(&str, &str)> = ctx.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let forged = forge_with_context(&w.kms, &scope, &header, plaintext.as_slice(), &ctx);
    let mut m2 = m.clone();
    m2.head.parts[0].sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&forged));
    m2.head.parts[0].size = forged.len() as u64;
    w.store.overwrite(&p1, forged);
    let (bad, msg) = tampered(&w, &m2).await;
    assert_eq!(bad, vec![1]);
    assert!(msg.contains("encryption context"), "{msg}");

    // Restored to the original bytes: they pass every check but the S3 version id, which is
    // not the one signed.
    w.store.overwrite(&p1, original1);
    let v = verify(w.ports(), &m, true, &[], 4, &no_progress)
        .await
        .unwrap();
    assert!(!v.integrity_ok());
    assert_eq!(v.parts[0].sha256, Check::Ok);
    assert_eq!(v.parts[0].decrypt, Check::Ok);
    assert_eq!(v.parts[0].content, Check::Ok);
    assert!(
        v.parts[0].problems.len() == 1 && v.parts[0].problems[0].contains("not the signed version"),
        "{:?}",
        v.parts[0]
    );
}

/// Seal `plaintext` as AES-GCM under a fresh key wrapped with `context`, keeping `header`'s
/// claims (snapshot, part): what an attacker with KMS access but the wrong context could make.
fn forge_with_context(
    kms: &FakeKms,
    scope: &crypto::Scope,
    header: &crypto::PartHeader,
    plaintext: &[u8],
    context: &[(&str, &str)],
) -> Vec<u8> {
    use aes_gcm::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
    use base64::Engine as _;
    let key = aes_gcm::Aes256Gcm::generate_key(&mut OsRng);
    let cipher = aes_gcm::Aes256Gcm::new(&key);
    let nonce = aes_gcm::Aes256Gcm::generate_nonce(&mut OsRng);
    let mut buf = plaintext.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(&nonce, &scope.aad(header.part), &mut buf)
        .unwrap();
    buf.extend_from_slice(&tag);
    let mut h = header.clone();
    h.wrapped_key = base64::engine::general_purpose::STANDARD.encode(kms.wrap(&key, context));
    h.nonce = base64::engine::general_purpose::STANDARD.encode(nonce);
    let hj = serde_json::to_vec(&h).unwrap();
    let mut out = crypto::MAGIC.to_vec();
    out.extend_from_slice(&(hj.len() as u32).to_be_bytes());
    out.extend_from_slice(&hj);
    out.extend_from_slice(&buf);
    out
}

#[tokio::test]
async fn manifest_is_never_overwritten_and_parts_are_new_objects() {
    let w = World::new();
    w.populate();
    let r = w.backup(4096).await;
    let err = w
        .store
        .put_new(
            &r.manifest_key,
            backup::ports::Body::Bytes(vec![]),
            "x",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, backup::ports::ErrorKind::AlreadyExists);
}

/// The function's output as the runtime sends it.
fn output(summary: backup::lambda::summary::RunSummary) -> Value {
    serde_json::to_value(summary).unwrap()
}

fn function(w: Arc<World>, lines: Arc<Mutex<Vec<String>>>) -> Function {
    function_with(w, lines, &[])
}

fn function_with(
    w: Arc<World>,
    lines: Arc<Mutex<Vec<String>>>,
    extra: &[(&str, &str)],
) -> Function {
    let config = BackupConfig::from_lookup(|k| match k {
        "BACKUP_BUCKET" => Some("b".into()),
        "BACKUP_PREFIX" => Some("bk".into()),
        "BACKUP_KMS_KEY_ID" => Some(FAKE_KEY_ARN.into()),
        "BACKUP_SIGNING_KEY_ID" => Some(FAKE_SIGNING_KEY_ARN.into()),
        "BACKUP_PART_SIZE" => Some("2KiB".into()),
        _ => extra
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| v.to_string()),
    })
    .unwrap();
    Function {
        config,
        secrets: w.secrets.clone(),
        store: w.store.clone(),
        keys: w.kms.clone(),
        identity: Arc::new(FakeIdentity("123456789012")),
        source_region: "us-east-1".into(),
        destination_region: "us-east-1".into(),
        emit: Box::new(move |l| lines.lock().unwrap().push(l.to_string())),
        spokes: None,
    }
}

#[tokio::test]
async fn function_fails_the_invocation_but_writes_the_rest() {
    let w = Arc::new(World::new());
    w.populate();
    w.secrets
        .unreadable
        .lock()
        .unwrap()
        .insert("app/s07".into());
    let lines = Arc::new(Mutex::new(vec![]));
    let f = function(w.clone(), lines.clone());
    let event = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    let err = f.handle(event).await.unwrap_err();
    assert_eq!(err.error_type, "SnapshotIncomplete");
    assert!(
        err.message.contains("app/s07") && err.message.contains("AccessDenied"),
        "{}",
        err.message
    );
    let m = w.manifest(Selector::Latest).await;
    assert_eq!(
        m.secrets.len(),
        30,
        "every other secret (other/x included: no filter)"
    );
    assert_eq!(m.head.failures.len(), 1);
    assert_eq!(m.head.failures[0].name, "app/s07");
    let lines = lines.lock().unwrap();
    assert_eq!(lines.len(), 1);
    let emf: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(emf["Failures"], 1.0);
    assert_eq!(emf["Secrets"], 30.0);
    assert_eq!(emf["outcome"], "incomplete");
    assert!(!lines[0].contains("pw-"));
}

#[tokio::test]
async fn function_expected_unreadable_secrets_do_not_fail_the_run() {
    let w = Arc::new(World::new());
    w.populate();
    w.secrets
        .unreadable
        .lock()
        .unwrap()
        .extend(["app/s07".to_string(), "app/s11".to_string()]);
    let lines = Arc::new(Mutex::new(vec![]));
    let event = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    // Only listed ones missing: the run succeeds, the failures still reported, marked expected.
    let f = function_with(
        w.clone(),
        lines.clone(),
        &[("BACKUP_EXPECTED_UNREADABLE", "app/s07, app/s1*")],
    );
    let out = output(f.handle(event.clone()).await.unwrap());
    assert_eq!(out["outcome"], "complete", "{out:#}");
    assert_eq!(out["failedSecrets"].as_array().unwrap().len(), 2, "{out:#}");
    assert!(out["failedSecrets"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["expected"] == true));
    assert_eq!(w.manifest(Selector::Latest).await.head.failures.len(), 2);
    let emf: Value = serde_json::from_str(&lines.lock().unwrap()[0]).unwrap();
    assert_eq!(emf["Failures"], 0.0);
    assert_eq!(emf["ExpectedFailures"], 2.0);
    // One unlisted failure: the run fails, naming it (not the expected one).
    let f = function_with(
        w.clone(),
        lines.clone(),
        &[("BACKUP_EXPECTED_UNREADABLE", "app/s07")],
    );
    let err = f.handle(event).await.unwrap_err();
    assert_eq!(err.error_type, "SnapshotIncomplete");
    assert!(err.message.contains("app/s11"), "{}", err.message);
    assert!(!err.message.contains("app/s07 ("), "{}", err.message);
    assert!(err.message.contains("1 more expected"), "{}", err.message);
    let emf: Value = serde_json::from_str(&lines.lock().unwrap()[1]).unwrap();
    assert_eq!(emf["Failures"], 1.0);
    assert_eq!(emf["ExpectedFailures"], 1.0);
}

#[tokio::test]
async fn function_refuses_a_run_while_another_holds_the_lease() {
    let w = Arc::new(World::new());
    w.populate();
    let lines = Arc::new(Mutex::new(vec![]));
    let f = function(w.clone(), lines.clone());
    // A run in progress (its claim, never released).
    let claim = "bk/leases/123456789012/us-east-1/00000000000000000007/claim.json";
    let now = Utc::now();
    let body = json!({"runId": "other-run", "startedAt": now, "expiresAt": now + chrono::Duration::minutes(15)});
    w.store
        .put_new(
            claim,
            backup::ports::Body::Bytes(serde_json::to_vec(&body).unwrap()),
            "application/json",
            &[],
        )
        .await
        .unwrap();
    let before = w.store.keys().len();
    let err = f.handle(json!({})).await.unwrap_err();
    assert_eq!(err.error_type, "BackupInProgress");
    assert!(
        err.message.contains("other-run") && err.message.contains(claim),
        "{}",
        err.message
    );
    assert_eq!(w.store.keys().len(), before, "nothing written");
    // Released: the next run takes claim 8 and releases it.
    w.store
        .put_new(
            &claim.replace("claim.json", "released.json"),
            backup::ports::Body::Bytes(vec![]),
            "application/json",
            &[],
        )
        .await
        .unwrap();
    let out = output(f.handle(json!({})).await.unwrap());
    assert_eq!(out["outcome"], "complete");
    let keys = w.store.keys();
    assert!(keys.contains(
        &"bk/leases/123456789012/us-east-1/00000000000000000008/released.json".to_string()
    ));
    // Runs one after the other each take and release the lease.
    f.handle(json!({})).await.unwrap();
}

#[tokio::test]
async fn function_verify_mode_and_event_filters() {
    let w = Arc::new(World::new());
    w.populate();
    let lines = Arc::new(Mutex::new(vec![]));
    let f = function(w.clone(), lines.clone());
    let out = output(f.handle(json!({"namePrefixes": ["app/s1"]})).await.unwrap());
    assert_eq!(out["outcome"], "complete");
    assert_eq!(out["secrets"], 10);
    let out = output(f.handle(json!({"mode": "verify"})).await.unwrap());
    assert_eq!(out["outcome"], "intact");
    assert_eq!(out["counts"]["unchanged"], 10);
    // Tamper with the latest snapshot: the drill fails and names the part.
    let m = w.manifest(Selector::Latest).await;
    let key = m.head.parts[0].key.clone();
    let mut data = w.store.read(&key);
    let n = data.len() - 1;
    data[n] ^= 1;
    w.store.overwrite(&key, data);
    let err = f
        .handle(json!({"mode": "verify", "snapshot": "latest"}))
        .await
        .unwrap_err();
    assert_eq!(err.error_type, "IntegrityFailure");
    assert!(err.message.contains(&key), "{}", err.message);
    let bad = f
        .handle(json!({"mode": "verify", "snapshot": "nope"}))
        .await
        .unwrap_err();
    assert_eq!(bad.error_type, "SnapshotNotFound");
    let bad = f.handle(json!({"mode": "nope"})).await.unwrap_err();
    assert_eq!(bad.error_type, "InvalidEvent");
}

fn opts(apply: bool) -> RestoreOptions {
    RestoreOptions {
        apply,
        ..Default::default()
    }
}
