//! The secret's rotation settings: enabled with which function, and a rotation in progress
//! (checks `rotation`, `pending-version`).

use super::secret::SecretFound;
use crate::report::{Report, Status};
use crate::{Ports, PreflightOptions};
use rotation::alternating::UserPair;
use rotation::{SecretJson, SecretMetadata, Strategy, AWSCURRENT, AWSPENDING};

fn function_name_of(arn: &str) -> &str {
    // arn:aws:lambda:region:account:function:NAME[:qualifier]
    let mut parts = arn.split(':');
    let name = parts.by_ref().skip_while(|p| *p != "function").nth(1);
    name.unwrap_or(arn)
}

/// Adds the `rotation` and `pending-version` checks. An AWSPENDING value that the next retry of
/// the rotation would refuse (another user or host than AWSCURRENT's, or not its alternate, or
/// malformed) is a FAIL with the way out.
pub(crate) async fn check(
    ports: &Ports<'_>,
    report: &mut Report,
    found: &SecretFound,
    options: &PreflightOptions,
) {
    let problem = match found.meta.version_with(AWSPENDING) {
        Some(id) if found.meta.version_with(AWSCURRENT) != Some(id) => {
            pending_problem(ports, found, id).await
        }
        _ => None,
    };
    check_metadata(report, &found.meta, options, problem);
}

/// The `rotation` and `pending-version` checks from the metadata, with what is wrong with the
/// AWSPENDING value when it was read.
pub(crate) fn check_metadata(
    report: &mut Report,
    meta: &SecretMetadata,
    options: &PreflightOptions,
    problem: Option<String>,
) {
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
        Some(id) => match problem {
            Some(problem) => report.push_fix(
                "pending-version",
                Status::Fail,
                format!("version {id} is labelled AWSPENDING, but {problem}: every retry of this rotation fails"),
                format!(
                    "cancel it: aws secretsmanager update-secret-version-stage --secret-id {} \
                     --version-stage AWSPENDING --remove-from-version-id {id}, then rotate again",
                    meta.arn
                ),
            ),
            None => report.push_fix(
                "pending-version",
                Status::Warn,
                format!(
                    "version {id} is labelled AWSPENDING: a rotation is in progress or failed part-way"
                ),
                "let the running rotation finish; if it failed, fix the cause and rotate again (the \
                 next rotation resumes with this version)",
            ),
        },
    }
}

/// What makes the AWSPENDING value `id` unusable for the rotation's next retry, in words (user
/// names and hosts, never a value); `None` when it is usable or has no value yet.
async fn pending_problem(ports: &Ports<'_>, found: &SecretFound, id: &str) -> Option<String> {
    let current = found.credentials.as_ref()?;
    let text = ports
        .store
        .get_value(&found.meta.arn, id, AWSPENDING)
        .await
        .ok()??;
    let pending =
        match SecretJson::parse(&text).and_then(|json| json.credentials(ports.target.profile())) {
            Ok(creds) => creds,
            Err(e) => return Some(format!("its value is invalid ({e})")),
        };
    let expected = match found.strategy {
        Strategy::SingleUser => current.username.clone(),
        Strategy::AlternatingUsers => {
            let pair = UserPair::of(&current.username, ports.target.profile()).ok()?;
            if pair.original == current.username {
                pair.clone
            } else {
                pair.original
            }
        }
    };
    if pending.username != expected {
        return Some(format!(
            "its user is {:?} where the rotation expects {expected:?}",
            pending.username
        ));
    }
    if pending.host != current.host {
        return Some(format!(
            "its host is {:?} where AWSCURRENT has {:?}",
            pending.host, current.host
        ));
    }
    None
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
