//! STS over the SDK.

use async_trait::async_trait;

use super::api_err;
use crate::ports::{ApiError, Identity};

/// STS GetCallerIdentity, asked once and remembered.
#[derive(Debug)]
pub struct StsIdentity {
    client: aws_sdk_sts::Client,
    account: tokio::sync::OnceCell<String>,
}

impl StsIdentity {
    /// Over this client.
    pub fn new(client: aws_sdk_sts::Client) -> Self {
        StsIdentity {
            client,
            account: tokio::sync::OnceCell::new(),
        }
    }
}

#[async_trait]
impl Identity for StsIdentity {
    async fn account_id(&self) -> Result<String, ApiError> {
        self.account
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| api_err("GetCallerIdentity", e))?;
                out.account()
                    .map(String::from)
                    .ok_or_else(|| ApiError::other("GetCallerIdentity returned no account"))
            })
            .await
            .cloned()
    }
}
