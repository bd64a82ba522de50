//! Parameter Store as a second source (issue 11), through the real `backup-lambda` and
//! `secrets-backup` binaries against moto: a `/{env}/{service}/{name}` hierarchy with each type
//! (SecureString under a customer key, StringList in the Advanced tier with a policy, String),
//! labelled old
//! versions and tags, and a parameter outside the configured path; then a change, a deletion, a
//! relabel, a description and a tag changed; verify reports them, `restore` plans without values,
//! `restore --apply` brings back values, types, keys, tier, tags and labels as new versions and
//! label moves, and a second `--apply` changes nothing. Every output is checked for values
//! (`BackupWorld`'s `Drop`).

use std::collections::BTreeMap;

use aws_sdk_ssm::types::{ParameterTier, ParameterType, ResourceTypeForTagging, Tag};
use e2e::backup::{scheduled_event, BackupWorld};
use serde_json::Value;

const DB: &str = "/prod/api/db-password";
const HOSTS: &str = "/prod/api/hosts";
const NAME: &str = "/prod/web/name";
const OUTSIDE: &str = "/staging/api/db-password";

/// A parameter policy (Advanced tier only).
const EXPIRATION: &str = r#"[{"Type":"Expiration","Version":"1.0","Attributes":{"Timestamp":"2030-12-02T21:34:33.000Z"}}]"#;

/// A manifest entry: name, source, and each version's id and labels.
type Entry = (String, String, Vec<(String, Vec<String>)>);

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build().unwrap()
}

/// Version, labels and value of every version of `name`, its type, key, tier, description and
/// tags (`None`: it does not exist).
#[derive(Debug, PartialEq, Eq)]
struct Live {
    kind: String,
    key: Option<String>,
    tier: String,
    description: Option<String>,
    policies: Vec<Value>,
    tags: BTreeMap<String, String>,
    latest: String,
    labels: BTreeMap<String, String>,
}

async fn live(ssm: &aws_sdk_ssm::Client, name: &str) -> Option<Live> {
    let history = ssm
        .get_parameter_history()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .ok()?;
    let versions = history.parameters();
    let last = versions.iter().max_by_key(|v| v.version()).unwrap();
    let mut labels = BTreeMap::new();
    for v in versions {
        for l in v.labels() {
            labels.insert(l.clone(), v.value().unwrap().to_string());
        }
    }
    let tags = ssm
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .unwrap()
        .tag_list()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    Some(Live {
        kind: last.r#type().unwrap().as_str().to_string(),
        key: last.key_id().map(String::from),
        tier: last
            .tier()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        description: last.description().map(String::from),
        policies: last
            .policies()
            .iter()
            .map(|p| serde_json::from_str(p.policy_text().unwrap()).unwrap())
            .collect(),
        tags,
        latest: last.value().unwrap().to_string(),
        labels,
    })
}

async fn put(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
    kind: ParameterType,
    value: &str,
    key: Option<&str>,
    overwrite: bool,
) -> i64 {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(kind)
        .set_key_id(key.map(String::from))
        .overwrite(overwrite)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutParameter {name}: {e:?}"))
        .version()
}

async fn label(ssm: &aws_sdk_ssm::Client, name: &str, version: i64, l: &str) {
    ssm.label_parameter_version()
        .name(name)
        .parameter_version(version)
        .labels(l)
        .send()
        .await
        .unwrap();
}

