//! Secrets Manager's read operations over a [`World`].

use serde_json::{json, Map, Value};

use super::population::{Secret, World};
use super::{page_token, parse_token, ApiError, Place};

/// The most ids (or results) one BatchGetSecretValue returns.
pub const BATCH_MAX: usize = 20;

fn arn(place: &Place, s: &Secret) -> String {
    format!(
        "arn:aws:secretsmanager:{}:{}:secret:{}-{}",
        place.region, place.account, s.name, s.suffix
    )
}

/// The index of the secret `id` names (a name or a full ARN).
fn find(world: &World, place: &Place, id: &str) -> Result<usize, ApiError> {
    let name = match id.strip_prefix("arn:") {
        Some(_) => id
            .split_once(":secret:")
            .and_then(|(_, rest)| rest.get(..rest.len().saturating_sub(7)))
            .unwrap_or(""),
        None => id,
    };
    world
        .by_name
        .get(name)
        .copied()
        .filter(|&i| !id.starts_with("arn:") || arn(place, &world.secrets[i]) == id)
        .ok_or_else(|| {
            ApiError::client(
                "ResourceNotFoundException",
                "Secrets Manager can't find the specified secret.",
            )
        })
}

fn tags(s: &Secret) -> Value {
    s.tags
        .iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect()
}

fn stages(s: &Secret) -> Value {
    let mut map = Map::new();
    for v in s.versions.iter().filter(|v| !v.stages.is_empty()) {
        map.insert(v.id.clone(), json!(v.stages));
    }
    Value::Object(map)
}

/// The metadata ListSecrets and DescribeSecret share.
fn entry(place: &Place, s: &Secret) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("ARN".into(), json!(arn(place, s)));
    m.insert("Name".into(), json!(s.name));
    if let Some(d) = &s.description {
        m.insert("Description".into(), json!(d));
    }
    if let Some(k) = &s.kms_key_id {
        m.insert("KmsKeyId".into(), json!(k));
    }
    m.insert("RotationEnabled".into(), json!(s.rotation_days.is_some()));
    if let Some(days) = s.rotation_days {
        m.insert(
            "RotationLambdaARN".into(),
            json!(format!(
                "arn:aws:lambda:{}:{}:function:rotate",
                place.region, place.account
            )),
        );
        m.insert(
            "RotationRules".into(),
            json!({"AutomaticallyAfterDays": days}),
        );
    }
    m.insert("LastChangedDate".into(), json!(s.last_changed));
    m.insert("CreatedDate".into(), json!(s.created));
    m.insert("Tags".into(), tags(s));
    m.insert("SecretVersionsToStages".into(), stages(s));
    m
}

fn max_results(body: &Value, max: usize, default: usize) -> Result<usize, ApiError> {
    match body.get("MaxResults").and_then(Value::as_u64) {
        None => Ok(default),
        Some(n) if (1..=max as u64).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::validation(&format!(
            "Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value \
             less than or equal to {max}"
        ))),
    }
}

/// One ListSecrets / BatchGetSecretValue filter: key and values (a leading `!` negates).
struct Filter {
    key: String,
    values: Vec<String>,
}

