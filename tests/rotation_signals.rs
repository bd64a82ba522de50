//! The rotation's signals through the real `rotate-postgres` binary behind the Lambda Runtime
//! API, against moto and a real PostgreSQL: one EMF line per step on stdout (valid EMF, the
//! right outcome, a failed step's error kind), and the EventBridge events moto delivered to a
//! queue through a rule on the bus (a success, a failure), ids and outcome only. A bus that does
//! not exist fails no step (counted in EMF, logged); a process killed before it puts the success
//! event tells it on Secrets Manager's retry; an invalid `ROTATION_EVENT_BUS` fails every
//! invocation naming the variable. The world's leak check runs at the end, as everywhere.

use e2e::World;
use rotation_signals::emf;
use rotation_signals::events::{DETAIL_TYPE_FAILED, DETAIL_TYPE_SUCCEEDED, SOURCE};
use serde_json::{json, Value};

const BUS: &str = "ops-bus";

/// The EMF lines of the rotation function's output: every line whose `_aws` holds
/// `CloudWatchMetrics`, checked against the specification (each directive's metrics and
/// dimensions are top-level members of the document).
fn emf_lines(output: &str) -> Vec<Value> {
    let docs: Vec<Value> = output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["_aws"]["CloudWatchMetrics"].is_array())
        .collect();
    for doc in &docs {
        assert!(doc["_aws"]["Timestamp"].is_i64(), "{doc}");
        for directive in doc["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            assert_eq!(directive["Namespace"], emf::NAMESPACE);
            for metric in directive["Metrics"].as_array().unwrap() {
                let name = metric["Name"].as_str().unwrap();
                assert!(
                    doc[name].is_number(),
                    "metric {name} is a top-level number: {doc}"
                );
            }
            for set in directive["Dimensions"].as_array().unwrap() {
                for key in set.as_array().unwrap() {
                    let key = key.as_str().unwrap();
                    assert!(
                        doc[key].is_string(),
                        "dimension {key} is a top-level string: {doc}"
                    );
                }
            }
        }
    }
    docs
}

/// The EMF lines of one secret, in order.
fn emf_of(output: &str, arn: &str) -> Vec<Value> {
    emf_lines(output)
        .into_iter()
        .filter(|d| d["SecretArn"] == arn)
        .collect()
}

