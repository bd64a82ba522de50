//! Envelope encryption of one part.
//!
//! Each part gets a fresh 256-bit data key from KMS `GenerateDataKey`, bound by the encryption
//! context `{purpose, snapshot, part, account, region, time}` (source account and region, and
//! the snapshot's start time in RFC 3339 UTC seconds: key policies can condition on
//! `kms:EncryptionContext:account`). The plaintext is sealed with AES-256-GCM under a random
//! 96-bit nonce, with additional authenticated data naming the same six things. The wrapped key
//! and the nonce travel in the part's header. A reader never trusts the header for the context,
//! the AAD or the key: it derives the first two from the (signed) manifest and the part it
//! expects, refuses a header naming another key than the configured one before calling KMS, and
//! names that key in `Decrypt` (`KeyId`), so a part copied to another place, one sealed under
//! another context, or one sealed with someone else's key does not open.
//!
//! Object layout: `b"SBK1"` | header length (u32, big endian) | header JSON | ciphertext | tag.

use aes_gcm::aead::{AeadCore, AeadInPlace, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::{ApiError, KeyService};
use crate::snapshot::zbuf::ZeroBuf;

/// The first bytes of every part.
pub const MAGIC: &[u8; 4] = b"SBK1";
/// The only algorithm.
pub const ALGORITHM: &str = "AES-256-GCM";
/// Version of the part format this code writes and reads.
pub const PART_FORMAT_VERSION: u32 = 2;
/// Value of the `purpose` entry of every encryption context (usable in key-policy conditions).
pub const PURPOSE: &str = "secrets-backup";
const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const MAX_HEADER_LEN: usize = 64 * 1024;

/// The JSON header of a part, stored in clear before the ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartHeader {
    /// [`PART_FORMAT_VERSION`].
    pub format_version: u32,
    /// [`ALGORITHM`].
    pub algorithm: String,
    /// The snapshot the part belongs to.
    pub snapshot_id: String,
    /// The part's number.
    pub part: u32,
    /// ARN of the KMS key that wrapped the data key.
    pub kms_key_id: String,
    /// The data key as KMS returned it wrapped (base64).
    pub wrapped_key: String,
    /// base64 of the 96-bit GCM nonce.
    pub nonce: String,
}

/// What every part of one snapshot is bound to (besides its number): the snapshot, its source
/// account and region, and its start time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// The snapshot id.
    pub snapshot_id: String,
    /// The source account id.
    pub account: String,
    /// The source region.
    pub region: String,
    /// The snapshot's start time, RFC 3339 UTC to the second (`2025-01-02T03:04:05Z`).
    pub time: String,
}

impl Scope {
    /// The scope of a snapshot started at `started_at`.
    pub fn new(snapshot_id: &str, account: &str, region: &str, started_at: DateTime<Utc>) -> Self {
        Scope {
            snapshot_id: snapshot_id.into(),
            account: account.into(),
            region: region.into(),
            time: started_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }
    }

    /// The KMS encryption context of part `part`.
    pub fn encryption_context(&self, part: u32) -> Vec<(&'static str, String)> {
        vec![
            ("purpose", PURPOSE.to_string()),
            ("snapshot", self.snapshot_id.clone()),
            ("part", part.to_string()),
            ("account", self.account.clone()),
            ("region", self.region.clone()),
            ("time", self.time.clone()),
        ]
    }

    /// The GCM additional authenticated data of part `part`.
    pub fn aad(&self, part: u32) -> Vec<u8> {
        format!(
            "{PURPOSE}/v{PART_FORMAT_VERSION}\0snapshot={}\0part={part}\0account={}\0region={}\0time={}",
            self.snapshot_id, self.account, self.region, self.time
        )
        .into_bytes()
    }
}

/// Why a part could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// KMS did not give a data key.
    #[error("KMS GenerateDataKey failed: {0}")]
    Kms(ApiError),
    /// Encryption failed.
    #[error("{0}")]
    Crypto(String),
}

