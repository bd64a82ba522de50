//! KMS in memory: data keys wrapped under one master key, the encryption context as AAD, and
//! signatures (a keyed SHA-256, not ECDSA: enough to tell one key's signature from another's).

use std::sync::atomic::{AtomicUsize, Ordering};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ports::{ApiError, DataKey, ErrorKind, KeyService};

/// KMS: data keys wrapped under one master key with the encryption context as AAD, so a wrong
/// context fails as it does in KMS.
/// Its one encryption key is [`FAKE_KEY_ARN`]; it signs with any key id (each instance has its
/// own signing secret, so another instance's signature does not verify).
pub struct FakeKms {
    master: Aes256Gcm,
    signing: [u8; 32],
    generated: AtomicUsize,
}

impl Default for FakeKms {
    fn default() -> Self {
        let mut signing = [0u8; 32];
        signing.copy_from_slice(&Aes256Gcm::generate_key(&mut OsRng));
        FakeKms {
            master: Aes256Gcm::new(&Aes256Gcm::generate_key(&mut OsRng)),
            signing,
            generated: AtomicUsize::new(0),
        }
    }
}

impl FakeKms {
    /// Data keys generated so far.
    pub fn generated(&self) -> usize {
        self.generated.load(Ordering::SeqCst)
    }

    fn ctx_aad(context: &[(&str, &str)]) -> Vec<u8> {
        let mut c: Vec<_> = context.to_vec();
        c.sort();
        format!("{c:?}").into_bytes()
    }

    /// Wrap an arbitrary key under an arbitrary context (to forge parts in tests).
    pub fn wrap(&self, key: &[u8], context: &[(&str, &str)]) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let aad = Self::ctx_aad(context);
        let mut out = nonce.to_vec();
        out.extend(
            self.master
                .encrypt(
                    &nonce,
                    Payload {
                        msg: key,
                        aad: &aad,
                    },
                )
                .unwrap(),
        );
        out
    }
}

/// The key ARN the fake reports.
pub const FAKE_KEY_ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/fake";
/// The signing key id the fixtures use.
pub const FAKE_SIGNING_KEY_ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/fake-signing";

impl FakeKms {
    fn signature(&self, key_id: &str, digest: &[u8; 32]) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(self.signing);
        h.update(key_id.as_bytes());
        h.update([0]);
        h.update(digest);
        h.finalize().to_vec()
    }
}

#[async_trait]
impl KeyService for FakeKms {
    async fn generate_data_key(&self, context: &[(&str, &str)]) -> Result<DataKey, ApiError> {
        self.generated.fetch_add(1, Ordering::SeqCst);
        let key = Aes256Gcm::generate_key(&mut OsRng);
        Ok(DataKey {
            wrapped: self.wrap(&key, context),
            plaintext: Zeroizing::new(key.to_vec()),
            key_id: FAKE_KEY_ARN.into(),
        })
    }

    async fn decrypt(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &[(&str, &str)],
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        if key_id != FAKE_KEY_ARN {
            return Err(ApiError::new(
                ErrorKind::InvalidCiphertext,
                "IncorrectKeyException",
            ));
        }
        if wrapped.len() < 12 {
            return Err(ApiError::new(
                ErrorKind::InvalidCiphertext,
                "InvalidCiphertextException",
            ));
        }
        let (nonce, ct) = wrapped.split_at(12);
        let aad = Self::ctx_aad(context);
        self.master
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| ApiError::new(ErrorKind::InvalidCiphertext, "InvalidCiphertextException"))
    }

    async fn sign(&self, key_id: &str, digest: &[u8; 32]) -> Result<Vec<u8>, ApiError> {
        Ok(self.signature(key_id, digest))
    }

    async fn verify(
        &self,
        key_id: &str,
        digest: &[u8; 32],
        signature: &[u8],
    ) -> Result<bool, ApiError> {
        Ok(self.signature(key_id, digest) == signature)
    }
}
