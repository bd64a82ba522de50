//! Parameter Store's (SSM's) read operations over a [`World`].

use serde_json::{json, Value};

use super::population::{Parameter, World};
use super::{page_token, parse_token, ApiError, Place};

fn arn(place: &Place, p: &Parameter) -> String {
    format!(
        "arn:aws:ssm:{}:{}:parameter{}",
        place.region, place.account, p.name
    )
}

fn find(world: &World, name: &str) -> Option<usize> {
    world
        .parameters
        .binary_search_by(|p| p.name.as_str().cmp(name))
        .ok()
}

fn not_found(name: &str) -> ApiError {
    ApiError::client("ParameterNotFound", &format!("Parameter {name} not found."))
}

fn max_results(body: &Value, max: u64) -> Result<usize, ApiError> {
    match body.get("MaxResults").and_then(Value::as_u64) {
        None => Ok(max as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::validation(&format!(
            "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy \
             constraint: Member must have value less than or equal to {max}"
        ))),
    }
}

fn value(world: &World, i: usize, version: i64, decrypt: bool) -> String {
    if world.parameters[i].kind == "SecureString" && !decrypt {
        world.parameter_ciphertext(i, version)
    } else {
        world.parameter_value(i, version)
    }
}

/// A `Parameter` as GetParameters and GetParametersByPath return it.
fn parameter(
    world: &World,
    place: &Place,
    i: usize,
    version: i64,
    decrypt: bool,
    selector: Option<&str>,
) -> Value {
    let p = &world.parameters[i];
    let v = &p.history[(version - 1) as usize];
    let mut out = json!({
        "Name": p.name, "Type": p.kind, "Value": value(world, i, version, decrypt),
        "Version": version, "LastModifiedDate": v.modified, "ARN": arn(place, p),
        "DataType": "text",
    });
    if let Some(s) = selector {
        out["Selector"] = json!(s);
    }
    out
}

