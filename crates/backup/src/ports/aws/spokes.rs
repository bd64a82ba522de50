//! A hub's sources over the SDK: the spoke's read-only role assumed with STS (with the external
//! id), Secrets Manager in the source's region behind the rate limiter, and Organizations
//! ListAccounts.

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::sts::AssumeRoleProvider;
use aws_config::{Region, SdkConfig};
use aws_sdk_s3::config::SharedCredentialsProvider;

use super::{api_err, AwsSecrets, StsIdentity};
use crate::domain::sources::{HubConfig, SourceRef};
use crate::ports::limited::{RateLimited, PUBLISHED};
use crate::ports::{ApiError, Identity, OpenedSource, SourceAccess};

/// The session name the hub's reads carry in the spokes' CloudTrail.
pub const SESSION_NAME: &str = "secrets-backup-hub";

/// Opens sources from the function's base SDK configuration.
pub struct AwsSpokes {
    base: SdkConfig,
    hub: HubConfig,
    quota_share: f64,
}

impl AwsSpokes {
    /// Over `base` (the function's own credentials), with `hub`'s role and external id, each
    /// source's Secrets Manager limited to `quota_share` of the published quotas.
    pub fn new(base: SdkConfig, hub: HubConfig, quota_share: f64) -> Self {
        AwsSpokes {
            base,
            hub,
            quota_share,
        }
    }
}

#[async_trait]
impl SourceAccess for AwsSpokes {
    async fn open(&self, source: &SourceRef, own_account: &str) -> Result<OpenedSource, ApiError> {
        let mut builder = self
            .base
            .to_builder()
            .region(Region::new(source.region.clone()));
        let role = (source.account != own_account).then(|| self.hub.role_arn(source));
        if let Some(role) = &role {
            let provider = AssumeRoleProvider::builder(role.clone())
                .session_name(SESSION_NAME)
                .external_id(self.hub.external_id.clone())
                .configure(&self.base)
                .build()
                .await;
            builder = builder.credentials_provider(SharedCredentialsProvider::new(provider));
        }
        let config = builder.build();
        // The role is assumed here, on the first call with its credentials: a missing role or a
        // refused trust shows up now, named.
        let account = StsIdentity::new(aws_sdk_sts::Client::new(&config))
            .account_id()
            .await
            .map_err(|e| match &role {
                Some(role) => ApiError::new(
                    e.kind,
                    format!(
                        "source {source}: assuming {role} (with the external id of \
                         BACKUP_SOURCE_EXTERNAL_ID) failed; deploy spoke-role.yaml in account {} \
                         naming this hub's role: {e}",
                        source.account
                    ),
                ),
                None => ApiError::new(e.kind, format!("source {source}: {e}")),
            })?;
        let secrets = RateLimited::new(
            Arc::new(AwsSecrets::new(aws_sdk_secretsmanager::Client::new(
                &config,
            ))),
            self.quota_share,
            PUBLISHED,
        );
        Ok(OpenedSource {
            secrets: Arc::new(secrets),
            account,
        })
    }

    async fn organization_accounts(&self) -> Result<Vec<String>, ApiError> {
        let client = aws_sdk_organizations::Client::new(&self.base);
        let mut accounts = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = client
                .list_accounts()
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| api_err("Organizations ListAccounts", e))?;
            for a in page.accounts() {
                let active = a
                    .status()
                    .is_none_or(|s| *s == aws_sdk_organizations::types::AccountStatus::Active);
                if let (true, Some(id)) = (active, a.id()) {
                    accounts.push(id.to_string());
                }
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        accounts.sort();
        accounts.dedup();
        Ok(accounts)
    }
}
