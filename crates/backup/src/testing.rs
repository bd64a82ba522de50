//! Fixtures for tests over the fakes (cargo feature `testing`): the fakes themselves are in
//! `ports::fakes`.

use chrono::Utc;

use crate::domain::filters::Filters;
use crate::ports::fakes::{FAKE_KEY_ARN, FAKE_SIGNING_KEY_ARN};
use crate::snapshot::manifest::{Destination, Source};
use crate::snapshot::writer::BackupParams;

/// The account the fake identity and the fixtures use.
pub const ACCOUNT: &str = "123456789012";
/// The region of the fixtures.
pub const REGION: &str = "us-east-1";
/// The snapshot prefix of the fixtures.
pub const PREFIX: &str = "bk";

/// A backup of `filters` into bucket `b` under [`PREFIX`] with the fake KMS keys, a new snapshot
/// id, concurrency 4 and parts of `part_size` bytes.
pub fn backup_params(filters: Filters, part_size: usize) -> BackupParams {
    BackupParams {
        snapshot_id: uuid::Uuid::new_v4().to_string(),
        started_at: Utc::now(),
        prefix: PREFIX.into(),
        source: Source {
            account_id: ACCOUNT.into(),
            region: REGION.into(),
        },
        destination: Destination {
            bucket: "b".into(),
            region: REGION.into(),
            role_arn: None,
        },
        kms_key_id: FAKE_KEY_ARN.into(),
        signing_key_id: FAKE_SIGNING_KEY_ARN.into(),
        filters,
        concurrency: 4,
        part_size,
        expected_unreadable: Default::default(),
    }
}
