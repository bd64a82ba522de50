//! Attacks on a snapshot as a whole by someone who can write the bucket but not use the vault's
//! keys, through the real `backup-lambda` and the real `secrets-backup` CLI against moto:
//! truncation, rollback, a hidden newest snapshot, an account swap, a part sealed and a manifest
//! signed with the attacker's own KMS keys, an edited failure list — each detected with a
//! message naming it — and restore's refusal of another source's snapshot. One moto, one set of
//! keys and one set of secrets serve every case; each case writes under a prefix of its own.

use backup::ports::aws::KmsKeys;
use backup::snapshot::crypto;
use e2e::backup::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use testkit::lambda::LambdaHost;
use testkit::vault::{create_key, create_signing_key};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

struct Case<'a> {
    w: &'a BackupWorld,
    prefix: &'static str,
    host: LambdaHost,
}

impl Case<'_> {
    async fn new<'a>(w: &'a BackupWorld, prefix: &'static str) -> Case<'a> {
        let host = w
            .lambda(&[("BACKUP_PREFIX", prefix), ("BACKUP_PART_SIZE", "4KiB")])
            .await;
        Case { w, prefix, host }
    }

    /// A snapshot by the function; its id.
    fn backup(&self) -> String {
        let out = self
            .w
            .invoke(&self.host, &scheduled_event())
            .unwrap_or_else(|e| panic!("{e}\n{}", self.host.output()));
        out["snapshotId"].as_str().unwrap().to_string()
    }

    fn cli(&self, args: &[&str]) -> CliOut {
        self.w.cli(args, &[("BACKUP_PREFIX", self.prefix)])
    }

    /// The CLI exits `code`; its output.
    fn cli_code(&self, args: &[&str], code: i32) -> CliOut {
        let out = self.cli(args);
        assert_eq!(
            out.code, code,
            "secrets-backup {args:?} in {}:\nstdout:\n{}\nstderr:\n{}",
            self.prefix, out.stdout, out.stderr
        );
        out
    }

    /// `verify` (and `restore --apply`) fail with exit 3 and every text in `expected` on stderr
    /// or stdout.
    fn assert_refused(&self, expected: &[&str]) {
        for args in [&["verify", "--no-live"][..], &["restore", "--apply"][..]] {
            let out = self.cli_code(args, 3);
            let text = format!("{}\n{}", out.stdout, out.stderr);
            for e in expected {
                assert!(text.contains(e), "{args:?}: expected {e:?} in:\n{text}");
            }
        }
    }

    /// The folder of snapshot `id` of `account` (from the bucket listing).
    async fn folder_of(&self, account: &str, id: &str) -> String {
        let base = format!("{}/{account}/{REGION}/", self.prefix);
        let keys = self.w.objects().await;
        keys.iter()
            .filter_map(|k| k.strip_prefix(&base))
            .filter_map(|rest| rest.split_once('/').map(|(f, _)| f.to_string()))
            .find(|f| f.ends_with(id))
            .map(|f| format!("{base}{f}/"))
            .unwrap_or_else(|| panic!("no folder for snapshot {id} under {base}"))
    }

    async fn manifest(&self, folder: &str) -> Value {
        serde_json::from_slice(&self.w.get_object(&format!("{folder}manifest.json")).await).unwrap()
    }

    fn finish(self) {
        self.w.capture(&self.host);
    }
}

