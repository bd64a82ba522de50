//! `template.yaml`'s vault (and `vault-source-roles.yaml`, a shared vault's roles of another
//! account), read as CloudFormation reads it (cfn-lint's decoder, from the tools
//! virtualenv that `make lint` uses, turns the short-form tags into JSON): the separate writer and
//! reader roles, the keys and the bucket policy reserved to the break-glass role, no reserved
//! concurrency and no retries, the alarm on the function's own metric, the template's rules
//! evaluated for every pair of day parameters, and the RDS look-ups limited to the account's own
//! databases.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};

fn root() -> PathBuf {
    testkit::workspace_root()
}

/// The template as JSON (intrinsics as `{"Ref": …}`, `{"Fn::If": …}`), decoded once.
fn template() -> &'static Value {
    static TEMPLATE: OnceLock<Value> = OnceLock::new();
    TEMPLATE.get_or_init(|| decode("template.yaml"))
}

/// `vault-source-roles.yaml`: a shared vault's roles of one other source account.
fn source_roles_template() -> &'static Value {
    static TEMPLATE: OnceLock<Value> = OnceLock::new();
    TEMPLATE.get_or_init(|| decode("vault-source-roles.yaml"))
}

fn decode(file: &str) -> Value {
    let python = root().join(".venv-tools/bin/python");
    assert!(
        python.exists(),
        "{} is missing: `make tools-venv` installs cfn-lint",
        python.display()
    );
    let out = Command::new(&python)
        .current_dir(root())
        .args([
            "-c",
            "import json, sys\n\
             from cfnlint.decode import decode\n\
             t, problems = decode(sys.argv[1])\n\
             assert not problems, problems\n\
             json.dump(t, sys.stdout)",
            file,
        ])
        .output()
        .expect("the tools virtualenv's python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Every resource by logical id.
fn resources(t: &Value) -> BTreeMap<String, Value> {
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, r)| (id.clone(), r.clone()))
        .collect()
}

fn list(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Null => vec![],
        other => vec![other.clone()],
    }
}

fn strings(v: &Value) -> Vec<String> {
    list(v)
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_string())
        .collect()
}

/// The statements of a role's inline policies (a policy under `Fn::If` counts as present).
fn role_statements(role: &Value) -> Vec<Value> {
    list(&role["Properties"]["Policies"])
        .into_iter()
        .filter_map(|p| match p.get("Fn::If") {
            Some(branches) => branches[1].get("PolicyDocument").cloned(),
            None => p.get("PolicyDocument").cloned(),
        })
        .flat_map(|doc| list(&doc["Statement"]))
        .collect()
}

fn tag(role: &Value, key: &str) -> Option<Value> {
    list(&role["Properties"]["Tags"])
        .into_iter()
        .find(|t| t["Key"] == key)
        .map(|t| t["Value"].clone())
}

fn direct(statement: &Value) -> bool {
    statement["Condition"]["StringEquals"]["kms:ViaService"].is_null()
}

fn allowed(statements: &[Value], action: &str) -> Vec<Value> {
    statements
        .iter()
        .filter(|s| s["Effect"] == "Allow" && strings(&s["Action"]).iter().any(|a| a == action))
        .cloned()
        .collect()
}