fn decrypt(body: &Value) -> bool {
    body.get("WithDecryption")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Answers `operation`, or `None` when the emulator does not serve it.
pub fn handle(
    world: &World,
    place: &Place,
    operation: &str,
    body: &Value,
) -> Option<Result<Value, ApiError>> {
    Some(match operation {
        "GetParametersByPath" => by_path(world, place, body),
        "GetParameters" => get_parameters(world, place, body),
        "GetParameterHistory" => history(world, body),
        "DescribeParameters" => describe(world, place, body),
        "ListTagsForResource" => list_tags(world, body),
        _ => return None,
    })
}

/// Whether `name` is under `path` (`/a/b`): directly (one level) or at any depth.
fn under(name: &str, path: &str, recursive: bool) -> bool {
    let prefix = if path.ends_with('/') {
        path.to_string()
    } else {
        format!("{path}/")
    };
    match name.strip_prefix(&prefix) {
        Some(rest) => !rest.is_empty() && (recursive || !rest.contains('/')),
        None => false,
    }
}

fn by_path(world: &World, place: &Place, body: &Value) -> Result<Value, ApiError> {
    let path = body.get("Path").and_then(Value::as_str).unwrap_or_default();
    if !path.starts_with('/') {
        return Err(ApiError::validation(
            "The parameter doesn't meet the parameter name requirements. The parameter name must begin with a forward slash \"/\".",
        ));
    }
    if body.get("ParameterFilters").is_some() {
        return Err(ApiError::validation(
            "ParameterFilters on GetParametersByPath are not reproduced by the emulator",
        ));
    }
    let recursive = body
        .get("Recursive")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let limit = max_results(body, 10)?;
    let start = match body.get("NextToken") {
        Some(_) => parse_token(body, "InvalidNextToken")?,
        // Names are sorted: the first candidate is the first name at or after the path.
        None => world.parameters.partition_point(|p| p.name.as_str() < path),
    };
    let mut found = vec![];
    let mut i = start;
    while i < world.parameters.len() && found.len() < limit {
        let p = &world.parameters[i];
        if !p.name.starts_with(path.trim_end_matches('/')) {
            i = world.parameters.len();
            break;
        }
        if under(&p.name, path, recursive) {
            let latest = p.history.len() as i64;
            found.push(parameter(world, place, i, latest, decrypt(body), None));
        }
        i += 1;
    }
    let mut out = json!({ "Parameters": found });
    if i < world.parameters.len() {
        out["NextToken"] = json!(page_token(i));
    }
    Ok(out)
}

fn get_parameters(world: &World, place: &Place, body: &Value) -> Result<Value, ApiError> {
    let names: Vec<&str> = body
        .get("Names")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() || names.len() > 10 {
        return Err(ApiError::validation(
            "1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length less than or equal to 10",
        ));
    }
    let (mut found, mut invalid) = (vec![], vec![]);
    for requested in names {
        // `name:3` selects version 3, `name:label` the version carrying the label.
        let (name, selector) = match requested.rsplit_once(':') {
            Some((n, s)) if !n.is_empty() => (n, Some(s)),
            _ => (requested, None),
        };
        let version = find(world, name).and_then(|i| {
            let p = &world.parameters[i];
            let v = match selector {
                None => Some(p.history.len() as i64),
                Some(s) => match s.parse::<i64>() {
                    Ok(n) => (1..=p.history.len() as i64).contains(&n).then_some(n),
                    Err(_) => p
                        .history
                        .iter()
                        .find(|v| v.labels.iter().any(|l| l == s))
                        .map(|v| v.version),
                },
            }?;
            Some((i, v))
        });
        match version {
            Some((i, v)) => found.push(parameter(
                world,
                place,
                i,
                v,
                decrypt(body),
                selector.map(|s| format!(":{s}")).as_deref(),
            )),
            None => invalid.push(json!(requested)),
        }
    }
    Ok(json!({"Parameters": found, "InvalidParameters": invalid}))
}

fn history(world: &World, body: &Value) -> Result<Value, ApiError> {
    let name = body.get("Name").and_then(Value::as_str).unwrap_or_default();
    let i = find(world, name).ok_or_else(|| not_found(name))?;
    let p = &world.parameters[i];
    let limit = max_results(body, 50)?;
    let start = parse_token(body, "InvalidNextToken")?;
    let page: Vec<Value> = p
        .history
        .iter()
        .skip(start)
        .take(limit)
        .map(|v| {
            let mut e = json!({
                "Name": p.name, "Type": p.kind, "LastModifiedDate": v.modified,
                "LastModifiedUser": "arn:aws:iam::123456789012:role/deployer",
                "Value": value(world, i, v.version, decrypt(body)), "Version": v.version,
                "Labels": v.labels, "Tier": p.tier, "Policies": [], "DataType": "text",
            });
            if let Some(k) = &p.key_id {
                e["KeyId"] = json!(k);
            }
            if let Some(d) = &p.description {
                e["Description"] = json!(d);
            }
            e
        })
        .collect();
    let mut out = json!({ "Parameters": page });
    if start + limit < p.history.len() {
        out["NextToken"] = json!(page_token(start + limit));
    }
    Ok(out)
}

/// One ParameterFilter of DescribeParameters.
type Test = Box<dyn Fn(&Parameter) -> bool>;

fn describe(world: &World, place: &Place, body: &Value) -> Result<Value, ApiError> {
    if body.get("Filters").is_some() {
        return Err(ApiError::validation(
            "the legacy Filters of DescribeParameters are not reproduced by the emulator",
        ));
    }
    let limit = max_results(body, 50)?;
    let mut tests: Vec<Test> = vec![];
    for f in body
        .get("ParameterFilters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = f.get("Key").and_then(Value::as_str).unwrap_or_default();
        let option = f.get("Option").and_then(Value::as_str);
        let values: Vec<String> = f
            .get("Values")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        tests.push(match (key, option) {
            ("Name", None | Some("Equals")) => Box::new(move |p| values.contains(&p.name)),
            ("Name", Some("BeginsWith")) => {
                Box::new(move |p| values.iter().any(|v| p.name.starts_with(v.as_str())))
            }
            ("Path", o @ (None | Some("OneLevel") | Some("Recursive"))) => {
                let recursive = o == Some("Recursive");
                Box::new(move |p| values.iter().any(|v| under(&p.name, v, recursive)))
            }
            ("Type", None | Some("Equals")) => {
                Box::new(move |p| values.iter().any(|v| v == p.kind))
            }
            _ => {
                return Err(ApiError::client(
                    "InvalidFilterKey",
                    &format!("filter {key} {option:?} is not reproduced by the emulator"),
                ))
            }
        });
    }
    let start = parse_token(body, "InvalidNextToken")?;
    let mut found = vec![];
    let mut i = start;
    while i < world.parameters.len() && found.len() < limit {
        let p = &world.parameters[i];
        if tests.iter().all(|t| t(p)) {
            let mut m = json!({
                "Name": p.name, "ARN": arn(place, p), "Type": p.kind,
                "LastModifiedDate": p.history.last().map(|v| v.modified),
                "LastModifiedUser": "arn:aws:iam::123456789012:role/deployer",
                "Version": p.history.len(), "Tier": p.tier, "Policies": [], "DataType": "text",
            });
            if let Some(k) = &p.key_id {
                m["KeyId"] = json!(k);
            }
            if let Some(d) = &p.description {
                m["Description"] = json!(d);
            }
            found.push(m);
        }
        i += 1;
    }
    let mut out = json!({ "Parameters": found });
    if i < world.parameters.len() {
        out["NextToken"] = json!(page_token(i));
    }
    Ok(out)
}

fn list_tags(world: &World, body: &Value) -> Result<Value, ApiError> {
    let kind = body
        .get("ResourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != "Parameter" {
        return Err(ApiError::client(
            "InvalidResourceType",
            &format!("resource type {kind:?}: the emulator serves Parameter only"),
        ));
    }
    let id = body
        .get("ResourceId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let i = find(world, id)
        .ok_or_else(|| ApiError::client("InvalidResourceId", "The resource ID isn't valid."))?;
    let tags: Vec<Value> = world.parameters[i]
        .tags
        .iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(json!({ "TagList": tags }))
}

#[cfg(test)]
mod tests {
    use super::super::population::Population;
    use super::*;

    fn call(world: &World, op: &str, body: Value) -> Result<Value, ApiError> {
        handle(world, &Place::default(), op, &body).expect("served")
    }

    #[test]
    fn by_path_pages_of_ten_recursive_or_one_level_and_decryption() {
        let world = World::generate(&Population::new(0, 300));
        // Services 0, 3, 6, … are under /prod; five parameters each.
        let expected = world
            .parameters
            .iter()
            .filter(|p| p.name.starts_with("/prod/"))
            .count();
        assert_eq!(expected, 20 * 5);
        let (mut names, mut token) = (vec![], None::<String>);
        loop {
            let mut body = json!({"Path": "/prod", "Recursive": true, "WithDecryption": true});
            if let Some(t) = &token {
                body["NextToken"] = json!(t);
            }
            let page = call(&world, "GetParametersByPath", body).unwrap();
            let params = page["Parameters"].as_array().unwrap();
            assert!(params.len() <= 10);
            for p in params {
                if p["Type"] == "SecureString" {
                    assert!(!p["Value"].as_str().unwrap().starts_with("AQICAH"));
                }
                names.push(p["Name"].as_str().unwrap().to_string());
            }
            match page.get("NextToken") {
                Some(t) => token = Some(t.as_str().unwrap().into()),
                None => break,
            }
        }
        assert_eq!(names.len(), expected);
        // One level: nothing directly under /prod (every parameter is two levels down).
        let flat = call(&world, "GetParametersByPath", json!({"Path": "/prod"})).unwrap();
        assert_eq!(flat["Parameters"].as_array().unwrap().len(), 0);
        let one = call(
            &world,
            "GetParametersByPath",
            json!({"Path": "/prod/svc-00000"}),
        )
        .unwrap();
        let one = one["Parameters"].as_array().unwrap();
        assert_eq!(one.len(), 5);
        let secure = one.iter().find(|p| p["Type"] == "SecureString").unwrap();
        assert!(secure["Value"].as_str().unwrap().starts_with("AQICAH"));
        let err = call(
            &world,
            "GetParametersByPath",
            json!({"Path": "/prod", "MaxResults": 11}),
        )
        .unwrap_err();
        assert_eq!(err.code, "ValidationException");
    }

    #[test]
    fn history_labels_selectors_tags_and_describe_filters() {
        let world = World::generate(&Population::new(0, 60));
        let p = world
            .parameters
            .iter()
            .find(|p| p.history.len() == 3)
            .unwrap();
        let h = call(
            &world,
            "GetParameterHistory",
            json!({"Name": p.name, "MaxResults": 2}),
        )
        .unwrap();
        assert_eq!(h["Parameters"].as_array().unwrap().len(), 2);
        assert_eq!(h["Parameters"][1]["Labels"], json!(["stable"]));
        assert!(h["NextToken"].is_string());
        let got = call(
            &world,
            "GetParameters",
            json!({"Names": [format!("{}:stable", p.name), format!("{}:1", p.name), "/nope"],
                   "WithDecryption": true}),
        )
        .unwrap();
        assert_eq!(got["Parameters"][0]["Version"], 2);
        assert_eq!(got["Parameters"][0]["Selector"], ":stable");
        assert_eq!(got["Parameters"][1]["Version"], 1);
        assert_eq!(got["InvalidParameters"], json!(["/nope"]));
        let tags = call(
            &world,
            "ListTagsForResource",
            json!({"ResourceType": "Parameter", "ResourceId": p.name}),
        )
        .unwrap();
        assert_eq!(tags["TagList"][0]["Key"], "env");
        let missing = call(&world, "GetParameterHistory", json!({"Name": "/x"})).unwrap_err();
        assert_eq!(missing.code, "ParameterNotFound");
        let secure = call(
            &world,
            "DescribeParameters",
            json!({"ParameterFilters": [{"Key": "Type", "Values": ["SecureString"]},
                                        {"Key": "Path", "Option": "Recursive", "Values": ["/dev"]}]}),
        )
        .unwrap();
        let secure = secure["Parameters"].as_array().unwrap();
        assert!(!secure.is_empty());
        assert!(secure.iter().all(|p| p["Type"] == "SecureString"
            && p["Name"].as_str().unwrap().starts_with("/dev/")
            && p["KeyId"] == "alias/aws/ssm"));
    }
}
