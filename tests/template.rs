//! `template.yaml`'s vault (and `vault-source-roles.yaml`, a shared vault's roles of another
//! account), read as CloudFormation reads it (cfn-lint's decoder, from the tools
//! virtualenv that `make lint` uses, turns the short-form tags into JSON): the separate writer and
//! reader roles, the keys and the bucket policy reserved to the break-glass role, no reserved
//! concurrency and no retries, the alarm on the function's own metric, the template's rules
//! evaluated for every pair of day parameters, and the RDS look-ups limited to the account's own
//! databases. The alarms and the dashboard: every metric they
//! name is one the code emits (the rotation's `rotation_signals::emf` constants, the backup's
//! `emit` calls), the staleness window is twice the backup interval with missing data breaching,
//! the dashboard body is JSON, and the out-of-band change rule, evaluated by moto's EventBridge
//! pattern matcher, fires for every principal but the rotation and restore roles.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};

/// The workspace root.
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
    testkit::cfn::decode(file)
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
        // A hub's writer (BackupRole with BackupSourceAccounts set) writes every source
        // account's snapshots; otherwise each role only its own account's.
        let hub_accounts = json!({"Fn::If": ["BackupHub", "*", {"Ref": "AWS::AccountId"}]});
        // Object access: only under the role's own account (snapshots and leases).
        for s in allowed(&st, "s3:GetObject") {
            for r in list(&s["Resource"]) {
                let arn = r["Fn::Sub"][0].as_str().unwrap().to_string();
                let own = arn.ends_with(&format!("/${{BackupPrefix}}/{account_expr}/*"))
                    || arn.ends_with(&format!("/${{BackupPrefix}}/leases/{account_expr}/*"));
                let hub = name == "BackupRole"
                    && (arn.ends_with("/${BackupPrefix}/${Accounts}/*")
                        || arn.ends_with("/${BackupPrefix}/leases/${Accounts}/*"))
                    && r["Fn::Sub"][1]["Accounts"] == hub_accounts;
                assert!(own || hub, "{name}: {arn}");
            }
        }
        // Direct KMS use is bound to the account in the encryption context.
        let context_bound = |s: &Value| {
            let hub = &s["Condition"]["StringLike"];
            if name == "BackupRole" && !hub.is_null() {
                assert_eq!(hub["kms:EncryptionContext:purpose"], "secrets-backup");
                assert_eq!(
                    hub["kms:EncryptionContext:account"],
                    json!({"Fn::If": ["BackupHub", "????????????", {"Ref": "AWS::AccountId"}]})
                );
                return;
            }
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
    // The backup schedule starts the state machine (tests/backup_fanout.rs runs it), which
    // invokes the function; the function has no schedule of its own.
    assert!(backup["Events"].is_null(), "{backup:#}");
    let machine = &res["BackupStateMachine"]["Properties"];
    assert_eq!(
        machine["Events"]["Backup"]["Properties"]["Schedule"],
        json!({"Ref": "BackupSchedule"})
    );
    assert_eq!(
        machine["Policies"][0]["LambdaInvokePolicy"]["FunctionName"],
        json!({"Ref": "BackupFunction"})
    );
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
        // For the parameter ARNs built from a list (tests of the Parameter Store statements).
        "Fn::Split" => {
            let text = arg(1);
            json!(text
                .as_str()
                .unwrap()
                .split(arg(0).as_str().unwrap())
                .collect::<Vec<_>>())
        }
        "Fn::Join" => json!(arg(1)
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(arg(0).as_str().unwrap())),
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

/// Parameter Store (`BackupParameterPaths`): the backup and the drill get only the read actions,
/// on the parameters under the configured paths (ARNs built from the parameter), and decrypt only
/// through Parameter Store; nothing at all when no path is configured; the writes of a restore
/// are in a managed policy of their own, without any delete.
#[test]
fn parameter_store_reads_only_under_the_configured_paths() {
    let t = template();
    let res = resources(t);
    assert_eq!(
        t["Conditions"]["HasParameterPaths"],
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "BackupParameterPaths"}, ""]}]})
    );
    assert_eq!(t["Parameters"]["BackupParameterPaths"]["Default"], "");
    let params = param_values(t, &[("BackupParameterPaths", "/prod,/staging/api")]);
    let arns = |s: &Value| -> Vec<String> {
        let v = eval(&s["Resource"], &params);
        strings(&v)
    };
    let reads = [
        "ssm:GetParametersByPath",
        "ssm:GetParameterHistory",
        "ssm:GetParameter",
        "ssm:ListTagsForResource",
    ];
    for name in ["BackupRole", "BackupDrillRole"] {
        let policies = list(&res[name]["Properties"]["Policies"]);
        let ssm: Vec<&Value> = policies
            .iter()
            .filter(|p| p.to_string().contains("ssm:"))
            .collect();
        assert_eq!(ssm.len(), 1, "{name}");
        let branches = &ssm[0]["Fn::If"];
        assert_eq!(branches[0], "HasParameterPaths", "{name}");
        assert_eq!(branches[2], json!({"Ref": "AWS::NoValue"}), "{name}");
        let st = list(&branches[1]["PolicyDocument"]["Statement"]);
        for s in &st {
            for a in strings(&s["Action"]) {
                if a.starts_with("ssm:") {
                    assert!(reads.contains(&a.as_str()), "{name}: {a}");
                    assert_eq!(
                        s["Condition"]["StringEquals"]["aws:ResourceAccount"],
                        json!({"Ref": "AWS::AccountId"}),
                        "{name}"
                    );
                } else {
                    assert_eq!(a, "kms:Decrypt", "{name}");
                    assert_eq!(
                        s["Condition"]["StringEquals"]["kms:ViaService"],
                        json!({"Fn::Sub": "ssm.${AWS::Region}.amazonaws.com"}),
                        "{name}"
                    );
                }
            }
        }
        let on =
            |action: &str| -> Vec<String> { allowed(&st, action).iter().flat_map(arns).collect() };
        assert_eq!(
            on("ssm:GetParameterHistory"),
            [
                "arn:*:ssm:*:*:parameter/prod/*",
                "arn:*:ssm:*:*:parameter/staging/api/*"
            ],
            "{name}"
        );
        let mut by_path = on("ssm:GetParametersByPath");
        by_path.sort();
        assert_eq!(
            by_path,
            [
                "arn:*:ssm:*:*:parameter/prod",
                "arn:*:ssm:*:*:parameter/prod/*",
                "arn:*:ssm:*:*:parameter/staging/api",
                "arn:*:ssm:*:*:parameter/staging/api/*"
            ],
            "{name}"
        );
        let env = if name == "BackupRole" {
            "BackupFunction"
        } else {
            "BackupDrillFunction"
        };
        assert_eq!(
            res[env]["Properties"]["Environment"]["Variables"]["BACKUP_PARAMETER_PATHS"],
            json!({"Ref": "BackupParameterPaths"})
        );
    }
    // The restore's writes: a managed policy for the operators, only with paths configured.
    let restore = &res["ParameterRestorePolicy"];
    assert_eq!(restore["Condition"], "HasParameterPaths");
    let st = list(&restore["Properties"]["PolicyDocument"]["Statement"]);
    let actions: Vec<String> = st.iter().flat_map(|s| strings(&s["Action"])).collect();
    for a in [
        "ssm:PutParameter",
        "ssm:LabelParameterVersion",
        "ssm:AddTagsToResource",
        "ssm:RemoveTagsFromResource",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a}");
        for s in allowed(&st, a) {
            assert_eq!(
                arns(&s),
                [
                    "arn:*:ssm:*:*:parameter/prod/*",
                    "arn:*:ssm:*:*:parameter/staging/api/*"
                ]
            );
        }
    }
    assert!(actions
        .iter()
        .all(|a| !a.contains("Delete") && !a.contains('*')));
    for s in st
        .iter()
        .filter(|s| strings(&s["Action"]).iter().any(|a| a.starts_with("kms:")))
    {
        assert!(!direct(s), "KMS only through Parameter Store: {s}");
    }
    // A spoke's read role: the same reads, under its ParameterPaths, only when given.
    let spoke = testkit::cfn::decode("spoke-role.yaml");
    let params = param_values(&spoke, &[("ParameterPaths", "/prod,/staging/api")]);
    let role = &resources(&spoke)["SpokeReadRole"];
    let policy = list(&role["Properties"]["Policies"])
        .into_iter()
        .find(|p| p.to_string().contains("ssm:"))
        .unwrap();
    assert_eq!(policy["Fn::If"][0], "HasParameterPaths");
    let st = list(&policy["Fn::If"][1]["PolicyDocument"]["Statement"]);
    for s in &st {
        for a in strings(&s["Action"]) {
            assert!(
                reads.contains(&a.as_str()) || a == "kms:Decrypt",
                "spoke: {a}"
            );
        }
    }
    let history: Vec<String> = allowed(&st, "ssm:GetParameterHistory")
        .iter()
        .flat_map(|s| strings(&eval(&s["Resource"], &params)))
        .collect();
    assert_eq!(
        history,
        [
            "arn:*:ssm:*:*:parameter/prod/*",
            "arn:*:ssm:*:*:parameter/staging/api/*"
        ]
    );
    assert_eq!(
        allowed(&st, "kms:Decrypt")[0]["Condition"]["StringLike"]["kms:ViaService"],
        "ssm.*.amazonaws.com"
    );
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