#[test]
fn writers_only_write_and_readers_only_read_each_their_own_account() {
    let t = template();
    let res = resources(t);
    // A shared vault's roles of another source account, from their own template.
    let source_roles = resources(source_roles_template());
    let roles: Vec<(&String, &Value)> = res
        .iter()
        .chain(&source_roles)
        .filter(|(_, r)| tag(r, "secrets-backup:role").is_some())
        .collect();
    let names: Vec<&str> = roles.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "BackupDrillRole",
            "BackupRole",
            "VaultRestoreRole",
            "VaultSourceReaderRole",
            "VaultSourceWriterRole"
        ]
    );
    for (name, role) in roles {
        let kind = tag(role, "secrets-backup:role").unwrap();
        let account = tag(role, "secrets-backup:source-account").unwrap();
        let account_expr = if source_roles.contains_key(name.as_str()) {
            assert_eq!(account, json!({"Ref": "AccountId"}), "{name}");
            "${AccountId}"
        } else {
            assert_eq!(account, json!({"Ref": "AWS::AccountId"}), "{name}");
            "${AWS::AccountId}"
        };
        let st = role_statements(role);
        let all_actions: Vec<String> = st
            .iter()
            .filter(|s| s["Effect"] == "Allow")
            .flat_map(|s| strings(&s["Action"]))
            .collect();
        for a in &all_actions {
            assert!(
                !a.contains('*') && !a.contains("Delete") && !a.contains("Bypass"),
                "{name}: {a}"
            );
        }
        // Object access: only under the role's own account (snapshots and leases).
        for s in allowed(&st, "s3:GetObject") {
            for r in list(&s["Resource"]) {
                let arn = r["Fn::Sub"][0].as_str().unwrap().to_string();
                assert!(
                    arn.ends_with(&format!("/${{BackupPrefix}}/{account_expr}/*"))
                        || arn.ends_with(&format!("/${{BackupPrefix}}/leases/{account_expr}/*")),
                    "{name}: {arn}"
                );
            }
        }
        // Direct KMS use is bound to the account in the encryption context.
        let context_bound = |s: &Value| {
            let c = &s["Condition"]["StringEquals"];
            assert_eq!(
                c["kms:EncryptionContext:purpose"], "secrets-backup",
                "{name}"
            );
            assert_eq!(
                c["kms:EncryptionContext:account"],
                json!({"Fn::Sub": account_expr}),
                "{name}"
            );
        };
        let has = |action: &str| all_actions.iter().any(|a| a == action);
        match kind.as_str().unwrap() {
            "writer" => {
                assert!(has("s3:PutObject") && has("kms:Sign"), "{name}");
                assert!(!has("s3:GetObjectVersion"), "{name}");
                let keys = allowed(&st, "kms:GenerateDataKey");
                assert!(keys.iter().any(direct), "{name}");
                keys.iter().filter(|s| direct(s)).for_each(context_bound);
                // Decrypt only through a service (S3's encryption, Secrets Manager's): a writer
                // never opens a part.
                assert!(
                    allowed(&st, "kms:Decrypt").iter().all(|s| !direct(s)),
                    "{name}"
                );
                assert!(name != "VaultRestoreRole");
            }
            "reader" => {
                for a in ["s3:PutObject", "kms:GenerateDataKey", "kms:Sign"] {
                    assert!(!has(a), "{name}: {a}");
                }
                assert!(has("kms:Verify") && has("kms:GetPublicKey"), "{name}");
                let opens = allowed(&st, "kms:Decrypt");
                assert!(opens.iter().any(direct), "{name}");
                opens.iter().filter(|s| direct(s)).for_each(context_bound);
            }
            other => panic!("{name}: role kind {other}"),
        }
    }
    // The two functions: the backup through the writer role, the drill through the reader.
    let backup = &res["BackupFunction"]["Properties"];
    let drill = &res["BackupDrillFunction"]["Properties"];
    assert_eq!(backup["Role"], json!({"Fn::GetAtt": ["BackupRole", "Arn"]}));
    assert_eq!(
        drill["Role"],
        json!({"Fn::GetAtt": ["BackupDrillRole", "Arn"]})
    );
    assert!(backup["Events"]["Verify"].is_null() && !drill["Events"]["Verify"].is_null());
    for f in [backup, drill] {
        let env = &f["Environment"]["Variables"];
        assert!(!env["BACKUP_SIGNING_KEY_ID"].is_null(), "{f:#}");
        assert_eq!(f["EventInvokeConfig"]["MaximumRetryAttempts"], 0);
    }
    assert_eq!(
        backup["Environment"]["Variables"]["BACKUP_EXPECTED_UNREADABLE"],
        json!({"Ref": "BackupExpectedUnreadable"})
    );
    assert_eq!(
        drill["Environment"]["Variables"]["BACKUP_ROLE_ARN"],
        json!({"Ref": "BackupDestinationReadRoleArn"})
    );
    // No reserved concurrency anywhere (a new account's default quota cannot spare it).
    let text = t.to_string();
    assert!(!text.contains("ReservedConcurrentExecutions"));
}

