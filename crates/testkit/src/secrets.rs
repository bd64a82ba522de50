//! Reading a secret's versions the way the tests and the demo inspect them: labels from
//! `DescribeSecret`, values by explicit `VersionId` and stage (moto can serve a stale value to a
//! `GetSecretValue` without them, see DESIGN.md).

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::Client;
use serde_json::Value;
use std::collections::BTreeMap;

/// Version id → staging labels (sorted), from `DescribeSecret`. Panics if the call fails.
pub async fn labels(sm: &Client, secret_id: &str) -> BTreeMap<String, Vec<String>> {
    let out = sm
        .describe_secret()
        .secret_id(secret_id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeSecret {secret_id}: {}", DisplayErrorContext(e)));
    out.version_ids_to_stages()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|(version, mut stages)| {
            stages.sort();
            (version, stages)
        })
        .collect()
}

/// The version carrying `stage` and its `SecretString` parsed as JSON, read by explicit
/// `VersionId` and `VersionStage`; `None` when no version carries the stage.
pub async fn stage_json(sm: &Client, secret_id: &str, stage: &str) -> Option<(String, Value)> {
    let labels = labels(sm, secret_id).await;
    let (version, _) = labels
        .iter()
        .find(|(_, stages)| stages.iter().any(|s| s == stage))?;
    let out = sm
        .get_secret_value()
        .secret_id(secret_id)
        .version_id(version)
        .version_stage(stage)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "GetSecretValue {secret_id} {version} {stage}: {}",
                DisplayErrorContext(e)
            )
        });
    let text = out
        .secret_string()
        .unwrap_or_else(|| panic!("{secret_id} {stage} has no SecretString"));
    let value = serde_json::from_str(text).unwrap_or_else(|e| {
        // serde_json's message could quote the value: report only where it broke.
        panic!(
            "{secret_id} {stage} is not JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    });
    Some((version.clone(), value))
}