/// An SQS JSON-protocol call to moto (the test's own set-up; the function under test uses the
/// real SDK). moto does not check signatures; the credential scope routes the call to SQS.
fn sqs(world: &World, action: &str, body: Value) -> Value {
    let response = ureq::post(&world.moto.endpoint())
        .set("Content-Type", "application/x-amz-json-1.0")
        .set("X-Amz-Target", &format!("AmazonSQS.{action}"))
        .set(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/sqs/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .send_json(body)
        .unwrap_or_else(|e| panic!("SQS {action}: {e}"));
    response.into_json().expect("SQS answer is JSON")
}

/// A bus, a queue and a rule on the bus sending every event of the rotation function to the
/// queue; returns the queue's URL.
async fn bus_to_queue(world: &World) -> String {
    let events = aws_sdk_eventbridge::Client::new(&world.moto.sdk_config().await);
    events
        .create_event_bus()
        .name(BUS)
        .send()
        .await
        .expect("CreateEventBus");
    let url = sqs(
        world,
        "CreateQueue",
        json!({"QueueName": "rotation-events"}),
    )["QueueUrl"]
        .as_str()
        .expect("QueueUrl")
        .to_string();
    let arn = sqs(
        world,
        "GetQueueAttributes",
        json!({"QueueUrl": url, "AttributeNames": ["QueueArn"]}),
    )["Attributes"]["QueueArn"]
        .as_str()
        .expect("QueueArn")
        .to_string();
    events
        .put_rule()
        .name("rotation-signals")
        .event_bus_name(BUS)
        .event_pattern(json!({"source": [SOURCE]}).to_string())
        .send()
        .await
        .expect("PutRule");
    events
        .put_targets()
        .rule("rotation-signals")
        .event_bus_name(BUS)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("PutTargets");
    url
}

/// Every event in the queue (the messages' bodies).
fn delivered(world: &World, url: &str) -> Vec<Value> {
    let mut found = Vec::new();
    loop {
        let answer = sqs(
            world,
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 10}),
        );
        let Some(messages) = answer["Messages"].as_array().filter(|m| !m.is_empty()) else {
            return found;
        };
        for m in messages {
            found.push(serde_json::from_str(m["Body"].as_str().unwrap()).unwrap());
            sqs(
                world,
                "DeleteMessage",
                json!({"QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"]}),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn emf_per_step_and_events_for_a_success_and_a_failure() {
    let world = World::start().await;
    let queue = bus_to_queue(&world).await;
    let lambda = world
        .rotation_lambda(&[(rotation_signals::EVENT_BUS_VAR, BUS)])
        .await;

    // A rotation that succeeds: four lines, one per step, the last one counting the rotation.
    let ok = world.role_with_secret("app", "initial-Password-1").await;
    let token = lambda.rotate(&world, &ok).await;
    let lines = emf_of(&lambda.output(), &ok);
    let steps: Vec<(&str, &str)> = lines
        .iter()
        .map(|d| (d["Step"].as_str().unwrap(), d["Outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("createSecret", "pending_created"),
            ("setSecret", "password_set"),
            ("testSecret", "tested"),
            ("finishSecret", "finished"),
        ]
    );
    for d in &lines {
        assert_eq!(d["ClientRequestToken"], token.as_str());
        assert_eq!(d["StepSucceeded"], 1.0);
        assert_eq!(d["StepFailed"], 0.0);
        assert_eq!(d["Strategy"], "single_user", "{d}");
        assert_eq!(d["Function"], lambda.host.function_name());
        assert!(d["StepDuration"].as_f64().unwrap() > 0.0);
    }
    let rotations: Vec<f64> = lines
        .iter()
        .map(|d| d[emf::ROTATION_SUCCEEDED].as_f64().unwrap())
        .collect();
    assert_eq!(rotations, [0.0, 0.0, 0.0, 1.0]);
    assert_eq!(lines[3]["EventPublished"], true);
    assert!(lines[..3].iter().all(|d| d.get("EventPublished").is_none()));
    // Secrets Manager retries finishSecret: the success is told again (events are at least
    // once), the metric counts the rotation once.
    let again = lambda.step("finishSecret", &ok, &token).unwrap();
    assert_eq!(again["outcome"], "already_current");
    let retried = emf_of(&lambda.output(), &ok).pop().unwrap();
    assert_eq!(retried["Outcome"], "already_current");
    assert_eq!(retried[emf::ROTATION_SUCCEEDED], 0.0);
    assert_eq!(retried["EventPublished"], true);

    // A rotation that fails at setSecret: the password changed behind the function's back.
    let bad = world.role_with_secret("other", "initial-Password-2").await;
    let bad_token = world.begin_rotation(&bad).await;
    lambda.step("createSecret", &bad, &bad_token).unwrap();
    world.set_password("other", "changed-Behind-Back-3").await;
    let failure = lambda.step("setSecret", &bad, &bad_token).unwrap_err();
    let lines = emf_of(&lambda.output(), &bad);
    assert_eq!(lines.len(), 2);
    let failed = &lines[1];
    assert_eq!(failed["Step"], "setSecret");
    assert_eq!(failed["Outcome"], emf::OUTCOME_ERROR);
    assert_eq!(failed["ErrorKind"], failure.error_type.as_str());
    assert_eq!(failed[emf::STEP_FAILED], 1.0);
    assert_eq!(failed[emf::STEP_SUCCEEDED], 0.0);
    assert_eq!(failed["EventPublished"], true);

    // Killed between moving AWSCURRENT and putting the event (the fail point aborts the
    // process): Secrets Manager's retry of finishSecret tells the success.
    let crashed = world.role_with_secret("third", "initial-Password-4").await;
    let crashed_token = world.begin_rotation(&crashed).await;
    let killer = world
        .rotation_lambda(&[
            (rotation_signals::EVENT_BUS_VAR, BUS),
            (
                "FAILPOINTS",
                &testkit::failpoints::abort_at("events.put_events.before", 0),
            ),
        ])
        .await;
    for step in ["createSecret", "setSecret", "testSecret"] {
        killer.step(step, &crashed, &crashed_token).unwrap();
    }
    let killed = killer
        .step("finishSecret", &crashed, &crashed_token)
        .unwrap_err();
    assert_eq!(killed.error_type, "Runtime.ExitError", "{killed}");
    let labels = world.labels(&crashed).await;
    assert!(labels[&crashed_token].contains(&"AWSCURRENT".to_string()));
    let retry = lambda
        .step("finishSecret", &crashed, &crashed_token)
        .unwrap();
    assert_eq!(retry["outcome"], "already_current");

    // What EventBridge delivered: one event per end (the retried finishSecrets' too), ids and
    // outcome only.
    let events = delivered(&world, &queue);
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[3]["detail-type"], DETAIL_TYPE_SUCCEEDED);
    assert_eq!(events[3]["detail"]["secretArn"], crashed.as_str());
    assert_eq!(
        events[3]["detail"]["clientRequestToken"],
        crashed_token.as_str()
    );
    let success = &events[0];
    assert_eq!(success["source"], SOURCE);
    assert_eq!(success["detail-type"], DETAIL_TYPE_SUCCEEDED);
    assert_eq!(success["resources"], json!([ok]));
    assert_eq!(
        success["detail"],
        json!({
            "secretArn": ok,
            "clientRequestToken": token,
            "step": "finishSecret",
            "outcome": "finished",
            "rotation": "succeeded",
            "errorKind": null,
            "strategy": "single_user",
            "function": lambda.host.function_name(),
        })
    );
    assert_eq!(events[1]["detail-type"], DETAIL_TYPE_SUCCEEDED);
    assert_eq!(events[1]["detail"]["outcome"], "already_current");
    assert_eq!(events[1]["detail"]["clientRequestToken"], token.as_str());
    let failure_event = &events[2];
    assert_eq!(failure_event["detail-type"], DETAIL_TYPE_FAILED);
    assert_eq!(failure_event["detail"]["secretArn"], bad.as_str());
    assert_eq!(failure_event["detail"]["step"], "setSecret");
    assert_eq!(failure_event["detail"]["outcome"], "error");
    assert_eq!(failure_event["detail"]["rotation"], "failed");
    assert_eq!(
        failure_event["detail"]["errorKind"],
        failure.error_type.as_str()
    );
    // Only ids and names: the detail's strings are the ARN, the token and fixed words.
    for event in &events {
        for value in event["detail"].as_object().unwrap().values() {
            if let Some(text) = value.as_str() {
                assert!(
                    !text.contains("Password"),
                    "no password-like text in an event: {event}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bus_fails_no_step_and_a_bad_bus_name_is_refused() {
    let world = World::start().await;
    // No bus of that name in moto: PutEvents fails, the rotation completes regardless.
    let lambda = world
        .rotation_lambda(&[(rotation_signals::EVENT_BUS_VAR, "no-such-bus")])
        .await;
    let arn = world.role_with_secret("app", "initial-Password-1").await;
    lambda.rotate(&world, &arn).await;
    let lines = emf_of(&lambda.output(), &arn);
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3][emf::ROTATION_SUCCEEDED], 1.0);
    assert_eq!(lines[3][emf::EVENT_PUBLISH_FAILED], 1.0);
    assert_eq!(lines[3]["EventPublished"], false);
    assert_eq!(lines[0][emf::EVENT_PUBLISH_FAILED], 0.0);
    assert!(
        lambda
            .output()
            .contains("the rotation's EventBridge event was not put"),
        "the failed delivery is logged"
    );

    // Not a bus name: every invocation fails, naming the variable.
    let bad = world
        .rotation_lambda(&[(rotation_signals::EVENT_BUS_VAR, "not a bus!")])
        .await;
    let token = world.begin_rotation(&arn).await;
    let error = bad.step("createSecret", &arn, &token).unwrap_err();
    assert_eq!(error.error_type, "InvalidConfiguration");
    assert!(
        error
            .error_message
            .contains(rotation_signals::EVENT_BUS_VAR),
        "{error}"
    );
}