#[test]
fn only_the_break_glass_role_deletes_or_reconfigures_the_vault() {
    let t = template();
    let res = resources(t);
    let break_glass =
        json!({"ArnNotEquals": {"aws:PrincipalArn": {"Ref": "VaultBreakGlassRoleArn"}}});
    let denies = |doc: &Value| -> Vec<Value> {
        list(&doc["Statement"])
            .into_iter()
            .filter(|s| s["Effect"] == "Deny" && s["Principal"] == "*")
            .collect()
    };
    // Both keys: deletion, disabling and re-policying reserved to the break-glass role.
    for key in ["BackupKey", "VaultSigningKey"] {
        let d = denies(&res[key]["Properties"]["KeyPolicy"]);
        let reserved = d
            .iter()
            .find(|s| s["Condition"] == break_glass)
            .unwrap_or_else(|| panic!("{key}: no break-glass statement"));
        assert_eq!(
            strings(&reserved["Action"]),
            [
                "kms:ScheduleKeyDeletion",
                "kms:DisableKey",
                "kms:PutKeyPolicy"
            ],
            "{key}"
        );
    }
    let signing = &res["VaultSigningKey"]["Properties"];
    assert_eq!(signing["KeySpec"], "ECC_NIST_P256");
    assert_eq!(signing["KeyUsage"], "SIGN_VERIFY");
    // The data key: each role only for the account it is tagged with; data keys only to
    // writers, opening only to readers.
    let d = denies(&res["BackupKey"]["Properties"]["KeyPolicy"]);
    let cond = |sid: &str| d.iter().find(|s| s["Sid"] == sid).unwrap()["Condition"].clone();
    assert_eq!(
        cond("EachRoleOnlyItsOwnSourceAccount")["StringNotEquals"]["kms:EncryptionContext:account"],
        "${aws:PrincipalTag/secrets-backup:source-account}"
    );
    assert_eq!(
        cond("DataKeysOnlyToWriterRoles")["StringNotEquals"]
            ["aws:PrincipalTag/secrets-backup:role"],
        "writer"
    );
    assert_eq!(
        cond("OpeningOnlyToReaderRoles")["StringNotEquals"]["aws:PrincipalTag/secrets-backup:role"],
        "reader"
    );

    // The bucket: writes must carry If-None-Match (never replace an object); deletes, retention
    // bypass and the lifecycle, policy, versioning and lock settings only by the break-glass role.
    let policy = denies(&res["BackupBucketPolicy"]["Properties"]["PolicyDocument"]);
    assert!(policy
        .iter()
        .any(|s| strings(&s["Action"]) == ["s3:PutObject"]
            && s["Condition"] == json!({"Null": {"s3:if-none-match": "true"}})));
    let reserved = policy
        .iter()
        .find(|s| s["Condition"] == break_glass)
        .expect("a break-glass statement");
    let actions = strings(&reserved["Action"]);
    for a in [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:BypassGovernanceRetention",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketPolicy",
        "s3:DeleteBucketPolicy",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutBucketVersioning",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} not reserved");
    }
    let bucket = &res["BackupBucket"]["Properties"];
    assert_eq!(
        bucket["ObjectLockConfiguration"]["Rule"]["DefaultRetention"],
        json!({"Mode": {"Ref": "BackupObjectLockMode"}, "Days": {"Ref": "BackupRetentionDays"}})
    );
    let rule = &bucket["LifecycleConfiguration"]["Rules"][0];
    assert_eq!(
        rule["NoncurrentVersionExpiration"]["NoncurrentDays"],
        json!({"Ref": "BackupNoncurrentDays"})
    );
    assert_eq!(
        rule["Transitions"][0]["TransitionInDays"],
        json!({"Ref": "BackupTransitionDays"})
    );
    assert_eq!(
        rule["ExpirationInDays"],
        json!({"Ref": "BackupExpirationDays"})
    );
    assert_eq!(
        strings(&t["Parameters"]["BackupObjectLockMode"]["AllowedValues"]),
        ["GOVERNANCE", "COMPLIANCE"]
    );

    // The alarm watches the metric the function emits, in its namespace.
    let alarm = &res["BackupFailuresAlarm"]["Properties"];
    assert_eq!(
        alarm["Namespace"],
        backup::lambda::metrics::DEFAULT_NAMESPACE
    );
    assert_eq!(alarm["MetricName"], "Failures");
    assert_eq!(
        alarm["Dimensions"],
        json!([{"Name": "Mode", "Value": "backup"}])
    );
}

