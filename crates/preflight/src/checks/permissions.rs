//! What the rotation function's execution role needs (check `permissions`). The one list of
//! required permissions: the fixes of other checks name their part of it through these
//! constants.

use super::alternating::MasterFound;
use super::secret::SecretFound;
use crate::report::{Report, Status};
use rotation::Strategy;

/// The Secrets Manager actions on the secret itself.
pub(crate) const SECRET_ACTIONS: &str = "secretsmanager:DescribeSecret, GetSecretValue, \
     PutSecretValue, UpdateSecretVersionStage, ListSecretVersionIds";
/// The Secrets Manager actions on the master secret (alternating users).
pub(crate) const MASTER_SECRET_ACTIONS: &str = "secretsmanager:GetSecretValue and DescribeSecret";
/// The RDS look-ups (managed master secrets; replicas, Aurora readers and custom endpoints,
/// Global Database secondaries).
pub(crate) const RDS_ACTIONS: &str = "rds:DescribeDBInstances, rds:DescribeDBClusters, \
     rds:DescribeDBClusterEndpoints and rds:DescribeGlobalClusters";
/// The KMS actions on a customer managed key of a secret.
pub(crate) const KMS_ACTIONS: &str = "kms:Decrypt and kms:GenerateDataKey";
/// What a function in a VPC needs.
pub(crate) const VPC_NEEDS: &str = "in a VPC: ec2:CreateNetworkInterface, \
     DescribeNetworkInterfaces, DeleteNetworkInterface (AWSLambdaVPCAccessExecutionRole), and a \
     route to Secrets Manager (a VPC endpoint or NAT)";

/// Adds the `permissions` check: every permission the execution role needs for this secret.
pub(crate) fn check(report: &mut Report, found: &SecretFound, master: &MasterFound) {
    let meta = &found.meta;
    let mut lines = vec![format!("{SECRET_ACTIONS} on {}", meta.arn)];
    if found.strategy == Strategy::AlternatingUsers {
        let arn = found.master_arn.as_deref().unwrap_or("<masterarn>");
        lines.push(format!(
            "{MASTER_SECRET_ACTIONS} on the master secret {arn}"
        ));
        let managed = master.secret.as_ref().is_some_and(|m| m.resource.is_some());
        lines.push(format!(
            "{RDS_ACTIONS} on *{}",
            if managed {
                " (needed: the master secret is RDS-managed)"
            } else {
                " (for RDS-managed master secrets, and a user host that is a replica: read \
                 replica, Aurora reader or custom endpoint, Global Database secondary)"
            }
        ));
    }
    for (what, key) in [
        ("the secret", meta.kms_key_id.as_deref()),
        (
            "the master secret",
            master.meta.as_ref().and_then(|m| m.kms_key_id.as_deref()),
        ),
    ] {
        if let Some(key) = key.filter(|k| !k.ends_with("alias/aws/secretsmanager")) {
            lines.push(format!("{KMS_ACTIONS} on {key} (the key of {what})"));
        }
    }
    lines.push(VPC_NEEDS.to_string());
    report.push(
        "permissions",
        Status::Info,
        format!("the execution role needs:\n- {}", lines.join("\n- ")),
    );
}
