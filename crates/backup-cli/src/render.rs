//! Plain-text tables for the CLI. Nothing here ever sees a secret value.

use std::fmt::Write as _;

use backup::operations::restore::RestoreReport;
use backup::operations::verify::VerifyReport;
use backup::snapshot::manifest::Manifest;
use backup::snapshot::reader::{SignatureState, SnapshotInfo};

/// A left-aligned table with a header row; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn opt(n: Option<u64>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

pub fn snapshots(list: &[SnapshotInfo], location: &str) -> String {
    if list.is_empty() {
        return format!("No snapshots under {location}\n");
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            vec![
                s.started_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                s.id.clone(),
                opt(s.secrets),
                opt(s.versions),
                opt(s.failures),
                s.signature.to_string(),
                match &s.signature {
                    _ if !s.complete => "INCOMPLETE (no manifest)".into(),
                    SignatureState::Verified if s.failures.unwrap_or(0) > 0 => {
                        "complete, with failures".into()
                    }
                    SignatureState::Verified => "complete".into(),
                    SignatureState::Invalid(why) => format!("NOT TRUSTED: {why}"),
                    SignatureState::Unsigned => "NOT TRUSTED: unsigned".into(),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    format!(
        "Snapshots under {location}\n{}",
        table(
            &[
                "TIME",
                "SNAPSHOT",
                "SECRETS",
                "VERSIONS",
                "FAILURES",
                "SIGNATURE",
                "STATUS"
            ],
            &rows
        )
    )
}

pub fn manifest(m: &Manifest) -> String {
    let h = &m.head;
    let mut out = String::new();
    let _ = writeln!(out, "Snapshot    {}", h.snapshot_id);
    let _ = writeln!(
        out,
        "Location    s3://{}/{}",
        h.destination.bucket, h.folder
    );
    let _ = writeln!(
        out,
        "Time        {} to {}",
        h.started_at.to_rfc3339(),
        h.completed_at.to_rfc3339()
    );
    let _ = writeln!(
        out,
        "Source      account {} region {}",
        h.source.account_id, h.source.region
    );
    let _ = writeln!(out, "KMS key     {}", h.kms_key_id);
    let _ = writeln!(out, "Signed by   {} (verified)", h.signing_key_id);
    let _ = writeln!(
        out,
        "Previous    {}",
        h.previous
            .as_ref()
            .map(|p| format!("{} (manifest SHA-256 {})", p.snapshot_id, p.manifest_sha256))
            .unwrap_or_else(|| "none (the first of its chain)".into())
    );
    if !h.filters.is_empty() {
        let _ = writeln!(
            out,
            "Filters     {}",
            serde_json::to_string(&h.filters).unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "Contents    {} secrets, {} versions, {} bytes of values in {} parts ({} bytes stored)",
        h.summary.secrets,
        h.summary.versions,
        h.summary.value_bytes,
        h.summary.parts,
        h.summary.stored_bytes
    );
    let _ = writeln!(out, "Failures    {}", h.summary.failures);
    out.push('\n');
    let parts: Vec<Vec<String>> = h
        .parts
        .iter()
        .map(|p| {
            vec![
                p.number.to_string(),
                p.secrets.to_string(),
                p.size.to_string(),
                p.sha256.clone(),
                p.key.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["PART", "SECRETS", "BYTES", "SHA-256", "KEY"],
        &parts,
    ));
    out.push('\n');
    let mut secrets: Vec<_> = m.secrets.iter().collect();
    secrets.sort_by(|a, b| a.name.cmp(&b.name));
    let mut rows = vec![];
    for s in secrets {
        for (i, v) in s.versions.iter().enumerate() {
            rows.push(vec![
                if i == 0 {
                    s.name.clone()
                } else {
                    String::new()
                },
                v.version_id.clone(),
                v.labels.join(","),
                format!("{:?}", v.kind).to_lowercase(),
                v.size.to_string(),
                if i == 0 {
                    s.part.to_string()
                } else {
                    String::new()
                },
            ]);
        }
        if s.versions.is_empty() {
            rows.push(vec![
                s.name.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "0".into(),
                s.part.to_string(),
            ]);
        }
    }
    out.push_str(&table(
        &["SECRET", "VERSION", "LABELS", "TYPE", "BYTES", "PART"],
        &rows,
    ));
    if !h.failures.is_empty() {
        out.push_str("\nNot in this snapshot (failed to read):\n");
        let rows: Vec<Vec<String>> = h
            .failures
            .iter()
            .map(|f| vec![f.name.clone(), f.reason.clone()])
            .collect();
        out.push_str(&table(&["SECRET", "REASON"], &rows));
    }
    if !h.skipped.is_empty() {
        out.push_str("\nSkipped (deleted while the backup ran):\n");
        let rows: Vec<Vec<String>> = h
            .skipped
            .iter()
            .map(|f| vec![f.name.clone(), f.reason.clone()])
            .collect();
        out.push_str(&table(&["SECRET", "REASON"], &rows));
    }
    out
}

pub fn verify(r: &VerifyReport, location: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Snapshot {} ({}), taken {}, {} secrets in {} part(s)",
        r.snapshot_id,
        location,
        r.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        r.secrets_in_snapshot,
        r.parts.len()
    );
    out.push_str("\nIntegrity\n");
    let rows: Vec<Vec<String>> = r
        .parts
        .iter()
        .map(|p| {
            vec![
                p.part.to_string(),
                p.secrets.to_string(),
                p.sha256.to_string(),
                p.decrypt.to_string(),
                p.content.to_string(),
                if p.ok() {
                    "ok".into()
                } else {
                    p.problems.join("; ")
                },
            ]
        })
        .collect();
    out.push_str(&table(
        &["PART", "SECRETS", "SHA-256", "KMS+GCM", "CONTENT", "RESULT"],
        &rows,
    ));
    let _ = writeln!(out, "signature: verified");
    for p in &r.manifest_problems {
        let _ = writeln!(out, "manifest: {p}");
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if r.compared_live {
        out.push_str("\nLive comparison\n");
        if r.differences.is_empty() {
            out.push_str("no differences\n");
        } else {
            let rows: Vec<Vec<String>> = r
                .differences
                .iter()
                .map(|d| vec![d.name.clone(), d.status.to_string(), d.detail()])
                .collect();
            out.push_str(&table(&["SECRET", "STATUS", "DETAIL"], &rows));
        }
    }
    if !r.unverified.is_empty() {
        out.push_str("\nNot verified\n");
        let rows: Vec<Vec<String>> = r
            .unverified
            .iter()
            .map(|f| vec![f.name.clone(), f.reason.clone()])
            .collect();
        out.push_str(&table(&["SECRET", "REASON"], &rows));
    }
    if !r.backup_failures.is_empty() {
        out.push_str("\nNot in this snapshot (the backup could not read them)\n");
        let rows: Vec<Vec<String>> = r
            .backup_failures
            .iter()
            .map(|f| vec![f.name.clone(), f.reason.clone()])
            .collect();
        out.push_str(&table(&["SECRET", "REASON"], &rows));
    }
    let failed = r.failed_parts().len();
    let _ = writeln!(
        out,
        "\nResult: {}; parts {}/{} intact{}",
        if r.integrity_ok() {
            "INTACT"
        } else {
            "INTEGRITY FAILURE"
        },
        r.parts.len() - failed,
        r.parts.len(),
        if r.compared_live {
            format!(
                "; secrets: {} unchanged, {} changed, {} missing, {} new, {} not verified",
                r.counts.unchanged,
                r.counts.changed,
                r.counts.missing,
                r.counts.new,
                r.counts.unverified
            )
        } else {
            String::new()
        }
    );
    out
}

pub fn restore(r: &RestoreReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} from snapshot {} ({})",
        if r.applied {
            "Restore"
        } else {
            "Restore plan (dry run: nothing is written; add --apply)"
        },
        r.snapshot_id,
        r.folder
    );
    if r.secrets.is_empty() {
        out.push_str("\nNothing to restore: every secret matches the snapshot.\n");
    } else {
        let mut rows = vec![];
        for s in &r.secrets {
            let result = match (&s.error, r.applied) {
                (Some(e), _) if s.refused => format!("REFUSED: {e}"),
                (Some(e), _) => format!("FAILED: {e}"),
                (None, true) => "done".into(),
                (None, false) => "planned".into(),
            };
            let actions = if s.actions.is_empty() {
                "-".to_string()
            } else {
                s.actions.join("; ")
            };
            rows.push(vec![
                s.name.clone(),
                s.status.to_string(),
                s.detail.clone(),
                actions,
                result,
            ]);
        }
        out.push('\n');
        out.push_str(&table(
            &["SECRET", "STATUS", "DIFFERENCE", "ACTION", "RESULT"],
            &rows,
        ));
    }
    if !r.new.is_empty() {
        let _ = writeln!(
            out,
            "\nNot in the snapshot, left alone: {}",
            r.new.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\n{} secret(s) differ, {} unchanged, {} new{}",
        r.secrets.len(),
        r.unchanged,
        r.new.len(),
        if r.errors() > 0 {
            format!(", {} FAILED", r.errors())
        } else {
            String::new()
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup::domain::filters::Filters;
    use backup::domain::model::{SecretValue, AWSCURRENT};
    use backup::operations::restore::{restore, RestoreOptions};
    use backup::ports::fakes::{FakeKms, FakeSecrets, FakeStore};
    use backup::ports::Ports;
    use backup::snapshot::reader::{list_snapshots, load_manifest, select, Selector};
    use backup::snapshot::writer::run_backup;
    use backup::testing::{backup_params, ACCOUNT, PREFIX, REGION};

    #[test]
    fn table_aligns_columns() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["long".into(), "x".into()],
                vec!["s".into(), "yy".into()],
            ],
        );
        assert_eq!(t, "A     BB\nlong  x\ns     yy\n");
    }
    /// A restore plan over the fakes, rendered as the CLI prints it, shows names and actions but
    /// never a value: neither the snapshot's nor the live one it would replace.
    #[tokio::test]
    async fn a_rendered_restore_plan_holds_no_value() {
        let (secrets, store, keys) = (
            FakeSecrets::default(),
            FakeStore::default(),
            FakeKms::default(),
        );
        let parameters = backup::ports::fakes::FakeParameters::default();
        let ports = Ports {
            secrets: &secrets,
            parameters: &parameters,
            store: &store,
            keys: &keys,
        };
        for i in 0..3 {
            secrets.add(
                &format!("app/s{i}"),
                SecretValue::string(format!("{{\"password\":\"pw-{i}\"}}")),
            );
        }
        run_backup(ports, &backup_params(Filters::default(), 2048))
            .await
            .unwrap();
        secrets.put(
            "app/s1",
            SecretValue::string("{\"password\":\"leaked\"}"),
            &[AWSCURRENT],
        );
        secrets.remove("app/s2");
        let list = list_snapshots(&store, PREFIX, ACCOUNT, REGION)
            .await
            .unwrap();
        let info = select(&list, &Selector::Latest, "x").unwrap();
        let manifest = load_manifest(&store, info).await.unwrap();
        let plan = restore(
            ports,
            &manifest,
            &[],
            &RestoreOptions::default(),
            2,
            &|_, _| {},
        )
        .await
        .unwrap();
        let text = restore_text(&plan);
        assert!(text.contains("app/s1") && text.contains("app/s2"), "{text}");
        assert!(!text.contains("leaked") && !text.contains("pw-"), "{text}");
    }

    fn restore_text(plan: &RestoreReport) -> String {
        super::restore(plan)
    }
}
