//! Whether putting a resource policy back widens access compared with the live one: the restore
//! plan flags it (a snapshot taken before an incident may hold a policy that was narrowed since,
//! for a reason).
//!
//! Read from the IAM policy grammar: an `Allow` statement grants its principals (`"*"`,
//! `{"AWS": …}`, `{"Service": …}`, `{"Federated": …}`; `NotPrincipal` counts as everyone), with or
//! without a `Condition`; a `Deny` statement takes access away.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// What the principals of a policy are granted: principal → whether some `Allow` statement
/// grants it without a condition.
type Grants = BTreeMap<String, bool>;

struct Parsed {
    grants: Grants,
    denies: Vec<Value>,
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    }
}

fn principals(statement: &Value) -> Vec<String> {
    if statement.get("NotPrincipal").is_some() {
        return vec!["*".into()];
    }
    match statement.get("Principal") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Object(by_kind)) => by_kind
            .iter()
            .flat_map(|(kind, ids)| {
                as_list(ids).into_iter().map(move |id| match id.as_str() {
                    Some("*") => "*".to_string(),
                    Some(id) => format!("{kind} {id}"),
                    None => format!("{kind} {id}"),
                })
            })
            .collect(),
        _ => vec![],
    }
}

fn parse(policy: Option<&str>) -> Result<Parsed, ()> {
    let mut parsed = Parsed {
        grants: Grants::new(),
        denies: vec![],
    };
    let Some(text) = policy.filter(|p| !p.trim().is_empty()) else {
        return Ok(parsed);
    };
    let doc: Value = serde_json::from_str(text).map_err(|_| ())?;
    for statement in as_list(doc.get("Statement").unwrap_or(&Value::Null)) {
        let conditional = statement
            .get("Condition")
            .is_some_and(|c| c.as_object().is_some_and(|c| !c.is_empty()));
        match statement.get("Effect").and_then(Value::as_str) {
            Some("Allow") => {
                for p in principals(statement) {
                    let unconditional = parsed.grants.entry(p).or_insert(false);
                    *unconditional |= !conditional;
                }
            }
            Some("Deny") => parsed.denies.push(statement.clone()),
            _ => {}
        }
    }
    Ok(parsed)
}

/// How `restored` widens access compared with `live` (`None`: no policy), one finding per line;
/// empty when it does not. Flagged: `*` (everyone) granted, a principal the live policy does not
/// grant, a grant whose conditions are removed, a `Deny` statement dropped. A policy that cannot be
/// read is flagged too.
pub fn widening(live: Option<&str>, restored: Option<&str>) -> Vec<String> {
    let (Ok(live), Ok(restored)) = (parse(live), parse(restored)) else {
        return vec!["a policy is not valid JSON: review it before applying".into()];
    };
    let mut findings = vec![];
    for (principal, unconditional) in &restored.grants {
        match live.grants.get(principal) {
            None if principal == "*" => findings.push("grants everyone (principal *)".to_string()),
            None => findings.push(format!("grants a new principal: {principal}")),
            Some(false) if *unconditional => {
                findings.push(format!("removes the conditions on {principal}"))
            }
            Some(_) => {}
        }
    }
    let kept: BTreeSet<String> = restored.denies.iter().map(Value::to_string).collect();
    for deny in live
        .denies
        .iter()
        .filter(|d| !kept.contains(&d.to_string()))
    {
        let sid = deny
            .get("Sid")
            .and_then(Value::as_str)
            .map(|s| format!(" {s}"))
            .unwrap_or_default();
        findings.push(format!("drops the Deny statement{sid}"));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(statements: Value) -> String {
        json!({"Version": "2012-10-17", "Statement": statements}).to_string()
    }

    fn allow(principal: Value, condition: Option<Value>) -> Value {
        let mut s = json!({"Effect": "Allow", "Principal": principal,
            "Action": "secretsmanager:GetSecretValue", "Resource": "*"});
        if let Some(c) = condition {
            s["Condition"] = c;
        }
        s
    }

    const APP: &str = "arn:aws:iam::123456789012:role/app";
    const OTHER: &str = "arn:aws:iam::210987654321:root";

    #[test]
    fn the_same_or_a_narrower_policy_does_not_widen() {
        let p = policy(json!([allow(json!({"AWS": APP}), None)]));
        assert!(widening(Some(&p), Some(&p)).is_empty());
        // Removing a policy, or a principal, narrows.
        assert!(widening(Some(&p), None).is_empty());
        assert!(widening(Some(&p), Some(&policy(json!([])))).is_empty());
        assert!(widening(None, None).is_empty());
        // Adding a condition narrows.
        let conditional = policy(json!([allow(
            json!({"AWS": APP}),
            Some(json!({"StringEquals": {"aws:PrincipalTag/team": "db"}}))
        )]));
        assert!(widening(Some(&p), Some(&conditional)).is_empty());
    }

    #[test]
    fn new_principals_and_everyone_are_flagged() {
        let live = policy(json!([allow(json!({"AWS": APP}), None)]));
        let wider = policy(json!([allow(json!({"AWS": [APP, OTHER]}), None)]));
        assert_eq!(
            widening(Some(&live), Some(&wider)),
            vec![format!("grants a new principal: AWS {OTHER}")]
        );
        for everyone in [json!("*"), json!({"AWS": "*"})] {
            let public = policy(json!([allow(everyone, None)]));
            assert_eq!(
                widening(Some(&live), Some(&public)),
                vec!["grants everyone (principal *)"]
            );
            assert_eq!(
                widening(None, Some(&public)),
                vec!["grants everyone (principal *)"]
            );
        }
        let not_principal = policy(json!([{"Effect": "Allow", "NotPrincipal": {"AWS": APP},
            "Action": "*", "Resource": "*"}]));
        assert_eq!(
            widening(Some(&live), Some(&not_principal)),
            vec!["grants everyone (principal *)"]
        );
    }

    #[test]
    fn removed_conditions_and_dropped_denies_are_flagged() {
        let cond = json!({"StringEquals": {"aws:SourceVpce": "vpce-1"}});
        let deny = json!({"Sid": "NoDelete", "Effect": "Deny", "Principal": "*",
            "Action": "secretsmanager:DeleteSecret", "Resource": "*"});
        let live = policy(json!([allow(json!({"AWS": APP}), Some(cond)), deny]));
        let restored = policy(json!([allow(json!({"AWS": APP}), None)]));
        assert_eq!(
            widening(Some(&live), Some(&restored)),
            vec![
                format!("removes the conditions on AWS {APP}"),
                "drops the Deny statement NoDelete".to_string()
            ]
        );
        // Deleting a policy that held a Deny widens too.
        assert_eq!(
            widening(Some(&live), None),
            vec!["drops the Deny statement NoDelete"]
        );
    }

    #[test]
    fn an_unreadable_policy_is_flagged() {
        assert_eq!(widening(Some("{"), None).len(), 1);
        assert_eq!(widening(None, Some("not json")).len(), 1);
    }
}