fn filters(body: &Value) -> Result<Vec<Filter>, ApiError> {
    let Some(list) = body.get("Filters").and_then(Value::as_array) else {
        return Ok(vec![]);
    };
    list.iter()
        .map(|f| {
            let key = f.get("Key").and_then(Value::as_str).unwrap_or_default();
            if !["name", "tag-key", "tag-value", "description", "all"].contains(&key) {
                return Err(ApiError::client(
                    "InvalidParameterException",
                    &format!("filter key {key:?} is not reproduced by the emulator"),
                ));
            }
            Ok(Filter {
                key: key.to_string(),
                values: f
                    .get("Values")
                    .and_then(Value::as_array)
                    .map(|v| {
                        v.iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Whether `s` passes every filter (prefix matches, case-sensitive; `!` negates a value).
fn passes(s: &Secret, filters: &[Filter]) -> bool {
    filters.iter().all(|f| {
        let fields: Vec<&str> = match f.key.as_str() {
            "name" => vec![&s.name],
            "tag-key" => s.tags.iter().map(|(k, _)| k.as_str()).collect(),
            "tag-value" => s.tags.iter().map(|(_, v)| v.as_str()).collect(),
            "description" => s.description.iter().map(String::as_str).collect(),
            _ => {
                let mut all: Vec<&str> = vec![&s.name];
                all.extend(s.tags.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]));
                all.extend(s.description.iter().map(String::as_str));
                all
            }
        };
        let (negated, plain): (Vec<&String>, Vec<&String>) =
            f.values.iter().partition(|v| v.starts_with('!'));
        let hit = |p: &str| fields.iter().any(|x| x.starts_with(p));
        (plain.is_empty() || plain.iter().any(|p| hit(p))) && negated.iter().all(|p| !hit(&p[1..]))
    })
}

/// The secrets from `start` that pass `filters`, at most `limit`; and where the next page
/// starts, if anything is left.
fn scan(
    world: &World,
    filters: &[Filter],
    start: usize,
    limit: usize,
) -> (Vec<usize>, Option<usize>) {
    let mut out = vec![];
    let mut i = start;
    while i < world.secrets.len() && out.len() < limit {
        if passes(&world.secrets[i], filters) {
            out.push(i);
        }
        i += 1;
    }
    let more = (i < world.secrets.len()).then_some(i);
    (out, more)
}

fn value_entry(world: &World, place: &Place, index: usize, version: usize) -> Value {
    let s = &world.secrets[index];
    let v = &s.versions[version];
    json!({
        "ARN": arn(place, s),
        "Name": s.name,
        "VersionId": v.id,
        "SecretString": world.secret_value(index, &v.id),
        "VersionStages": v.stages,
        "CreatedDate": v.created,
    })
}

fn current(s: &Secret) -> usize {
    s.versions
        .iter()
        .position(|v| v.stages.iter().any(|l| l == "AWSCURRENT"))
        .expect("every generated secret has an AWSCURRENT version")
}

fn secret_id(body: &Value) -> Result<&str, ApiError> {
    body.get("SecretId")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation("SecretId is required"))
}

/// Answers `operation`, or `None` when the emulator does not serve it.
pub fn handle(
    world: &World,
    place: &Place,
    operation: &str,
    body: &Value,
) -> Option<Result<Value, ApiError>> {
    Some(match operation {
        "ListSecrets" => list_secrets(world, place, body),
        "DescribeSecret" => secret_id(body)
            .and_then(|id| find(world, place, id))
            .map(|i| {
                let s = &world.secrets[i];
                let mut m = entry(place, s);
                let versions = m.remove("SecretVersionsToStages").unwrap_or_default();
                m.insert("VersionIdsToStages".into(), versions);
                Value::Object(m)
            }),
        "GetSecretValue" => get_secret_value(world, place, body),
        "BatchGetSecretValue" => batch_get(world, place, body),
        "GetResourcePolicy" => secret_id(body).and_then(|id| find(world, place, id)).map(|i| {
            let s = &world.secrets[i];
            let mut out = json!({"ARN": arn(place, s), "Name": s.name});
            if s.has_policy {
                out["ResourcePolicy"] = json!(json!({
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Effect": "Allow",
                        "Principal": {"AWS": format!("arn:aws:iam::{}:role/app-{i}", place.account)},
                        "Action": "secretsmanager:GetSecretValue",
                        "Resource": "*",
                    }],
                })
                .to_string());
            }
            out
        }),
        "ListSecretVersionIds" => list_versions(world, place, body),
        _ => return None,
    })
}

fn list_secrets(world: &World, place: &Place, body: &Value) -> Result<Value, ApiError> {
    let limit = max_results(body, 100, 100)?;
    let filters = filters(body)?;
    let start = parse_token(body, "InvalidNextTokenException")?;
    let (found, next) = scan(world, &filters, start, limit);
    let list: Vec<Value> = found
        .iter()
        .map(|&i| Value::Object(entry(place, &world.secrets[i])))
        .collect();
    let mut out = json!({ "SecretList": list });
    if let Some(n) = next {
        out["NextToken"] = json!(page_token(n));
    }
    Ok(out)
}

fn get_secret_value(world: &World, place: &Place, body: &Value) -> Result<Value, ApiError> {
    let i = find(world, place, secret_id(body)?)?;
    let s = &world.secrets[i];
    let by_id = body.get("VersionId").and_then(Value::as_str);
    let stage = body.get("VersionStage").and_then(Value::as_str);
    let version = s.versions.iter().position(|v| {
        by_id.is_none_or(|id| v.id == id)
            && stage.map_or(by_id.is_some(), |l| v.stages.iter().any(|x| x == l))
    });
    let version = match (version, by_id, stage) {
        (Some(v), _, _) => v,
        (None, None, None) => current(s),
        _ => {
            return Err(ApiError::client(
                "ResourceNotFoundException",
                "Secrets Manager can't find the specified secret value for staging label or version id.",
            ))
        }
    };
    Ok(value_entry(world, place, i, version))
}

fn batch_get(world: &World, place: &Place, body: &Value) -> Result<Value, ApiError> {
    let ids = body.get("SecretIdList").and_then(Value::as_array);
    let has_filters = body.get("Filters").is_some();
    match (ids, has_filters) {
        (Some(_), true) | (None, false) => Err(ApiError::client(
            "InvalidParameterException",
            "Either SecretIdList or Filters must be provided, but not both.",
        )),
        (Some(ids), false) => {
            if ids.len() > BATCH_MAX {
                return Err(ApiError::validation(&format!(
                    "Value at 'secretIdList' failed to satisfy constraint: Member must have \
                     length less than or equal to {BATCH_MAX}"
                )));
            }
            let (mut values, mut errors) = (vec![], vec![]);
            for id in ids.iter().filter_map(Value::as_str) {
                match find(world, place, id) {
                    Ok(i) => values.push(value_entry(world, place, i, current(&world.secrets[i]))),
                    Err(e) => errors.push(json!({
                        "SecretId": id, "ErrorCode": e.code, "Message": e.message,
                    })),
                }
            }
            Ok(json!({"SecretValues": values, "Errors": errors}))
        }
        (None, true) => {
            let limit = max_results(body, BATCH_MAX, BATCH_MAX)?;
            let filters = filters(body)?;
            let start = parse_token(body, "InvalidNextTokenException")?;
            let (found, next) = scan(world, &filters, start, limit);
            let values: Vec<Value> = found
                .iter()
                .map(|&i| value_entry(world, place, i, current(&world.secrets[i])))
                .collect();
            let mut out = json!({"SecretValues": values, "Errors": []});
            if let Some(n) = next {
                out["NextToken"] = json!(page_token(n));
            }
            Ok(out)
        }
    }
}

fn list_versions(world: &World, place: &Place, body: &Value) -> Result<Value, ApiError> {
    let i = find(world, place, secret_id(body)?)?;
    let s = &world.secrets[i];
    let limit = max_results(body, 100, 100)?;
    let deprecated = body
        .get("IncludeDeprecated")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let start = parse_token(body, "InvalidNextTokenException")?;
    let shown: Vec<_> = s
        .versions
        .iter()
        .filter(|v| deprecated || !v.stages.is_empty())
        .collect();
    let page: Vec<Value> = shown
        .iter()
        .skip(start)
        .take(limit)
        .map(|v| json!({"VersionId": v.id, "VersionStages": v.stages, "CreatedDate": v.created}))
        .collect();
    let mut out = json!({"Versions": page, "ARN": arn(place, s), "Name": s.name});
    if start + limit < shown.len() {
        out["NextToken"] = json!(page_token(start + limit));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::population::Population;
    use super::*;

    fn call(world: &World, op: &str, body: Value) -> Result<Value, ApiError> {
        handle(world, &Place::default(), op, &body).expect("served")
    }

    #[test]
    fn list_secrets_pages_through_everything_once_and_filters() {
        let world = World::generate(&Population::new(250, 0));
        let mut names = vec![];
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut body = json!({"MaxResults": 100});
            if let Some(t) = &token {
                body["NextToken"] = json!(t);
            }
            let page = call(&world, "ListSecrets", body).unwrap();
            pages += 1;
            for s in page["SecretList"].as_array().unwrap() {
                names.push(s["Name"].as_str().unwrap().to_string());
                assert!(!s["SecretVersionsToStages"].as_object().unwrap().is_empty());
            }
            match page.get("NextToken") {
                Some(t) => token = Some(t.as_str().unwrap().to_string()),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(names.len(), 250);
        names.dedup();
        assert_eq!(names.len(), 250);
        let prod = call(
            &world,
            "ListSecrets",
            json!({"Filters": [{"Key": "name", "Values": ["prod/"]}]}),
        )
        .unwrap();
        let prod = prod["SecretList"].as_array().unwrap();
        assert_eq!(prod.len(), 84);
        let not_prod = call(
            &world,
            "ListSecrets",
            json!({"Filters": [{"Key": "name", "Values": ["!prod/"]}]}),
        )
        .unwrap();
        assert_eq!(not_prod["SecretList"].as_array().unwrap().len(), 100);
        let too_many = call(&world, "ListSecrets", json!({"MaxResults": 101})).unwrap_err();
        assert_eq!(too_many.code, "ValidationException");
        let bad = call(&world, "ListSecrets", json!({"NextToken": "nonsense"})).unwrap_err();
        assert_eq!(bad.code, "InvalidNextTokenException");
    }

    #[test]
    fn batch_get_takes_at_most_twenty_ids_and_reports_errors_per_secret() {
        let world = World::generate(&Population::new(50, 0));
        let mut ids: Vec<Value> = world.secrets[..19].iter().map(|s| json!(s.name)).collect();
        ids.push(json!("no/such/secret"));
        let out = call(&world, "BatchGetSecretValue", json!({"SecretIdList": ids})).unwrap();
        assert_eq!(out["SecretValues"].as_array().unwrap().len(), 19);
        assert_eq!(out["Errors"][0]["SecretId"], "no/such/secret");
        assert_eq!(out["Errors"][0]["ErrorCode"], "ResourceNotFoundException");
        for v in out["SecretValues"].as_array().unwrap() {
            assert!(v["VersionStages"]
                .as_array()
                .unwrap()
                .contains(&json!("AWSCURRENT")));
        }
        let mut ids = ids.clone();
        ids.push(json!(world.secrets[30].name));
        let err = call(&world, "BatchGetSecretValue", json!({"SecretIdList": ids})).unwrap_err();
        assert_eq!(err.code, "ValidationException");
        let both = call(
            &world,
            "BatchGetSecretValue",
            json!({"SecretIdList": ["a"], "Filters": [{"Key": "name", "Values": ["a"]}]}),
        )
        .unwrap_err();
        assert_eq!(both.code, "InvalidParameterException");
        // With filters: pages of at most 20.
        let (mut seen, mut token) = (0, None::<String>);
        loop {
            let mut body = json!({"Filters": [{"Key": "name", "Values": ["prod/", "dev/"]}]});
            if let Some(t) = &token {
                body["NextToken"] = json!(t);
            }
            let page = call(&world, "BatchGetSecretValue", body).unwrap();
            let n = page["SecretValues"].as_array().unwrap().len();
            assert!(n <= 20);
            seen += n;
            match page.get("NextToken") {
                Some(t) => token = Some(t.as_str().unwrap().into()),
                None => break,
            }
        }
        assert_eq!(seen, 33);
    }

    #[test]
    fn values_by_id_or_label_and_policies_and_version_lists() {
        let mut world = World::generate(&Population::new(20, 0));
        let s = world.secrets[3].clone();
        let by_arn = format!(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:{}-{}",
            s.name, s.suffix
        );
        let cur = call(&world, "GetSecretValue", json!({"SecretId": by_arn})).unwrap();
        assert!(cur["VersionStages"]
            .as_array()
            .unwrap()
            .contains(&json!("AWSCURRENT")));
        let first = &s.versions[0].id;
        let by_id = call(
            &world,
            "GetSecretValue",
            json!({"SecretId": s.name, "VersionId": first}),
        )
        .unwrap();
        assert_eq!(&by_id["VersionId"], first);
        let missing = call(
            &world,
            "GetSecretValue",
            json!({"SecretId": s.name, "VersionStage": "nope"}),
        )
        .unwrap_err();
        assert_eq!(missing.code, "ResourceNotFoundException");
        let wrong_suffix = call(
            &world,
            "DescribeSecret",
            json!({"SecretId": format!("{}-zzzzzz", &by_arn[..by_arn.len() - 7])}),
        )
        .unwrap_err();
        assert_eq!(wrong_suffix.code, "ResourceNotFoundException");
        let with_policy = world.secrets.iter().position(|s| s.has_policy).unwrap();
        let p = call(
            &world,
            "GetResourcePolicy",
            json!({"SecretId": world.secrets[with_policy].name}),
        )
        .unwrap();
        assert!(p["ResourcePolicy"].as_str().unwrap().contains("Statement"));
        // After a change the old previous version is listed only with IncludeDeprecated.
        world.mutate(1.0, 1);
        let name = &world.secrets[3].name;
        let all = world.secrets[3].versions.len();
        let listed = call(&world, "ListSecretVersionIds", json!({"SecretId": name})).unwrap();
        let deprecated = call(
            &world,
            "ListSecretVersionIds",
            json!({"SecretId": name, "IncludeDeprecated": true, "MaxResults": 1}),
        )
        .unwrap();
        assert_eq!(listed["Versions"].as_array().unwrap().len(), 2);
        assert_eq!(deprecated["Versions"].as_array().unwrap().len(), 1);
        assert_eq!(deprecated["NextToken"].is_string(), all > 1);
    }
}