/// A parameter's value as rules see it: a string (a list for a `CommaDelimitedList`).
fn param_values(t: &Value, overrides: &[(&str, &str)]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (name, p) in t["Parameters"].as_object().unwrap() {
        let text = match &p["Default"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            other => panic!("{name}: default {other}"),
        };
        out.insert(name.clone(), json!(text));
    }
    for (k, v) in overrides {
        assert!(out.contains_key(*k), "no parameter {k}");
        out.insert(k.to_string(), json!(v));
    }
    for (name, p) in t["Parameters"].as_object().unwrap() {
        if p["Type"] == "CommaDelimitedList" {
            let s = out[name].as_str().unwrap().to_string();
            out.insert(name.clone(), json!(s.split(',').collect::<Vec<_>>()));
        }
    }
    out
}

/// Evaluates a rule expression: the functions CloudFormation rules use here. Any other panics,
/// so a rule written with one this test does not know cannot pass unchecked.
fn eval(e: &Value, params: &BTreeMap<String, Value>) -> Value {
    let Some(obj) = e.as_object() else {
        return match e {
            Value::Array(items) => Value::Array(items.iter().map(|i| eval(i, params)).collect()),
            other => other.clone(),
        };
    };
    let (f, args) = obj.iter().next().expect("a function");
    let arg = |i: usize| eval(&args[i], params);
    let all = || list(args).into_iter().map(|a| eval(&a, params));
    match f.as_str() {
        "Ref" => params[args.as_str().unwrap()].clone(),
        "Fn::Equals" => json!(arg(0) == arg(1)),
        "Fn::Not" => json!(!arg(0).as_bool().unwrap()),
        "Fn::And" => json!(all().all(|v| v.as_bool().unwrap())),
        "Fn::Or" => json!(all().any(|v| v.as_bool().unwrap())),
        "Fn::Contains" => json!(arg(0).as_array().unwrap().contains(&arg(1))),
        other => panic!("a rule uses {other}, which this test does not evaluate"),
    }
}

/// The descriptions of the failing assertions of every rule that applies.
fn failed_rules(t: &Value, overrides: &[(&str, &str)]) -> Vec<String> {
    let params = param_values(t, overrides);
    let mut failed = vec![];
    for (name, rule) in t["Rules"].as_object().unwrap() {
        if let Some(c) = rule.get("RuleCondition") {
            if !eval(c, &params).as_bool().unwrap() {
                continue;
            }
        }
        for a in list(&rule["Assertions"]) {
            if !eval(&a["Assert"], &params).as_bool().unwrap() {
                failed.push(format!("{name}: {}", a["AssertDescription"]));
            }
        }
    }
    failed
}

fn allowed_days(t: &Value, param: &str) -> Vec<u32> {
    t["Parameters"][param]["AllowedValues"]
        .as_array()
        .unwrap_or_else(|| panic!("{param} has no AllowedValues"))
        .iter()
        .map(|v| v.to_string().trim_matches('"').parse().unwrap())
        .collect()
}

