//! STS in memory: a fixed account.

use async_trait::async_trait;

use crate::ports::{ApiError, Identity};

/// The caller's account is always the one given.
pub struct FakeIdentity(pub &'static str);

#[async_trait]
impl Identity for FakeIdentity {
    async fn account_id(&self) -> Result<String, ApiError> {
        Ok(self.0.to_string())
    }
}