/// Why a part does not open. Messages never include plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// The object is not a part.
    #[error("malformed part: {0}")]
    Malformed(String),
    /// The header names another snapshot or part (a swapped or copied object).
    #[error("part header names snapshot {snapshot} part {part}: it does not belong here")]
    HeaderMismatch {
        /// The snapshot the header names.
        snapshot: String,
        /// The part the header names.
        part: u32,
    },
    /// The header names another KMS key than the configured one (refused before calling KMS).
    #[error("part header names KMS key {header}, not the configured key {configured}: refused without calling KMS (sealed with another key)")]
    ForeignKey {
        /// The key the header names.
        header: String,
        /// The configured key.
        configured: String,
    },
    /// KMS would not unwrap the data key.
    #[error("KMS would not unwrap the data key under this part's encryption context (wrong context, key or damaged wrapped key): {0}")]
    KeyUnwrap(ApiError),
    /// The GCM tag does not verify.
    #[error("AES-GCM authentication failed: ciphertext, nonce or associated data altered")]
    Authentication,
}

fn ctx_refs<'a>(ctx: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    ctx.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Encrypt a part's plaintext (which is zeroed) and return the object bytes.
pub async fn seal(
    keys: &dyn KeyService,
    scope: &Scope,
    part: u32,
    plaintext: ZeroBuf,
) -> Result<Vec<u8>, SealError> {
    let snapshot_id = scope.snapshot_id.as_str();
    let ctx = scope.encryption_context(part);
    let data_key = keys
        .generate_data_key(&ctx_refs(&ctx))
        .await
        .map_err(SealError::Kms)?;
    let cipher = Aes256Gcm::new_from_slice(&data_key.plaintext)
        .map_err(|_| SealError::Crypto("KMS returned a data key that is not 256 bits".into()))?;
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let header = PartHeader {
        format_version: PART_FORMAT_VERSION,
        algorithm: ALGORITHM.into(),
        snapshot_id: snapshot_id.into(),
        part,
        kms_key_id: data_key.key_id.clone(),
        wrapped_key: B64.encode(&data_key.wrapped),
        nonce: B64.encode(nonce),
    };
    // Lay out header and plaintext in the final buffer (capacity reserved up front, so no
    // reallocation leaves a plaintext copy behind), then encrypt in place.
    let header_json = serde_json::to_vec(&header).expect("header serializes");
    let start = 8 + header_json.len();
    let mut out = Vec::with_capacity(start + plaintext.len() + TAG_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header_json.len() as u32).to_be_bytes());
    out.extend_from_slice(&header_json);
    out.extend_from_slice(plaintext.as_slice());
    drop(plaintext);
    let sealed = cipher.encrypt_in_place_detached(&nonce, &scope.aad(part), &mut out[start..]);
    let Ok(tag) = sealed else {
        zeroize::Zeroize::zeroize(&mut out);
        return Err(SealError::Crypto("AES-GCM encryption failed".into()));
    };
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Lay out a part object from its header and ciphertext+tag.
pub fn assemble(header: &PartHeader, body: &[u8]) -> Vec<u8> {
    let header = serde_json::to_vec(header).expect("header serializes");
    let mut out = Vec::with_capacity(8 + header.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out
}

/// Split an object into its header and ciphertext+tag without decrypting.
pub fn parse_header(object: &[u8]) -> Result<(PartHeader, &[u8]), OpenError> {
    let malformed = |m: &str| OpenError::Malformed(m.to_string());
    if object.len() < 8 || &object[..4] != MAGIC {
        return Err(malformed("not a secrets-backup part (bad magic)"));
    }
    let hlen = u32::from_be_bytes(object[4..8].try_into().expect("4 bytes")) as usize;
    if hlen > MAX_HEADER_LEN || 8 + hlen > object.len() {
        return Err(malformed("header length out of range"));
    }
    let header: PartHeader = serde_json::from_slice(&object[8..8 + hlen])
        .map_err(|e| OpenError::Malformed(format!("header: {e}")))?;
    if header.format_version != PART_FORMAT_VERSION || header.algorithm != ALGORITHM {
        return Err(OpenError::Malformed(format!(
            "unsupported format {} / {}",
            header.format_version, header.algorithm
        )));
    }
    let body = &object[8 + hlen..];
    if body.len() < TAG_LEN {
        return Err(malformed("ciphertext shorter than the GCM tag"));
    }
    Ok((header, body))
}

/// Whether the key a part header names (an ARN, as `GenerateDataKey` returns it) is the
/// configured key: `Some` when that can be told without KMS (the configured key is an ARN or a
/// bare key id), `None` for an alias (then `Decrypt`'s `KeyId` makes KMS check it).
pub fn key_matches(header: &str, configured: &str) -> Option<bool> {
    if configured.starts_with("alias/") || configured.contains(":alias/") {
        return None;
    }
    if configured.starts_with("arn:") {
        return Some(header == configured);
    }
    Some(header == configured || header.rsplit_once(":key/").map(|(_, id)| id) == Some(configured))
}

/// Decrypt a part that must be part `part` of the snapshot `scope`, sealed with `key_id`.
pub async fn open(
    keys: &dyn KeyService,
    key_id: &str,
    scope: &Scope,
    part: u32,
    object: &[u8],
) -> Result<ZeroBuf, OpenError> {
    let (header, body) = parse_header(object)?;
    if header.snapshot_id != scope.snapshot_id || header.part != part {
        return Err(OpenError::HeaderMismatch {
            snapshot: header.snapshot_id,
            part: header.part,
        });
    }
    if key_matches(&header.kms_key_id, key_id) == Some(false) {
        return Err(OpenError::ForeignKey {
            header: header.kms_key_id,
            configured: key_id.into(),
        });
    }
    let wrapped = B64
        .decode(&header.wrapped_key)
        .map_err(|_| OpenError::Malformed("wrapped key is not base64".into()))?;
    let nonce = B64
        .decode(&header.nonce)
        .ok()
        .filter(|n| n.len() == NONCE_LEN)
        .ok_or_else(|| OpenError::Malformed("nonce is not 96 bits of base64".into()))?;
    let ctx = scope.encryption_context(part);
    let key = keys
        .decrypt(key_id, &wrapped, &ctx_refs(&ctx))
        .await
        .map_err(OpenError::KeyUnwrap)?;
    let cipher = Aes256Gcm::new_from_slice(&key)
        .map_err(|_| OpenError::Malformed("data key is not 256 bits".into()))?;
    let (ciphertext, tag) = body.split_at(body.len() - TAG_LEN);
    let mut buf = ZeroBuf::with_capacity(ciphertext.len());
    buf.extend_from_slice(ciphertext);
    cipher
        .decrypt_in_place_detached(
            Nonce::from_slice(&nonce),
            &scope.aad(part),
            buf.as_mut_slice(),
            Tag::from_slice(tag),
        )
        .map_err(|_| OpenError::Authentication)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::fakes::{FakeKms, FAKE_KEY_ARN};
    use chrono::TimeZone;

    fn scope(id: &str) -> Scope {
        let t = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap();
        Scope::new(id, "111122223333", "eu-west-1", t)
    }

    fn buf(data: &[u8]) -> ZeroBuf {
        let mut b = ZeroBuf::default();
        b.extend_from_slice(data);
        b
    }

    #[tokio::test]
    async fn seal_open_round_trip_and_fresh_keys() {
        let kms = FakeKms::default();
        let a = seal(&kms, &scope("snap"), 1, buf(b"hello secrets"))
            .await
            .unwrap();
        let b = seal(&kms, &scope("snap"), 1, buf(b"hello secrets"))
            .await
            .unwrap();
        assert_ne!(a, b, "fresh data key and nonce per seal");
        assert!(
            !a.windows(7).any(|w| w == b"secrets"),
            "plaintext not in object"
        );
        let opened = open(&kms, FAKE_KEY_ARN, &scope("snap"), 1, &a)
            .await
            .unwrap();
        assert_eq!(opened.as_slice(), b"hello secrets");
        assert_eq!(kms.generated(), 2);
        let (h, _) = parse_header(&a).unwrap();
        assert_eq!((h.snapshot_id.as_str(), h.part), ("snap", 1));
    }

    #[tokio::test]
    async fn any_flipped_byte_is_detected() {
        let kms = FakeKms::default();
        let obj = seal(&kms, &scope("snap"), 3, buf(&[7u8; 100]))
            .await
            .unwrap();
        let (_, body) = parse_header(&obj).unwrap();
        let body_start = obj.len() - body.len();
        for i in [body_start, body_start + 50, obj.len() - 1] {
            let mut bad = obj.clone();
            bad[i] ^= 0x01;
            assert_eq!(
                open(&kms, FAKE_KEY_ARN, &scope("snap"), 3, &bad)
                    .await
                    .unwrap_err(),
                OpenError::Authentication
            );
        }
        let mut bad = obj.clone();
        bad[0] = b'X';
        assert!(matches!(
            open(&kms, FAKE_KEY_ARN, &scope("snap"), 3, &bad).await,
            Err(OpenError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn part_from_elsewhere_does_not_open() {
        let kms = FakeKms::default();
        let obj = seal(&kms, &scope("snap"), 2, buf(b"data")).await.unwrap();
        // Moved to another place: header disagrees.
        assert_eq!(
            open(&kms, FAKE_KEY_ARN, &scope("snap"), 1, &obj)
                .await
                .unwrap_err(),
            OpenError::HeaderMismatch {
                snapshot: "snap".into(),
                part: 2
            }
        );
        assert!(matches!(
            open(&kms, FAKE_KEY_ARN, &scope("other"), 2, &obj).await,
            Err(OpenError::HeaderMismatch { .. })
        ));
        // Header rewritten to claim part 1: KMS refuses the context before GCM is reached.
        let (mut h, body) = parse_header(&obj).unwrap();
        h.part = 1;
        let forged = assemble(&h, body);
        assert!(matches!(
            open(&kms, FAKE_KEY_ARN, &scope("snap"), 1, &forged).await,
            Err(OpenError::KeyUnwrap(_))
        ));
    }

    #[tokio::test]
    async fn context_names_account_region_and_time_and_another_key_is_refused_before_kms() {
        let s = scope("snap");
        let ctx = s.encryption_context(4);
        assert!(ctx.contains(&("account", "111122223333".into())));
        assert!(ctx.contains(&("region", "eu-west-1".into())));
        assert!(ctx.contains(&("time", "2025-01-02T03:04:05Z".into())));
        let kms = FakeKms::default();
        let obj = seal(&kms, &s, 4, buf(b"data")).await.unwrap();
        // Another account's scope: same snapshot id and part, the context differs.
        let mut other = s.clone();
        other.account = "444455556666".into();
        assert!(matches!(
            open(&kms, FAKE_KEY_ARN, &other, 4, &obj).await,
            Err(OpenError::KeyUnwrap(_))
        ));
        let other_key = "arn:aws:kms:us-east-1:123456789012:key/other";
        let err = open(&kms, other_key, &s, 4, &obj).await.unwrap_err();
        assert!(matches!(err, OpenError::ForeignKey { .. }));
        let text = err.to_string();
        assert!(
            text.contains(other_key) && text.contains(FAKE_KEY_ARN),
            "{text}"
        );
        assert_eq!(key_matches(FAKE_KEY_ARN, "fake"), Some(true));
        assert_eq!(key_matches(FAKE_KEY_ARN, "other"), Some(false));
        assert_eq!(key_matches(FAKE_KEY_ARN, "alias/backup"), None);
    }
}
