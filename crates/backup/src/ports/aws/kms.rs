//! KMS over the SDK.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_kms::types::{DataKeySpec, MessageType, SigningAlgorithmSpec};
use aws_smithy_types::Blob;
use zeroize::Zeroizing;

use super::api_err;
use crate::ports::{ApiError, DataKey, ErrorKind, KeyService};

/// KMS over the SDK.
#[derive(Clone, Debug)]
pub struct KmsKeys {
    client: aws_sdk_kms::Client,
    key_id: Option<String>,
}

impl KmsKeys {
    /// `key_id` is needed to generate data keys; decrypting finds the key in the ciphertext.
    pub fn new(client: aws_sdk_kms::Client, key_id: Option<String>) -> Self {
        KmsKeys { client, key_id }
    }

    /// DescribeKey on the keys of the secrets: KMS of the account and region of `config` (the
    /// source's), no key of its own.
    pub fn directory(config: &aws_config::SdkConfig) -> Self {
        Self::new(aws_sdk_kms::Client::new(config), None)
    }
}

fn context_map(context: &[(&str, &str)]) -> HashMap<String, String> {
    context
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[async_trait]
impl KeyService for KmsKeys {
    async fn generate_data_key(&self, context: &[(&str, &str)]) -> Result<DataKey, ApiError> {
        let key_id = self
            .key_id
            .as_deref()
            .ok_or_else(|| ApiError::other("no KMS key configured (BACKUP_KMS_KEY_ID)"))?;
        let out = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(|e| api_err("GenerateDataKey", e))?;
        let key_arn = out.key_id().unwrap_or(key_id).to_string();
        let wrapped = out
            .ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| ApiError::other("GenerateDataKey returned no ciphertext"))?;
        let plaintext = out
            .plaintext
            .map(|b| Zeroizing::new(b.into_inner()))
            .ok_or_else(|| ApiError::other("GenerateDataKey returned no plaintext"))?;
        Ok(DataKey {
            plaintext,
            wrapped,
            key_id: key_arn,
        })
    }

    async fn decrypt(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &[(&str, &str)],
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let out = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(|e| api_err("Decrypt", e))?;
        out.plaintext
            .map(|b| Zeroizing::new(b.into_inner()))
            .ok_or_else(|| ApiError::other("Decrypt returned no plaintext"))
    }

    async fn sign(&self, key_id: &str, digest: &[u8; 32]) -> Result<Vec<u8>, ApiError> {
        let out = self
            .client
            .sign()
            .key_id(key_id)
            .message(Blob::new(digest.to_vec()))
            .message_type(MessageType::Digest)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| api_err("Sign", e))?;
        out.signature
            .map(Blob::into_inner)
            .ok_or_else(|| ApiError::other("Sign returned no signature"))
    }

    async fn verify(
        &self,
        key_id: &str,
        digest: &[u8; 32],
        signature: &[u8],
    ) -> Result<bool, ApiError> {
        let result = self
            .client
            .verify()
            .key_id(key_id)
            .message(Blob::new(digest.to_vec()))
            .message_type(MessageType::Digest)
            .signature(Blob::new(signature))
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.signature_valid),
            Err(e) => {
                let e = api_err("Verify", e);
                // KMS answers a signature that does not verify with an error, not `false`.
                if e.kind == ErrorKind::InvalidSignature {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }
}

#[async_trait]
impl crate::ports::KeyDirectory for KmsKeys {
    async fn describe_key(&self, key_id: &str) -> Result<crate::ports::KeyDescription, ApiError> {
        let out = self
            .client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| api_err("DescribeKey", e))?;
        let meta = out
            .key_metadata
            .ok_or_else(|| ApiError::other(format!("DescribeKey {key_id}: no key metadata")))?;
        Ok(crate::ports::KeyDescription {
            arn: meta.arn().unwrap_or(key_id).to_string(),
            state: meta
                .key_state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|| "Unknown".into()),
            manager: meta.key_manager().map(|m| m.as_str().to_string()),
        })
    }
}
