//! KMS in memory: data keys wrapped under one master key, the encryption context as AAD.

use std::sync::atomic::{AtomicUsize, Ordering};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::ports::{ApiError, DataKey, ErrorKind, KeyService};

/// KMS: data keys wrapped under one master key with the encryption context as AAD, so a wrong
/// context fails as it does in KMS.
pub struct FakeKms {
    master: Aes256Gcm,
    generated: AtomicUsize,
}

impl Default for FakeKms {
    fn default() -> Self {
        FakeKms {
            master: Aes256Gcm::new(&Aes256Gcm::generate_key(&mut OsRng)),
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
        wrapped: &[u8],
        context: &[(&str, &str)],
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
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
}