#[test]
fn a_hub_reads_its_spokes_only_through_their_read_role_with_the_external_id() {
    let t = template();
    let res = resources(t);
    // The hub's role may assume the spokes' role by name, and list the organization only in
    // organization mode.
    let policies = list(&res["BackupRole"]["Properties"]["Policies"]);
    let hub = policies
        .iter()
        .find(|p| p["Fn::If"][0] == "BackupHub")
        .expect("the read-spokes policy, under BackupHub");
    let st = list(&hub["Fn::If"][1]["PolicyDocument"]["Statement"]);
    assert_eq!(
        st[0]["Resource"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:iam::*:role/${BackupSourceRoleName}"})
    );
    assert_eq!(st[0]["Action"], "sts:AssumeRole");
    assert_eq!(st[1]["Fn::If"][0], "BackupHubOrganization");
    assert_eq!(st[1]["Fn::If"][1]["Action"], "organizations:ListAccounts");
    // The vault key's per-account binding exempts only roles tagged as a hub, and only the
    // hub stack's roles carry that tag as "true".
    let key = &res["BackupKey"]["Properties"]["KeyPolicy"]["Statement"];
    let bind = list(key)
        .into_iter()
        .find(|s| s["Sid"] == "EachRoleOnlyItsOwnSourceAccount")
        .unwrap();
    assert_eq!(
        bind["Condition"]["StringNotEquals"]["aws:PrincipalTag/secrets-backup:hub"],
        "true"
    );
    for role in ["BackupRole", "BackupDrillRole"] {
        assert_eq!(
            tag(&res[role], "secrets-backup:hub"),
            Some(json!({"Fn::If": ["BackupHub", "true", "false"]})),
            "{role}"
        );
    }
    assert!(tag(&res["VaultRestoreRole"], "secrets-backup:hub").is_none());
    // The function gets the hub's variables only with BackupSourceAccounts set, and a hub
    // without an external id is refused by a rule.
    let env = &res["BackupFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(
        env["BACKUP_SOURCE_EXTERNAL_ID"],
        json!({"Fn::If": ["BackupHub", {"Ref": "BackupSourceExternalId"}, ""]})
    );
    let glass = (
        "VaultBreakGlassRoleArn",
        "arn:aws:iam::123456789012:role/glass",
    );
    let failed = failed_rules(t, &[glass, ("BackupSourceAccounts", "222222222222")]);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].starts_with("BackupHubNeedsAnExternalId"),
        "{failed:?}"
    );
    let with_id = [
        glass,
        ("BackupSourceAccounts", "222222222222"),
        ("BackupSourceExternalId", "hub-id"),
    ];
    assert!(failed_rules(t, &with_id).is_empty());

    // spoke-role.yaml: trusted by the hub's role only (its account as principal, the role's
    // ARN and the external id as conditions); reads only.
    let spoke = testkit::cfn::decode("spoke-role.yaml");
    let role = &spoke["Resources"]["SpokeReadRole"];
    let trust = list(&role["Properties"]["AssumeRolePolicyDocument"]["Statement"]);
    assert_eq!(trust.len(), 1);
    assert_eq!(trust[0]["Action"], "sts:AssumeRole");
    assert_eq!(
        trust[0]["Condition"]["StringEquals"]["sts:ExternalId"],
        json!({"Ref": "ExternalId"})
    );
    assert_eq!(
        trust[0]["Condition"]["ArnEquals"]["aws:PrincipalArn"],
        json!({"Ref": "HubRoleArn"})
    );
    let actions: Vec<String> = role_statements(role)
        .iter()
        .flat_map(|s| strings(&s["Action"]))
        .collect();
    assert!(!actions.is_empty());
    for a in &actions {
        let verb = a.split(':').nth(1).unwrap();
        assert!(
            ["List", "Describe", "Get", "BatchGet", "Decrypt"]
                .iter()
                .any(|v| verb.starts_with(v)),
            "spoke role: {a} is not a read"
        );
    }
    assert_eq!(spoke["Parameters"]["ExternalId"]["NoEcho"], true);
}

