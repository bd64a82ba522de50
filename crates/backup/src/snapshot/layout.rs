//! Where a snapshot's objects live.
//!
//! ```text
//! <prefix>/<account>/<region>/<YYYYMMDDTHHMMSS.mmmZ>-<snapshot id>/
//!     part-00001.sbk   encrypted JSON lines, one secret (metadata + labelled versions) per line
//!     part-00002.sbk
//!     manifest.sig     the KMS signature of manifest.json's bytes (written just before it)
//!     manifest.json    written last: a snapshot without one is incomplete
//! ```

use chrono::{DateTime, NaiveDateTime, Utc};

/// File name of the manifest inside a snapshot folder.
pub const MANIFEST_NAME: &str = "manifest.json";
/// File name of the manifest's signature inside a snapshot folder.
pub const SIGNATURE_NAME: &str = "manifest.sig";
const TIMESTAMP_FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";

/// `<prefix>/<account>/<region>/` (the prefix may be empty).
pub fn account_region_prefix(prefix: &str, account: &str, region: &str) -> String {
    if prefix.is_empty() {
        format!("{account}/{region}/")
    } else {
        format!("{prefix}/{account}/{region}/")
    }
}

/// `<time>-<snapshot id>`: folder names sort by start time.
pub fn folder_name(started: DateTime<Utc>, snapshot_id: &str) -> String {
    format!("{}-{snapshot_id}", started.format(TIMESTAMP_FORMAT))
}

/// What a snapshot folder's name says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderName {
    /// When the snapshot started.
    pub started_at: DateTime<Utc>,
    /// The snapshot id.
    pub snapshot_id: String,
}

/// Parse `20250102T030405.123Z-<id>` (or a key prefix ending in it) into its time and id.
pub fn parse_folder_name(name: &str) -> Option<FolderName> {
    let name = name.trim_end_matches('/');
    let name = name.rsplit('/').next()?;
    let (ts, id) = name.split_once("Z-")?;
    let t = NaiveDateTime::parse_from_str(&format!("{ts}Z"), TIMESTAMP_FORMAT).ok()?;
    if id.is_empty() {
        return None;
    }
    Some(FolderName {
        started_at: t.and_utc(),
        snapshot_id: id.to_string(),
    })
}

/// Key of part `number` in `folder` (which ends in `/`).
pub fn part_key(folder: &str, number: u32) -> String {
    format!("{folder}part-{number:05}.sbk")
}

/// Key of the manifest in `folder` (which ends in `/`).
pub fn manifest_key(folder: &str) -> String {
    format!("{folder}{MANIFEST_NAME}")
}

/// Key of the manifest's signature in `folder` (which ends in `/`).
pub fn signature_key(folder: &str) -> String {
    format!("{folder}{SIGNATURE_NAME}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn folder_names_round_trip_and_sort_by_time() {
        let t =
            Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap() + chrono::Duration::milliseconds(67);
        let name = folder_name(t, "0b9c");
        assert_eq!(name, "20250102T030405.067Z-0b9c");
        assert_eq!(
            parse_folder_name(&format!("p/1/r/{name}/")),
            Some(FolderName {
                started_at: t,
                snapshot_id: "0b9c".into()
            })
        );
        assert!(folder_name(t, "zzz") < folder_name(t + chrono::Duration::milliseconds(1), "aaa"));
        assert_eq!(parse_folder_name("garbage"), None);
        assert_eq!(account_region_prefix("", "1", "r"), "1/r/");
        assert_eq!(part_key("a/", 7), "a/part-00007.sbk");
    }
}
