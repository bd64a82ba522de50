//! The real AWS SDKs (Secrets Manager, SSM) read the quota emulator: pagination, batches with
//! errors per secret, policies, version lists, parameters by path with decryption, history,
//! descriptions, tags; and a throttled answer the SDK's standard retry strategy retries.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::config::Credentials;
use testkit::quota_emulator::{EmulatorConfig, Population, QuotaEmulator, Quotas};

async fn config(endpoint: &str, attempts: u32) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "emulator"))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(attempts)
                .with_initial_backoff(Duration::from_millis(50)),
        )
        .load()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_read_the_emulator_and_retry_its_throttling() {
    let emulator = QuotaEmulator::start(
        &Population::new(230, 40),
        EmulatorConfig {
            // One DescribeSecret per second: the second call in a row is throttled.
            quotas: Quotas::published().with("DescribeSecret", 1),
            ..EmulatorConfig::default()
        },
    );
    let conf = config(&emulator.endpoint(), 10).await;
    let sm = aws_sdk_secretsmanager::Client::new(&conf);

    // ListSecrets through the SDK's paginator: three pages, every secret once.
    let pages: Vec<_> = sm
        .list_secrets()
        .max_results(100)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("ListSecrets pages");
    assert_eq!(pages.len(), 3);
    let names: Vec<String> = pages
        .iter()
        .flat_map(|p| p.secret_list())
        .map(|s| s.name().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 230);
    let first = &pages[0].secret_list()[0];
    assert!(first.last_changed_date().is_some());
    assert!(first
        .secret_versions_to_stages()
        .unwrap()
        .values()
        .any(|l| l.contains(&"AWSCURRENT".to_string())));

    // BatchGetSecretValue: 20 ids, one missing, reported per secret.
    let mut ids: Vec<String> = names[..19].to_vec();
    ids.push("missing/secret".into());
    let batch = sm
        .batch_get_secret_value()
        .set_secret_id_list(Some(ids))
        .send()
        .await
        .expect("BatchGetSecretValue");
    assert_eq!(batch.secret_values().len(), 19);
    assert!(batch.secret_values()[0]
        .secret_string()
        .unwrap()
        .contains("password"));
    assert_eq!(
        batch.errors()[0].error_code(),
        Some("ResourceNotFoundException")
    );
    let too_many = sm
        .batch_get_secret_value()
        .set_secret_id_list(Some(names[..21].to_vec()))
        .send()
        .await
        .expect_err("21 ids are refused");
    assert!(format!("{too_many:?}").contains("ValidationException"));

    // Version values, policy, version ids.
    let value = sm
        .get_secret_value()
        .secret_id(&names[5])
        .version_stage("AWSCURRENT")
        .send()
        .await
        .expect("GetSecretValue");
    assert!(value.created_date().is_some());
    let policy = sm
        .get_resource_policy()
        .secret_id(&names[5])
        .send()
        .await
        .expect("GetResourcePolicy");
    assert_eq!(policy.name(), Some(names[5].as_str()));
    let versions = sm
        .list_secret_version_ids()
        .secret_id(&names[5])
        .send()
        .await
        .expect("ListSecretVersionIds");
    assert!(versions
        .versions()
        .iter()
        .any(|v| v.version_id() == value.version_id()));
    let missing = sm
        .get_secret_value()
        .secret_id("missing/secret")
        .send()
        .await
        .expect_err("not found");
    assert!(missing
        .as_service_error()
        .is_some_and(|e| e.is_resource_not_found_exception()));

    // Throttling: two DescribeSecret at once at one per second; the second is throttled and
    // the SDK retries it until the bucket refills.
    let before = emulator.counts();
    assert_eq!(before.get("DescribeSecret").map(|c| c.calls), None);
    for name in &names[..2] {
        let described = sm
            .describe_secret()
            .secret_id(name)
            .send()
            .await
            .expect("DescribeSecret succeeds after the SDK's retries");
        assert_eq!(described.name(), Some(name.as_str()));
    }
    let counts = emulator.counts()["DescribeSecret"];
    assert!(counts.throttled >= 1, "{counts:?}");
    assert_eq!(counts.calls - counts.throttled, 2, "{counts:?}");
    // Without retries the throttling reaches the caller with its code.
    let once = aws_sdk_secretsmanager::Client::new(&config(&emulator.endpoint(), 1).await);
    let throttled = once
        .describe_secret()
        .secret_id(&names[3])
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(
        aws_sdk_secretsmanager::error::ProvideErrorMetadata::code(&throttled),
        Some("ThrottlingException")
    );

    // Parameter Store.
    let ssm = aws_sdk_ssm::Client::new(&conf);
    let params: Vec<_> = ssm
        .get_parameters_by_path()
        .path("/")
        .recursive(true)
        .with_decryption(true)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("GetParametersByPath pages");
    assert_eq!(params.len(), 4, "pages of ten");
    let params: Vec<_> = params.iter().flat_map(|p| p.parameters()).collect();
    assert_eq!(params.len(), 40);
    let secure = params
        .iter()
        .find(|p| p.r#type() == Some(&aws_sdk_ssm::types::ParameterType::SecureString))
        .expect("a SecureString");
    let name = secure.name().unwrap();
    let history = ssm
        .get_parameter_history()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .expect("GetParameterHistory");
    assert_eq!(history.parameters().last().unwrap().value(), secure.value());
    let got = ssm
        .get_parameters()
        .names(name)
        .names("/no/such")
        .with_decryption(false)
        .send()
        .await
        .expect("GetParameters");
    assert_ne!(got.parameters()[0].value(), secure.value(), "not decrypted");
    assert_eq!(got.invalid_parameters(), ["/no/such"]);
    let described = ssm
        .describe_parameters()
        .parameter_filters(
            aws_sdk_ssm::types::ParameterStringFilter::builder()
                .key("Type")
                .values("SecureString")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("DescribeParameters");
    assert!(described
        .parameters()
        .iter()
        .all(|p| p.key_id() == Some("alias/aws/ssm")));
    let tags = ssm
        .list_tags_for_resource()
        .resource_type(aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .expect("ListTagsForResource");
    assert_eq!(tags.tag_list()[0].key(), "env");
}