// --- Alarms, dashboard, out-of-band changes ------------------------------------------------------

/// The (namespace, metric, dimension names and values) the code emits, for the alarms and the
/// dashboard to be compared with. Rotation: `rotation_signals::emf`'s constants. Backup: the
/// `self.emit("<mode>", &[…])` calls of `crates/backup/src/lambda/function.rs` (each
/// `Metric::count("…")`, `name: "…"` and the `duration(…)` helper's `DurationMs`), in the default
/// namespace (the template sets no `BACKUP_METRICS_NAMESPACE`).
struct Emitted {
    rotation: Vec<&'static str>,
    /// (mode, metric)
    backup: Vec<(String, String)>,
}

fn quoted_after(text: &str, marker: &str) -> Vec<String> {
    text.match_indices(marker)
        .filter_map(|(i, _)| {
            let rest = &text[i + marker.len()..];
            let rest = rest.strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

fn emitted() -> Emitted {
    let source = std::fs::read_to_string(root().join("crates/backup/src/lambda/function.rs"))
        .expect("the backup function's source");
    let mut backup = vec![];
    for (i, _) in source.match_indices("self.emit(") {
        let call = &source[i..];
        let call = &call[..call.find("&summary").expect("emit(…, &summary)")];
        let mode = quoted_after(call, "self.emit(")
            .into_iter()
            .next()
            .or_else(|| {
                let rest = call["self.emit(".len()..].trim_start();
                let rest = rest.strip_prefix('"')?;
                Some(rest[..rest.find('"')?].to_string())
            })
            .expect("a literal mode");
        let mut names = quoted_after(call, "Metric::count(");
        names.extend(quoted_after(call, "name: "));
        if call.contains("elapsed") || call.contains("duration(") {
            names.push("DurationMs".into());
        }
        backup.extend(names.into_iter().map(|n| (mode.clone(), n)));
    }
    assert!(
        backup.len() >= 10,
        "the scan of the backup's metrics found too little: {backup:?}"
    );
    Emitted {
        rotation: rotation_signals::emf::METRICS
            .iter()
            .map(|(n, _)| *n)
            .collect(),
        backup,
    }
}

/// Whether `(namespace, metric, dimensions)` is one the code (or AWS, for the AWS namespaces of
/// resources in this template) emits; `dims` as (name, value) with values as the template has
/// them.
fn is_emitted(e: &Emitted, ns: &str, metric: &str, dims: &[(String, Value)]) -> Result<(), String> {
    let names: Vec<&str> = dims.iter().map(|(n, _)| n.as_str()).collect();
    let value = |n: &str| dims.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let res = resources(template());
    let type_of = |v: &Value| -> String {
        let id = v["Ref"]
            .as_str()
            .or_else(|| v["Fn::GetAtt"][0].as_str())
            .unwrap_or_default();
        res.get(id)
            .map(|r| r["Type"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let ok = match ns {
        rotation_signals::emf::NAMESPACE => {
            e.rotation.contains(&metric)
                && rotation_signals::emf::DIMENSION_SETS
                    .iter()
                    .any(|set| set.to_vec() == names)
                && value("Function") == Some(json!({"Ref": "RotationFunction"}))
        }
        backup::lambda::metrics::DEFAULT_NAMESPACE => {
            let mode = value("Mode").and_then(|v| v.as_str().map(str::to_string));
            names == ["Mode"] && mode.is_some_and(|m| e.backup.contains(&(m, metric.to_string())))
        }
        "AWS/Lambda" => {
            metric == "Errors"
                && names == ["FunctionName"]
                && type_of(&value("FunctionName").unwrap()) == "AWS::Serverless::Function"
        }
        "AWS/Events" => {
            metric == "TriggeredRules"
                && names == ["RuleName"]
                && type_of(&value("RuleName").unwrap()) == "AWS::Events::Rule"
        }
        "AWS/SQS" => {
            metric == "ApproximateNumberOfMessagesVisible"
                && names == ["QueueName"]
                && type_of(&value("QueueName").unwrap()) == "AWS::SQS::Queue"
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{ns} {metric} {dims:?} is not emitted"))
    }
}

#[test]
fn every_alarm_watches_a_metric_the_code_emits_and_notifies_the_topic() {
    let t = template();
    let e = emitted();
    // The template does not move the backup's namespace away from the default.
    assert!(
        resources(t)["BackupFunction"]["Properties"]["Environment"]["Variables"]
            .get("BACKUP_METRICS_NAMESPACE")
            .is_none()
    );
    let alarms: Vec<(String, Value)> = resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .collect();
    let ids: Vec<&str> = alarms.iter().map(|(id, _)| id.as_str()).collect();
    for expected in [
        "RotationStepFailuresAlarm",
        "RotationFailedEventsAlarm",
        "BackupStaleAlarm",
        "BackupDrillIntegrityAlarm",
        "BackupFailureQueueAlarm",
        "OutOfBandChangeAlarm",
    ] {
        assert!(ids.contains(&expected), "{expected} missing: {ids:?}");
    }
    for (id, alarm) in &alarms {
        let p = &alarm["Properties"];
        let dims: Vec<(String, Value)> = list(&p["Dimensions"])
            .iter()
            .map(|d| (d["Name"].as_str().unwrap().to_string(), d["Value"].clone()))
            .collect();
        is_emitted(
            &e,
            p["Namespace"].as_str().unwrap(),
            p["MetricName"].as_str().unwrap(),
            &dims,
        )
        .unwrap_or_else(|why| panic!("{id}: {why}"));
        assert_eq!(
            p["AlarmActions"],
            json!({"Fn::If": ["HasBackupAlarmTopic", [{"Ref": "BackupAlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}),
            "{id}: actions only with a topic"
        );
        assert!(
            p["TreatMissingData"].is_string(),
            "{id}: missing data decided"
        );
    }
}

/// `rate(N unit)` in hours.
fn rate_hours(expr: &str) -> u64 {
    let inner = expr
        .strip_prefix("rate(")
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{expr} is not a rate expression"));
    let (n, unit) = inner.split_once(' ').unwrap();
    let n: u64 = n.parse().unwrap();
    match unit.trim_end_matches('s') {
        "hour" => n,
        "day" => n * 24,
        other => panic!("unit {other}"),
    }
}

#[test]
fn the_staleness_alarm_spans_twice_the_backup_interval_and_missing_data_breaches() {
    let t = template();
    let alarm = &resources(t)["BackupStaleAlarm"]["Properties"];
    assert_eq!(
        alarm["Period"],
        json!({"Fn::FindInMap": ["BackupStaleness", {"Ref": "BackupIntervalHours"}, "Seconds"]})
    );
    assert_eq!(alarm["EvaluationPeriods"], 1);
    assert_eq!(alarm["TreatMissingData"], "breaching");
    assert_eq!(alarm["Statistic"], "SampleCount");
    assert_eq!(alarm["ComparisonOperator"], "LessThanThreshold");
    assert_eq!(alarm["Threshold"], 1);
    // Every interval the parameter accepts maps to twice itself, within CloudWatch's 7-day limit
    // on Period x EvaluationPeriods (PutMetricAlarm: at most 604,800 seconds).
    let hours = allowed_days(t, "BackupIntervalHours");
    for h in &hours {
        let seconds = t["Mappings"]["BackupStaleness"][h.to_string()]["Seconds"]
            .as_u64()
            .unwrap_or_else(|| panic!("no BackupStaleness row for {h}"));
        assert_eq!(seconds, 2 * u64::from(*h) * 3600, "{h} hours");
        assert!(seconds <= 604_800 && seconds.is_multiple_of(60));
    }
    assert_eq!(
        t["Mappings"]["BackupStaleness"].as_object().unwrap().len(),
        hours.len()
    );
    // The defaults agree: BackupSchedule's interval is BackupIntervalHours.
    let schedule = t["Parameters"]["BackupSchedule"]["Default"]
        .as_str()
        .unwrap();
    let default_hours = t["Parameters"]["BackupIntervalHours"]["Default"]
        .as_u64()
        .unwrap();
    assert_eq!(rate_hours(schedule), default_hours);
}

/// The dashboard's body with every `${…}` of its `Fn::Sub` replaced by a placeholder (each must
/// name a resource of the template, `Name.Arn` of one, or a pseudo parameter).
fn dashboard() -> Value {
    let t = template();
    let res = resources(t);
    let body = res["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .expect("DashboardBody is a Fn::Sub string");
    let mut out = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find('}').unwrap() + i;
        let var = &rest[i + 2..end];
        let id = var.split('.').next().unwrap();
        assert!(
            res.contains_key(id) || var.starts_with("AWS::"),
            "the dashboard names {var}, not in the template"
        );
        out.push_str(&format!("<{var}>"));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("the dashboard is not JSON: {e}\n{out}"))
}

#[test]
fn the_dashboard_is_json_and_shows_only_emitted_metrics_and_the_alarms() {
    let e = emitted();
    let d = dashboard();
    let widgets = d["widgets"].as_array().unwrap();
    let mut shown = vec![];
    for w in widgets {
        let p = &w["properties"];
        match w["type"].as_str().unwrap() {
            "metric" => {
                for row in p["metrics"].as_array().unwrap() {
                    let row: Vec<&Value> = row.as_array().unwrap().iter().collect();
                    let (ns, metric) = (row[0].as_str().unwrap(), row[1].as_str().unwrap());
                    let dims: Vec<(String, Value)> = row[2..]
                        .chunks(2)
                        .filter(|c| c.len() == 2 && c[0].is_string())
                        .map(|c| {
                            let v = c[1].as_str().unwrap();
                            // `${RotationFunction}` stands for the template's Ref.
                            let v = match v.strip_prefix('<').and_then(|v| v.strip_suffix('>')) {
                                Some(id) => json!({"Ref": id}),
                                None => json!(v),
                            };
                            (c[0].as_str().unwrap().to_string(), v)
                        })
                        .collect();
                    is_emitted(&e, ns, metric, &dims).unwrap_or_else(|why| panic!("{why}"));
                    shown.push(metric.to_string());
                }
            }
            "log" => {
                let q = p["query"].as_str().unwrap();
                assert!(
                    q.starts_with("SOURCE '<RotationLogGroup>'")
                        || q.starts_with("SOURCE '<BackupLogGroup>'"),
                    "{q}"
                );
                let message = quoted_after(q, "message = ").pop();
                let message = message.or_else(|| {
                    let i = q.find("message = '")? + "message = '".len();
                    Some(q[i..i + q[i..].find('\'')?].to_string())
                });
                assert!(
                    [rotation_signals::emf::MESSAGE, "backup summary"]
                        .contains(&message.as_deref().unwrap_or_default()),
                    "{q}: filters on a message the code writes"
                );
            }
            "alarm" => {
                let alarms: Vec<&str> = p["alarms"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                let res = resources(template());
                for a in &alarms {
                    let id = a.trim_matches(['<', '>']).trim_end_matches(".Arn");
                    assert_eq!(res[id]["Type"], "AWS::CloudWatch::Alarm", "{a}");
                }
                assert!(alarms.len() >= 6);
            }
            other => panic!("widget type {other}"),
        }
    }
    for metric in [
        "RotationSucceeded",
        "StepFailed",
        "StepDuration",
        "Bytes",
        "Secrets",
        "Failures",
        "IntegrityFailures",
    ] {
        assert!(shown.iter().any(|m| m == metric), "{metric} not shown");
    }
}

/// Replaces the template's intrinsics in an event pattern: `GetAtt X.Arn` by a role ARN named
/// after `X`, `Ref P` by `params`, `Fn::If` by `conditions`.
fn resolve(v: &Value, params: &BTreeMap<&str, &str>, conditions: &BTreeMap<&str, bool>) -> Value {
    match v {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| resolve(i, params, conditions))
                .collect(),
        ),
        Value::Object(o) => {
            if let Some(att) = o.get("Fn::GetAtt") {
                return json!(format!(
                    "arn:aws:iam::111122223333:role/{}",
                    att[0].as_str().unwrap()
                ));
            }
            if let Some(name) = o.get("Ref") {
                return json!(params[name.as_str().unwrap()]);
            }
            if let Some(branches) = o.get("Fn::If") {
                let pick = if conditions[branches[0].as_str().unwrap()] {
                    1
                } else {
                    2
                };
                return resolve(&branches[pick], params, conditions);
            }
            Value::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), resolve(v, params, conditions)))
                    .collect(),
            )
        }
        other => other.clone(),
    }
}

/// For each (pattern, events) case, which events match, by moto's implementation of
/// EventBridge's content filtering (`moto.events.models.EventPattern`, from the test
/// virtualenv); one interpreter for every case (importing moto takes seconds).
fn matches(cases: &[(Value, Vec<Value>)]) -> Vec<Vec<bool>> {
    let python = root().join(".venv/bin/python");
    let cases: Vec<Value> = cases
        .iter()
        .map(|(p, e)| json!([p.to_string(), e]))
        .collect();
    let out = Command::new(&python)
        .args([
            "-c",
            "import json, sys\n\
             from moto.events.models import EventPattern\n\
             cases = json.loads(sys.argv[1])\n\
             print(json.dumps([[EventPattern.load(p).matches_event(e) for e in es] for p, es in cases]))",
            &Value::Array(cases).to_string(),
        ])
        .output()
        .expect("the test virtualenv's python (moto)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A CloudTrail management event of Secrets Manager as EventBridge delivers it; `issuer`: the
/// caller's role (`None`: an IAM user, no session issuer).
fn cloudtrail(event_name: &str, issuer: Option<&str>) -> Value {
    let identity = match issuer {
        Some(arn) => {
            json!({"type": "AssumedRole", "sessionContext": {"sessionIssuer": {"type": "Role", "arn": arn}}})
        }
        None => json!({"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/someone"}),
    };
    json!({
        "source": "aws.secretsmanager",
        "detail-type": "AWS API Call via CloudTrail",
        "detail": {
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": event_name,
            "userIdentity": identity,
        }
    })
}

#[test]
fn the_out_of_band_rule_excludes_exactly_the_rotation_and_restore_roles() {
    let t = template();
    let res = resources(t);
    let rule = &res["OutOfBandChangeRule"]["Properties"];
    assert_eq!(
        rule["Targets"],
        json!({"Fn::If": ["HasBackupAlarmTopic", [{"Id": "alarm-topic", "Arn": {"Ref": "BackupAlarmTopicArn"}}], {"Ref": "AWS::NoValue"}]})
    );
    let changes = [
        "PutSecretValue",
        "UpdateSecret",
        "DeleteSecret",
        "PutResourcePolicy",
        "RestoreSecret",
    ];
    assert_eq!(
        strings(&rule["EventPattern"]["detail"]["eventName"]),
        changes
    );
    let rotation = "arn:aws:iam::111122223333:role/RotationRole";
    let restore = "arn:aws:iam::111122223333:role/restorer";
    let other = "arn:aws:iam::111122223333:role/admin";
    let mut cases = vec![];
    let mut expectations = vec![];
    for with_restore in [false, true] {
        let params = BTreeMap::from([("SecretsRestoreRoleArn", restore)]);
        let conditions = BTreeMap::from([("HasSecretsRestoreRole", with_restore)]);
        let pattern = resolve(&rule["EventPattern"], &params, &conditions);
        let mut events = vec![];
        let mut expected = vec![];
        for name in changes {
            for (issuer, fires) in [
                (Some(rotation), false),
                (Some(restore), !with_restore),
                (Some(other), true),
                (None, true),
            ] {
                events.push(cloudtrail(name, issuer));
                expected.push(fires);
            }
        }
        // Reads and other calls are not changes.
        events.push(cloudtrail("GetSecretValue", Some(other)));
        expected.push(false);
        events.push(cloudtrail("DescribeSecret", None));
        expected.push(false);
        cases.push((pattern, events));
        expectations.push(expected);
    }

    // Secrets Manager's RotationFailed service event reaches its rule; an API call does not.
    let failed = &res["RotationFailedRule"]["Properties"]["EventPattern"];
    let service_event = json!({
        "source": "aws.secretsmanager",
        "detail-type": "AWS Service Event via CloudTrail",
        "detail": {"eventSource": "secretsmanager.amazonaws.com", "eventName": "RotationFailed"},
    });
    cases.push((
        failed.clone(),
        vec![service_event, cloudtrail("PutSecretValue", Some(other))],
    ));
    expectations.push(vec![true, false]);
    let found = matches(&cases);
    assert_eq!(found[0], expectations[0], "without a restore role");
    assert_eq!(found[1], expectations[1], "with a restore role");
    assert_eq!(found[2], expectations[2], "RotationFailed");
}
