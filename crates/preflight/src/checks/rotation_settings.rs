//! The secret's rotation settings: enabled with which function, and a rotation in progress
//! (checks `rotation`, `pending-version`).

use crate::report::{Report, Status};
use crate::PreflightOptions;
use rotation::{SecretMetadata, AWSCURRENT, AWSPENDING};

fn function_name_of(arn: &str) -> &str {
    // arn:aws:lambda:region:account:function:NAME[:qualifier]
    let mut parts = arn.split(':');
    let name = parts.by_ref().skip_while(|p| *p != "function").nth(1);
    name.unwrap_or(arn)
}

/// Adds the `rotation` and `pending-version` checks.
pub(crate) fn check(report: &mut Report, meta: &SecretMetadata, options: &PreflightOptions) {
    match (meta.rotation_enabled, &meta.rotation_lambda_arn) {
        (Some(true), Some(arn)) => {
            let attached = function_name_of(arn);
            match &options.function_name {
                Some(me) if me != attached => report.push_fix(
                    "rotation",
                    Status::Warn,
                    format!("rotation is enabled with another function: {arn}"),
                    format!("attach this function ({me}) if it should rotate this secret"),
                ),
                _ => report.push(
                    "rotation",
                    Status::Pass,
                    format!("rotation is enabled with function {arn}"),
                ),
            }
        }
        (Some(true), None) => report.push_fix(
            "rotation",
            Status::Fail,
            "rotation is enabled but no rotation function is attached",
            "aws secretsmanager rotate-secret --secret-id <ARN> --rotation-lambda-arn <function \
             ARN> --rotation-rules AutomaticallyAfterDays=30",
        ),
        _ => report.push_fix(
            "rotation",
            Status::Warn,
            "rotation is not enabled yet",
            "when every other check passes: aws secretsmanager rotate-secret --secret-id <ARN> \
             --rotation-lambda-arn <function ARN> --rotation-rules AutomaticallyAfterDays=30 \
             (the function also needs a resource policy letting secretsmanager.amazonaws.com \
             invoke it)",
        ),
    }
    let pending = meta
        .versions
        .iter()
        .find(|(_, stages)| {
            stages.iter().any(|s| s == AWSPENDING) && !stages.iter().any(|s| s == AWSCURRENT)
        })
        .map(|(id, _)| id.clone());
    match pending {
        None => report.push(
            "pending-version",
            Status::Pass,
            "no rotation is in progress",
        ),
        Some(id) => report.push_fix(
            "pending-version",
            Status::Warn,
            format!(
                "version {id} is labelled AWSPENDING: a rotation is in progress or failed part-way"
            ),
            "let the running rotation finish; if it failed, fix the cause and rotate again (the \
             next rotation resumes with this version)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::function_name_of;

    #[test]
    fn function_names_come_out_of_arns() {
        assert_eq!(
            function_name_of("arn:aws:lambda:us-east-1:1:function:rotate"),
            "rotate"
        );
        assert_eq!(
            function_name_of("arn:aws:lambda:us-east-1:1:function:rotate:live"),
            "rotate"
        );
        assert_eq!(function_name_of("rotate"), "rotate");
    }
}
