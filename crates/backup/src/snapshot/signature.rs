//! The manifest's signature: who vouches for a snapshot as a whole.
//!
//! The backup signs the SHA-256 digest of the manifest's exact bytes (what it uploads as
//! `manifest.json`: no re-serialization, so those bytes are the canonical form) with KMS `Sign`
//! (an asymmetric key of its own, `BACKUP_SIGNING_KEY_ID`: ECC_NIST_P256, ECDSA_SHA_256,
//! MessageType DIGEST), and stores the signature beside the manifest as `manifest.sig`
//! ([`SignatureFile`], JSON), written just before the manifest. Readers fetch both, recompute
//! the digest, and ask KMS `Verify` with the key *they* are configured with: a manifest edited in
//! any byte, or signed with any other key, does not verify. The manifest covers the source
//! account and region, the folder, the start and end times, the filters, the ordered parts (size,
//! SHA-256, S3 version id), the failures and the link to the previous snapshot
//! ([`crate::snapshot::manifest::ChainLink`]), so all of those are authenticated too.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ports::{ApiError, KeyService};

/// The only signing algorithm.
pub const SIGNING_ALGORITHM: &str = "ECDSA_SHA_256";
/// Version of the signature file format.
pub const SIGNATURE_FORMAT_VERSION: u32 = 1;

/// `manifest.sig`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignatureFile {
    /// [`SIGNATURE_FORMAT_VERSION`].
    pub format_version: u32,
    /// [`SIGNING_ALGORITHM`].
    pub algorithm: String,
    /// The key that signed (informative: readers verify with their configured key).
    pub key_id: String,
    /// SHA-256 (hex) of the manifest's bytes.
    pub manifest_sha256: String,
    /// The DER signature, base64.
    pub signature: String,
}

/// SHA-256 of a manifest's bytes.
pub fn digest(manifest: &[u8]) -> [u8; 32] {
    Sha256::digest(manifest).into()
}

/// Sign a manifest's digest with `key_id`; returns the bytes of `manifest.sig`.
pub async fn sign(
    keys: &dyn KeyService,
    key_id: &str,
    digest: &[u8; 32],
) -> Result<Vec<u8>, ApiError> {
    let signature = keys.sign(key_id, digest).await?;
    let file = SignatureFile {
        format_version: SIGNATURE_FORMAT_VERSION,
        algorithm: SIGNING_ALGORITHM.into(),
        key_id: key_id.into(),
        manifest_sha256: hex::encode(digest),
        signature: B64.encode(signature),
    };
    Ok(serde_json::to_vec_pretty(&file).expect("a signature file serializes"))
}

/// Why a manifest's signature does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureProblem {
    /// There is no `manifest.sig`.
    #[error(
        "unsigned: no {} beside the manifest",
        crate::snapshot::layout::SIGNATURE_NAME
    )]
    Unsigned,
    /// `manifest.sig` is not a signature file.
    #[error("the signature file is malformed: {0}")]
    Malformed(String),
    /// The signature file signs other manifest bytes.
    #[error("the manifest was changed after it was signed (its SHA-256 is {actual}, the signature covers {signed})")]
    DigestMismatch {
        /// The digest the signature file names.
        signed: String,
        /// The manifest's digest.
        actual: String,
    },
    /// KMS says the signature is not the configured key's.
    #[error("the signature does not verify with the configured signing key {configured} (the signature file names key {named}): signed with another key, or forged")]
    WrongKey {
        /// The configured key.
        configured: String,
        /// The key the file names.
        named: String,
    },
    /// KMS could not be asked.
    #[error("KMS Verify failed: {0}")]
    Kms(ApiError),
}

/// Check `manifest`'s signature file `sig` (`None`: missing) with the configured key.
pub async fn check(
    keys: &dyn KeyService,
    signing_key: &str,
    manifest: &[u8],
    sig: Option<&[u8]>,
) -> Result<(), SignatureProblem> {
    let sig = sig.ok_or(SignatureProblem::Unsigned)?;
    let file: SignatureFile =
        serde_json::from_slice(sig).map_err(|e| SignatureProblem::Malformed(e.to_string()))?;
    if file.format_version != SIGNATURE_FORMAT_VERSION || file.algorithm != SIGNING_ALGORITHM {
        return Err(SignatureProblem::Malformed(format!(
            "unsupported format {} / {}",
            file.format_version, file.algorithm
        )));
    }
    let digest = digest(manifest);
    let actual = hex::encode(digest);
    if !file.manifest_sha256.eq_ignore_ascii_case(&actual) {
        return Err(SignatureProblem::DigestMismatch {
            signed: file.manifest_sha256,
            actual,
        });
    }
    let signature = B64
        .decode(&file.signature)
        .map_err(|_| SignatureProblem::Malformed("the signature is not base64".into()))?;
    match keys.verify(signing_key, &digest, &signature).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(SignatureProblem::WrongKey {
            configured: signing_key.into(),
            named: file.key_id,
        }),
        Err(e) => Err(SignatureProblem::Kms(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::fakes::{FakeKms, FAKE_SIGNING_KEY_ARN};

    #[tokio::test]
    async fn signed_manifest_verifies_and_any_change_or_other_key_does_not() {
        let kms = FakeKms::default();
        let manifest = br#"{"snapshotId": "a"}"#;
        let sig = sign(&kms, FAKE_SIGNING_KEY_ARN, &digest(manifest))
            .await
            .unwrap();
        check(&kms, FAKE_SIGNING_KEY_ARN, manifest, Some(&sig))
            .await
            .unwrap();
        assert_eq!(
            check(&kms, FAKE_SIGNING_KEY_ARN, manifest, None).await,
            Err(SignatureProblem::Unsigned)
        );
        assert!(matches!(
            check(
                &kms,
                FAKE_SIGNING_KEY_ARN,
                br#"{"snapshotId": "b"}"#,
                Some(&sig)
            )
            .await,
            Err(SignatureProblem::DigestMismatch { .. })
        ));
        // Signed by someone else's key (another KMS), file rewritten to name ours.
        let attacker = FakeKms::default();
        let forged = sign(&attacker, FAKE_SIGNING_KEY_ARN, &digest(manifest))
            .await
            .unwrap();
        let err = check(&kms, FAKE_SIGNING_KEY_ARN, manifest, Some(&forged))
            .await
            .unwrap_err();
        assert!(matches!(err, SignatureProblem::WrongKey { .. }));
        assert!(err.to_string().contains(FAKE_SIGNING_KEY_ARN));
        let mut other = manifest.to_vec();
        other.push(b'\n');
        assert!(matches!(
            check(&kms, "another-key", manifest, Some(&sig)).await,
            Err(SignatureProblem::WrongKey { .. })
        ));
    }
}