async fn copy_folder(w: &BackupWorld, from: &str, to: &str) {
    for key in w.objects().await.iter().filter(|k| k.starts_with(from)) {
        let dest = format!("{to}{}", &key[from.len()..]);
        w.overwrite_object(&dest, w.get_object(key).await).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_a_snapshot_as_a_whole_are_named_and_refused() {
    let t = std::time::Instant::now();
    let w = BackupWorld::start().await;
    w.populate("i/", 24).await;

    // ---- A clean chain verifies; list shows the signed counts and the signature state. -------
    let c = Case::new(&w, "clean").await;
    let first = c.backup();
    let second = c.backup();
    c.cli_code(&["verify", "--no-live"], 0);
    let list = c.cli_code(&["list", "--json"], 0).json();
    let states: Vec<(&str, &str, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap(),
                s["signature"]["state"].as_str().unwrap(),
                s["secrets"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (first.as_str(), "verified", 24),
            (second.as_str(), "verified", 24)
        ]
    );
    let m2 = c.manifest(&c.folder_of(ACCOUNT, &second).await).await;
    assert_eq!(m2["previous"]["snapshotId"], first.as_str());
    let text = c.cli_code(&["list"], 0).stdout;
    assert!(
        text.contains("SIGNATURE") && text.contains("verified"),
        "{text}"
    );
    c.finish();

    // ---- Truncation: the last part and its entries dropped. ----------------------------------
    let c = Case::new(&w, "trunc").await;
    let id = c.backup();
    let folder = c.folder_of(ACCOUNT, &id).await;
    let mut m = c.manifest(&folder).await;
    let parts = m["parts"].as_array().unwrap().clone();
    assert!(parts.len() >= 2, "{m:#}");
    let last = parts.last().unwrap();
    let last_number = last["number"].clone();
    m["parts"].as_array_mut().unwrap().pop();
    m["secrets"]
        .as_array_mut()
        .unwrap()
        .retain(|s| s["part"] != last_number);
    m["summary"]["parts"] = json!(parts.len() - 1);
    m["summary"]["secrets"] = json!(m["secrets"].as_array().unwrap().len());
    w.overwrite_object(
        &format!("{folder}manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .await;
    w.s3.delete_object()
        .bucket(BUCKET)
        .key(last["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    c.assert_refused(&[&id, "changed after it was signed"]);
    c.finish();

    // ---- Rollback: an old snapshot copied under a newer time. --------------------------------
    let c = Case::new(&w, "rollback").await;
    let old = c.backup();
    let newer = c.backup();
    let old_folder = c.folder_of(ACCOUNT, &old).await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let replayed = format!(
        "rollback/{ACCOUNT}/{REGION}/{}/",
        backup::snapshot::layout::folder_name(later, &old)
    );
    copy_folder(&w, &old_folder, &replayed).await;
    // The copy is passed over and named; the drill fails on it; "latest" stays the newer one.
    let v = c.cli_code(&["verify", "--no-live", "--json"], 3);
    assert_eq!(v.json()["snapshotId"], newer.as_str());
    assert!(
        v.stderr.contains(&old) && v.stderr.contains("copied or replayed here"),
        "{}",
        v.stderr
    );
    let r = c.cli_code(&["restore", "--json"], 0);
    assert_eq!(r.json()["snapshotId"], newer.as_str(), "{}", r.stderr);
    assert!(r.stderr.contains("copied or replayed here"), "{}", r.stderr);
    // Asking for it by its folder name: refused, naming it.
    let name = replayed.trim_end_matches('/').rsplit('/').next().unwrap();
    let r = c.cli_code(&["restore", "--snapshot", name], 3);
    assert!(r.stderr.contains("rolled-back"), "{}", r.stderr);
    c.finish();

    // ---- Hidden newest: a delete marker on its manifest. -------------------------------------
    let c = Case::new(&w, "hidden").await;
    let older = c.backup();
    let newest = c.backup();
    let newest_folder = c.folder_of(ACCOUNT, &newest).await;
    w.s3.delete_object()
        .bucket(BUCKET)
        .key(format!("{newest_folder}manifest.json"))
        .send()
        .await
        .unwrap();
    let v = c.cli_code(&["verify", "--no-live", "--json"], 0);
    assert_eq!(v.json()["snapshotId"], older.as_str());
    assert!(
        v.stderr.contains(&newest) && v.stderr.contains("its signature exists"),
        "{}",
        v.stderr
    );
    let list = c.cli_code(&["list"], 0).stdout;
    assert!(list.contains("NO MANIFEST"), "{list}");
    c.finish();

    // ---- Account swap: account A's snapshot moved under account B's folder. ------------------
    let c = Case::new(&w, "swap").await;
    let a = c.backup();
    let a_folder = c.folder_of(ACCOUNT, &a).await;
    let b_account = "210987654321";
    let b_folder = a_folder.replace(ACCOUNT, b_account);
    copy_folder(&w, &a_folder, &b_folder).await;
    let out = c.cli_code(&["verify", "--no-live", "--account", b_account], 3);
    assert!(
        out.stderr.contains(&a) && out.stderr.contains("moved from another source"),
        "{}",
        out.stderr
    );
    let out = c.cli_code(&["restore", "--apply", "--account", b_account], 3);
    assert!(
        out.stderr.contains("moved from another source"),
        "{}",
        out.stderr
    );
    // A genuine snapshot of another account (taken by hand with --account) is refused by
    // restore into this account unless the operator says so.
    let other = c.cli_code(&["backup", "--account", b_account], 0);
    assert!(other.stdout.contains(b_account), "{}", other.stdout);
    let r = c.cli_code(&["restore", "--account", b_account], 3);
    assert!(
        r.stderr.contains(&format!("account {b_account}"))
            && r.stderr.contains(&format!("target account {ACCOUNT}"))
            && r.stderr.contains("--allow-other-source"),
        "{}",
        r.stderr
    );
    c.cli_code(
        &["restore", "--account", b_account, "--allow-other-source"],
        0,
    );
    c.finish();

    // ---- Forged key: a part re-sealed with the attacker's own KMS key; a manifest re-signed
    //      with another signing key. --------------------------------------------------------
    let c = Case::new(&w, "forge").await;
    let id = c.backup();
    let folder = c.folder_of(ACCOUNT, &id).await;
    let m = c.manifest(&folder).await;
    let attacker_key = create_key(&w.kms, "attacker").await;
    let started: chrono::DateTime<chrono::Utc> = m["startedAt"].as_str().unwrap().parse().unwrap();
    let scope = crypto::Scope::new(&id, ACCOUNT, REGION, started);
    let mut plain = backup::snapshot::zbuf::ZeroBuf::default();
    plain.extend_from_slice(b"{}\n");
    let forged = crypto::seal(
        &KmsKeys::new(w.kms.clone(), Some(attacker_key.clone())),
        &scope,
        1,
        plain,
    )
    .await
    .unwrap();
    let part1 = m["parts"][0]["key"].as_str().unwrap().to_string();
    let original = w.get_object(&part1).await;
    w.overwrite_object(&part1, forged.clone()).await;
    c.assert_refused(&[
        &part1,
        &attacker_key,
        &w.key_arn,
        "refused without calling KMS",
    ]);
    // The manifest updated to match the forged part and signed with the attacker's own
    // signing key (the signature file claiming the vault's).
    let attacker_signing = create_signing_key(&w.kms, "attacker signing").await;
    let mut m2 = m.clone();
    m2["parts"][0]["sha256"] = json!(hex::encode(Sha256::digest(&forged)));
    m2["parts"][0]["size"] = json!(forged.len());
    let bytes = serde_json::to_vec_pretty(&m2).unwrap();
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    let attacker_kms = KmsKeys::new(w.kms.clone(), None);
    let mut sig: Value = serde_json::from_slice(
        &backup::snapshot::signature::sign(&attacker_kms, &attacker_signing, &digest)
            .await
            .unwrap(),
    )
    .unwrap();
    sig["keyId"] = json!(w.signing_key_arn);
    w.overwrite_object(&format!("{folder}manifest.json"), bytes)
        .await;
    w.overwrite_object(
        &format!("{folder}manifest.sig"),
        serde_json::to_vec(&sig).unwrap(),
    )
    .await;
    c.assert_refused(&[
        &id,
        "does not verify with the configured signing key",
        &w.signing_key_arn,
    ]);
    w.overwrite_object(&part1, original).await;
    c.finish();

    // ---- Edited failure list: a failure added (or one hidden) in the manifest. ---------------
    let c = Case::new(&w, "failures").await;
    let id = c.backup();
    let folder = c.folder_of(ACCOUNT, &id).await;
    let mut m = c.manifest(&folder).await;
    m["failures"] = json!([{"name": "i/000", "arn": "arn:x", "reason": "AccessDenied"}]);
    m["summary"]["failures"] = json!(1);
    w.overwrite_object(
        &format!("{folder}manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .await;
    c.assert_refused(&[&id, "changed after it was signed"]);
    let list = c.cli_code(&["list", "--json"], 0).json();
    assert_eq!(list[0]["signature"]["state"], "invalid", "{list:#}");
    assert!(list[0].get("failures").is_none(), "{list:#}");
    c.finish();

    // A clean snapshot still verifies after all that.
    let c = Case::new(&w, "clean").await;
    c.backup();
    c.cli_code(&["verify"], 0);
    c.finish();
    w.assert_no_values_leaked(&[]);
    eprintln!("backup integrity suite: {:.1} s", t.elapsed().as_secs_f64());
}
