//! The moto server: SDK clients, Secrets Manager's part of a rotation, reset, shutdown.

use std::net::TcpStream;

use aws_sdk_secretsmanager::primitives::Blob;
use testkit::moto::Moto;
use testkit::rotation::{AWSCURRENT, AWSPENDING};

const SECRET: &str = "app/db";

fn stages_of(
    described: &aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput,
    version: &str,
) -> Vec<String> {
    described
        .version_ids_to_stages()
        .and_then(|map| map.get(version))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn begin_rotation_adds_a_valueless_pending_version() {
    let moto = Moto::start();
    let sm = moto.secrets_client().await;
    let created = sm
        .create_secret()
        .name(SECRET)
        .secret_string(r#"{"password":"one"}"#)
        .send()
        .await
        .expect("CreateSecret");
    let first = created.version_id().expect("a version id").to_string();

    let token = moto.begin_rotation(&sm, SECRET).await;
    assert!((32..=64).contains(&token.len()), "{token}");
    assert!(uuid::Uuid::parse_str(&token).is_ok(), "{token}");
    assert_ne!(token, first);

    let described = sm
        .describe_secret()
        .secret_id(SECRET)
        .send()
        .await
        .expect("DescribeSecret");
    assert_eq!(stages_of(&described, &token), [AWSPENDING]);
    assert_eq!(stages_of(&described, &first), [AWSCURRENT]);
    assert_eq!(described.rotation_enabled(), Some(true));

    let error = sm
        .get_secret_value()
        .secret_id(SECRET)
        .version_id(&token)
        .version_stage(AWSPENDING)
        .send()
        .await
        .expect_err("the pending version has no value");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{error:?}"
    );
    let current = sm
        .get_secret_value()
        .secret_id(SECRET)
        .version_stage(AWSCURRENT)
        .send()
        .await
        .expect("AWSCURRENT is readable");
    assert_eq!(current.secret_string(), Some(r#"{"password":"one"}"#));

    // Finish this rotation by hand, as a rotation function would, then start the next one.
    sm.put_secret_value()
        .secret_id(SECRET)
        .client_request_token(&token)
        .secret_string(r#"{"password":"two"}"#)
        .version_stages(AWSPENDING)
        .send()
        .await
        .expect("PutSecretValue");
    sm.update_secret_version_stage()
        .secret_id(SECRET)
        .version_stage(AWSCURRENT)
        .move_to_version_id(&token)
        .remove_from_version_id(&first)
        .send()
        .await
        .expect("UpdateSecretVersionStage");
    let second = moto.begin_rotation(&sm, SECRET).await;
    let described = sm
        .describe_secret()
        .secret_id(SECRET)
        .send()
        .await
        .expect("DescribeSecret");
    assert_eq!(stages_of(&described, &second), [AWSPENDING]);
    assert_eq!(stages_of(&described, &token), [AWSCURRENT]);
}

#[tokio::test]
async fn reset_clears_state_and_drop_stops_the_server() {
    let moto = Moto::start();
    assert_eq!(moto.region(), "us-east-1");
    assert_eq!(moto.account_id(), "123456789012");
    let env = moto.env();
    let keys: Vec<&str> = env.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_EC2_METADATA_DISABLED"
        ]
    );
    assert!(env.contains(&("AWS_ENDPOINT_URL".to_string(), moto.endpoint())));

    let sm = moto.secrets_client().await;
    sm.create_secret()
        .name(SECRET)
        .secret_binary(Blob::new(b"\x00\x01".to_vec()))
        .send()
        .await
        .expect("CreateSecret");
    let s3 = moto.s3_client().await;
    // The test kit's S3 client addresses buckets path-style, as moto needs.
    testkit::vault::create_bucket(&s3, "backups", None).await;
    s3.put_object()
        .bucket("backups")
        .key("a/b.json")
        .body(b"{}".to_vec().into())
        .send()
        .await
        .expect("PutObject");
    let listed = s3
        .list_objects_v2()
        .bucket("backups")
        .send()
        .await
        .expect("ListObjectsV2");
    assert_eq!(listed.key_count(), Some(1));

    moto.reset();
    let secrets = sm.list_secrets().send().await.expect("ListSecrets");
    assert!(secrets.secret_list().is_empty(), "{secrets:?}");
    let buckets = s3.list_buckets().send().await.expect("ListBuckets");
    assert!(buckets.buckets().is_empty(), "{buckets:?}");

    let port = moto
        .endpoint()
        .rsplit(':')
        .next()
        .and_then(|port| port.parse::<u16>().ok())
        .expect("endpoint ends with a port");
    TcpStream::connect(("127.0.0.1", port)).expect("moto listens");
    drop(moto);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "moto stopped"
    );
}

#[tokio::test]
async fn recording_lists_the_operations_made_since_it_started() {
    let moto = Moto::start();
    let client = moto.secrets_client().await;
    client
        .create_secret()
        .name("before")
        .secret_string("{}")
        .send()
        .await
        .expect("CreateSecret");
    assert!(moto.recorded_operations().is_empty(), "off by default");
    moto.start_recording();
    client
        .describe_secret()
        .secret_id("before")
        .send()
        .await
        .expect("DescribeSecret");
    client
        .get_random_password()
        .send()
        .await
        .expect("GetRandomPassword");
    assert_eq!(
        moto.recorded_operations(),
        vec![
            "secretsmanager.DescribeSecret".to_string(),
            "secretsmanager.GetRandomPassword".to_string()
        ]
    );
}
