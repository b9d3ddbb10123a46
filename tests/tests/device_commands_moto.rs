//! The device-commands step with AWS IoT's data plane on a real moto
//! server: reference 004's night light readings (250, 240, 260, 350, 400)
//! give one `led_on: true` and one `led_on: false` with `on_change`, one
//! command per reading with `always` (read back from moto's recorded
//! publishes), and the shadow mode leaves the desired state.

use aws_sdk_iotdataplane::Client as IotData;
use e2e_tests::{
    http_request_with_headers, recorded_requests, sdk_config, start_recording, MotoServer,
};
use serde_json::{json, Value};
use telemetry_aws::iotdata::IotCommands;
use telemetry_core::config::pipeline_file::PipelineFile;
use telemetry_core::invocation::commands::{CommandTally, CommandsStep};
use telemetry_core::invocation::InvocationSettings;
use telemetry_core::sink::commands::CommandSink;
use telemetry_core::sink::dead_letter::LocalDeadLetters;

fn settings(name: &str, send: &str, via: &str) -> InvocationSettings {
    PipelineFile::parse(&format!(
        r#"
        [[command]]
        name = "{name}"
        from = "+/telemetry"
        when = "light < 300"
        topic = "{{device}}/commands"
        payload = {{ led_on = true }}
        otherwise = {{ led_on = false }}
        send = "{send}"
        via = "{via}"
        "#
    ))
    .unwrap()
    .into()
}

/// Reference 004's readings as an IoT rule -> SQS batch, one message each.
fn lights(device: &str, lights: &[u32]) -> Vec<u8> {
    let records: Vec<Value> = lights
        .iter()
        .enumerate()
        .map(|(n, light)| {
            let body = json!({"light": light, "topic": format!("{device}/telemetry")});
            json!({"messageId": format!("{device}-{n}-{light}"), "eventSource": "aws:sqs", "body": body.to_string()})
        })
        .collect();
    serde_json::to_vec(&json!({ "Records": records })).unwrap()
}

fn create_thing(moto: &MotoServer, name: &str) {
    let scope = "AWS4-HMAC-SHA256 Credential=testing/20261201/us-east-1/iot/aws4_request, SignedHeaders=host, Signature=0";
    let (status, body) = http_request_with_headers(
        &moto.endpoint,
        "POST",
        &format!("/things/{name}"),
        &[
            ("Authorization", scope),
            ("Content-Type", "application/json"),
        ],
        b"{}",
    );
    assert_eq!(
        status,
        200,
        "CreateThing {name}: {}",
        String::from_utf8_lossy(&body)
    );
}

/// The payloads moto received on `topic`, in order.
fn published(moto: &MotoServer, topic: &str) -> Vec<Value> {
    let encoded = topic.replace('/', "%2F");
    recorded_requests(&moto.endpoint)
        .into_iter()
        .filter(|(action, _)| {
            action.contains(&format!("/topics/{encoded}"))
                || action.contains(&format!("/topics/{topic}"))
        })
        .map(|(_, body)| serde_json::from_slice(&body).unwrap())
        .collect()
}

async fn run(settings: &InvocationSettings, sink: &IotCommands, event: &[u8]) -> Value {
    let step = CommandsStep {
        settings,
        sink,
        tally: CommandTally::default(),
    };
    let dead = LocalDeadLetters {
        directory: std::env::temp_dir().join(format!("iotpipe-commands-{}", std::process::id())),
    };
    let (response, _) = settings
        .process_commands(&step, event, "req", 1_645_938_300_000, &dead)
        .await
        .unwrap();
    response.to_json()
}

#[tokio::test(flavor = "multi_thread")]
async fn nightlight_commands_reach_devices_once_per_change_or_every_time() {
    let moto = MotoServer::start();
    let sdk = sdk_config(&moto.endpoint).await;
    for device in ["n-1", "n-2", "n-3"] {
        create_thing(&moto, device);
    }
    let sink = IotCommands::new(&sdk, "commands");
    start_recording(&moto.endpoint);

    // on_change: one command per change, none for the repeats.
    let on_change = settings("nightlight", "on_change", "topic");
    let answer = run(
        &on_change,
        &sink,
        &lights("n-1", &[250, 240, 260, 350, 400]),
    )
    .await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
    assert_eq!(
        published(&moto, "n-1/commands"),
        [json!({"led_on": true}), json!({"led_on": false})]
    );
    // The named shadow remembers what was sent, for the next instance.
    let memory = sink.last_commands("n-1").await.unwrap();
    assert_eq!(memory["nightlight"], json!({"led_on": false}));
    run(&on_change, &sink, &lights("n-1", &[500, 600])).await;
    assert_eq!(
        published(&moto, "n-1/commands").len(),
        2,
        "still dark: nothing new"
    );

    // always: reference 004's behaviour, one command per reading.
    let always = settings("nightlight", "always", "topic");
    run(&always, &sink, &lights("n-2", &[250, 240, 260, 350, 400])).await;
    assert_eq!(
        published(&moto, "n-2/commands"),
        [true, true, true, false, false].map(|on| json!({"led_on": on}))
    );

    // shadow: the device's desired state.
    let shadow = settings("lamp", "on_change", "shadow");
    run(&shadow, &sink, &lights("n-3", &[250, 400])).await;
    let document = IotData::new(&sdk)
        .get_thing_shadow()
        .thing_name("n-3")
        .send()
        .await
        .unwrap();
    let document: Value = serde_json::from_slice(document.payload().unwrap().as_ref()).unwrap();
    assert_eq!(
        document["state"]["desired"],
        json!({"led_on": false}),
        "{document}"
    );
    assert!(published(&moto, "n-3/commands").is_empty());
}