#[test]
fn the_rules_reject_exactly_the_bad_parameter_pairs() {
    let t = template();
    let break_glass = (
        "VaultBreakGlassRoleArn",
        "arn:aws:iam::111111111111:role/break-glass",
    );
    assert_eq!(failed_rules(t, &[break_glass]), Vec::<String>::new());
    // A new vault needs a break-glass role.
    let failed = failed_rules(t, &[]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("VaultBreakGlassRoleArn"), "{failed:?}");
    // An existing destination needs its keys, a cross-account writer its reader.
    let failed = failed_rules(t, &[("BackupDestinationBucket", "vault")]);
    assert!(
        failed
            .iter()
            .any(|f| f.contains("BackupDestinationKmsKeyArn")),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|f| f.contains("BackupDestinationSigningKeyArn")),
        "{failed:?}"
    );
    let failed = failed_rules(
        t,
        &[
            ("BackupDestinationBucket", "vault"),
            (
                "BackupDestinationKmsKeyArn",
                "arn:aws:kms:eu-west-1:2:key/k",
            ),
            (
                "BackupDestinationSigningKeyArn",
                "arn:aws:kms:eu-west-1:2:key/s",
            ),
            ("BackupDestinationRoleArn", "arn:aws:iam::2:role/w"),
        ],
    );
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("BackupDestinationReadRoleArn"),
        "{failed:?}"
    );

    // Every pair of allowed values: rejected exactly when noncurrent versions would go before
    // the retention ends, or objects expire no later than they move to colder storage.
    let (retention, noncurrent) = (
        allowed_days(t, "BackupRetentionDays"),
        allowed_days(t, "BackupNoncurrentDays"),
    );
    let mut rejected = 0;
    for r in &retention {
        for n in &noncurrent {
            let (r, n) = (r.to_string(), n.to_string());
            let failed = failed_rules(
                t,
                &[
                    break_glass,
                    ("BackupRetentionDays", &r),
                    ("BackupNoncurrentDays", &n),
                ],
            );
            let bad = n.parse::<u32>().unwrap() < r.parse::<u32>().unwrap();
            assert_eq!(
                !failed.is_empty(),
                bad,
                "retention {r}, noncurrent {n}: {failed:?}"
            );
            rejected += usize::from(bad);
        }
    }
    assert!(rejected > 50, "{rejected}");
    let (transition, expiration) = (
        allowed_days(t, "BackupTransitionDays"),
        allowed_days(t, "BackupExpirationDays"),
    );
    for tr in &transition {
        for e in &expiration {
            let (tr, e) = (tr.to_string(), e.to_string());
            let failed = failed_rules(
                t,
                &[
                    break_glass,
                    ("BackupTransitionDays", &tr),
                    ("BackupExpirationDays", &e),
                ],
            );
            let bad = e.parse::<u32>().unwrap() <= tr.parse::<u32>().unwrap();
            assert_eq!(
                !failed.is_empty(),
                bad,
                "transition {tr}, expiration {e}: {failed:?}"
            );
        }
    }
    // The defaults are a good pair of each.
    let days = |p: &str| t["Parameters"][p]["Default"].as_u64().unwrap();
    assert!(days("BackupNoncurrentDays") >= days("BackupRetentionDays"));
    assert!(days("BackupExpirationDays") > days("BackupTransitionDays"));
}

/// Every `rds:` action any role of the template allows is limited to this account's database,
/// cluster, cluster endpoint and global cluster ARNs (any region: a Global Database's members are
/// looked up in their own regions), never `*`; the rotation role holds the four look-ups
/// preflight names (`crates/preflight/src/checks/permissions.rs`).
#[test]
fn rds_lookups_are_limited_to_the_accounts_databases() {
    let t = template();
    let expected: Vec<Value> = [
        "arn:${AWS::Partition}:rds:*:${AWS::AccountId}:db:*",
        "arn:${AWS::Partition}:rds:*:${AWS::AccountId}:cluster:*",
        "arn:${AWS::Partition}:rds:*:${AWS::AccountId}:cluster-endpoint:*",
        "arn:${AWS::Partition}:rds::${AWS::AccountId}:global-cluster:*",
    ]
    .iter()
    .map(|arn| json!({ "Fn::Sub": arn }))
    .collect();
    let mut rds_statements = 0;
    for (name, resource) in resources(t) {
        for statement in role_statements(&resource) {
            let actions = strings(&statement["Action"]);
            if !actions.iter().any(|a| a.starts_with("rds:")) {
                continue;
            }
            rds_statements += 1;
            assert_eq!(name, "RotationRole", "{statement}");
            assert_eq!(
                list(&statement["Resource"]),
                expected,
                "{name}: {statement}"
            );
            assert_eq!(
                actions,
                [
                    "rds:DescribeDBInstances",
                    "rds:DescribeDBClusters",
                    "rds:DescribeDBClusterEndpoints",
                    "rds:DescribeGlobalClusters"
                ],
                "{name}"
            );
        }
    }
    assert_eq!(rds_statements, 1);
}