fn names_with_status(report: &Value) -> Vec<(String, String)> {
    report["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parameters_are_backed_up_verified_and_restored() {
    let w = BackupWorld::start().await;
    let ssm = aws_sdk_ssm::Client::new(&w.moto.sdk_config().await);
    let cmk = w
        .kms
        .create_key()
        .description("parameters")
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    w.sm.create_secret()
        .name("app/one")
        .secret_string(w.string_value())
        .send()
        .await
        .unwrap();
    let fresh = |what: &str| w.remember(&format!("{what}-{}", uuid::Uuid::new_v4().simple()));
    // /prod/api/db-password: v1 "stable", v2 "canary", v3 latest; SecureString under a CMK.
    let db: Vec<String> = (1..=3).map(|i| fresh(&format!("db{i}"))).collect();
    for (i, v) in db.iter().enumerate() {
        put(&ssm, DB, ParameterType::SecureString, v, Some(&cmk), i > 0).await;
    }
    label(&ssm, DB, 1, "stable").await;
    label(&ssm, DB, 2, "canary").await;
    ssm.add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(DB)
        .tags(tag("team", "api"))
        .send()
        .await
        .unwrap();
    // A StringList in the Advanced tier, with a tag, a description and an expiration policy.
    let hosts = format!("{},{}", fresh("h1"), fresh("h2"));
    ssm.put_parameter()
        .name(HOSTS)
        .value(&hosts)
        .r#type(ParameterType::StringList)
        .tier(ParameterTier::Advanced)
        .description("api hosts")
        .policies(EXPIRATION)
        .tags(tag("env", "prod"))
        .send()
        .await
        .unwrap();
    let name_value = fresh("web");
    put(&ssm, NAME, ParameterType::String, &name_value, None, false).await;
    put(
        &ssm,
        OUTSIDE,
        ParameterType::SecureString,
        &fresh("staging"),
        None,
        false,
    )
    .await;
    let policies: Vec<Value> = serde_json::from_str(EXPIRATION).unwrap();
    assert_eq!(live(&ssm, HOSTS).await.unwrap().policies, policies);
    let before: BTreeMap<&str, Option<Live>> = BTreeMap::from([
        (DB, live(&ssm, DB).await),
        (HOSTS, live(&ssm, HOSTS).await),
        (NAME, live(&ssm, NAME).await),
    ]);

    // Backup: the secret and the three parameters under /prod, nothing under /staging.
    let host = w
        .lambda(&[
            ("BACKUP_NAME_PREFIXES", "app/"),
            ("BACKUP_PARAMETER_PATHS", "/prod"),
        ])
        .await;
    let out = w.invoke(&host, &scheduled_event()).unwrap();
    assert_eq!(out["outcome"], "complete", "{out:#}");
    w.capture(&host);
    let manifest: Value =
        serde_json::from_slice(&w.get_object(out["manifest"].as_str().unwrap()).await).unwrap();
    let mut entries: Vec<Entry> = manifest["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["source"].as_str().unwrap().to_string(),
                s["versions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| {
                        (
                            v["versionId"].as_str().unwrap().to_string(),
                            serde_json::from_value(v["labels"].clone()).unwrap(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    entries.sort();
    let ids =
        |e: &(String, String, Vec<(String, Vec<String>)>)| (e.0.clone(), e.1.clone(), e.2.clone());
    let l = |id: &str, labels: &[&str]| {
        (
            id.to_string(),
            labels.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(entries.len(), 4, "{entries:#?}");
    assert_eq!(
        ids(&entries[0]),
        (
            DB.to_string(),
            "parameterstore".to_string(),
            vec![
                l("3", &["AWSCURRENT"]),
                l("1", &["stable"]),
                l("2", &["canary"])
            ]
        )
    );
    assert_eq!(entries[1].0, HOSTS);
    assert_eq!(entries[2].0, NAME);
    assert_eq!(
        (entries[3].0.as_str(), entries[3].1.as_str()),
        ("app/one", "secretsmanager")
    );
    assert_eq!(manifest["filters"]["parameterPaths"][0], "/prod");
    let clean = w.cli_ok(&["verify", "--json"], 0).json();
    assert!(names_with_status(&clean).is_empty(), "{clean:#}");

    // Change, delete, relabel, a description changed, a tag added.
    let leaked = fresh("leaked");
    let v4 = put(
        &ssm,
        DB,
        ParameterType::SecureString,
        &leaked,
        Some(&cmk),
        true,
    )
    .await;
    label(&ssm, DB, v4, "stable").await;
    ssm.delete_parameter().name(HOSTS).send().await.unwrap();
    ssm.put_parameter()
        .name(NAME)
        .value(&name_value)
        .description("edited")
        .overwrite(true)
        .send()
        .await
        .unwrap();
    ssm.add_tags_to_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(NAME)
        .tags(tag("owner", "someone"))
        .send()
        .await
        .unwrap();
    let drift = w.cli_ok(&["verify", "--json"], 0).json();
    assert_eq!(
        names_with_status(&drift),
        [
            (DB.to_string(), "changed".to_string()),
            (HOSTS.to_string(), "missing".to_string()),
            (NAME.to_string(), "changed".to_string()),
        ],
        "{drift:#}"
    );

    // The plan: what would change, without values.
    let plan = w.cli_ok(&["restore", "--json"], 0).json();
    let actions: BTreeMap<String, Vec<String>> = plan["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                serde_json::from_value(s["actions"].clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions[DB],
        [
            "move stable back to existing version 1 (from 4)",
            &format!(
                "put snapshot version 3 as a new version (type, tier, data type, description, \
                 policies), KMS key {cmk}"
            )
        ]
    );
    assert!(
        actions[HOSTS][0].starts_with("create it with snapshot version 1"),
        "{actions:#?}"
    );
    assert!(
        actions[NAME].iter().any(|a| a == "remove tags owner"),
        "{actions:#?}"
    );
    assert_eq!(live(&ssm, HOSTS).await, None, "a dry run writes nothing");

    // Apply: everything comes back, as new versions; history is kept.
    let applied = w.cli_ok(&["restore", "--apply", "--json"], 0).json();
    assert!(
        applied["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["error"].is_null()),
        "{applied:#}"
    );
    let after_db = live(&ssm, DB).await.unwrap();
    assert_eq!(after_db.latest, db[2]);
    assert_eq!(after_db.labels["stable"], db[0]);
    assert_eq!(after_db.labels["canary"], db[1]);
    assert_eq!(after_db.key.as_deref(), Some(cmk.as_str()));
    assert_eq!(after_db.kind, "SecureString");
    let history = ssm.get_parameter_history().name(DB).send().await.unwrap();
    assert_eq!(
        history.parameters().len(),
        5,
        "v4 (the leaked value) is kept"
    );
    for name in [DB, HOSTS, NAME] {
        let mut now = live(&ssm, name).await.unwrap();
        let was = before[name].as_ref().unwrap();
        // Labels compared by value above; the rest must equal the state before.
        now.labels.clone_from(&was.labels);
        assert_eq!(&now, was, "{name}");
    }
    assert_eq!(live(&ssm, HOSTS).await.unwrap().policies, policies);
    assert_eq!(live(&ssm, HOSTS).await.unwrap().tier, "Advanced");
    assert!(live(&ssm, OUTSIDE).await.is_some());

    // A second apply finds nothing to do; verify is clean again.
    let again = w.cli_ok(&["restore", "--apply", "--json"], 0).json();
    assert_eq!(again["secrets"].as_array().unwrap().len(), 0, "{again:#}");
    let history_again = ssm.get_parameter_history().name(DB).send().await.unwrap();
    assert_eq!(history_again.parameters().len(), 5);
    let clean = w.cli_ok(&["verify", "--json"], 0).json();
    assert!(names_with_status(&clean).is_empty(), "{clean:#}");
}
