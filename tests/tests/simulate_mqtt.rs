//! `iotpipe simulate` against a real mosquitto: every message of every
//! fleet reaches an independent subscriber (`mosquitto_sub`) in the
//! references' byte forms; QoS 1 survives a broker restart that loses every
//! session; the night light switches its LED on a command; devices connect
//! over mutually authenticated TLS with their own certificate.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{
    function_binary, mosquitto_pub, scratch_dir, MosquittoServer, Subscriber, TcpGate,
    TestCertificates,
};

fn simulate(args: &[&str]) -> Output {
    Command::new(function_binary("iotpipe"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("iotpipe runs")
}

/// Runs `iotpipe simulate` expecting it to fail saying `expected`.
fn assert_refused(args: &[&str], expected: &str) {
    let refused = simulate(args);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(text(&refused).contains(expected), "{}", text(&refused));
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Messages per topic.
fn by_topic(messages: &[(String, Vec<u8>)]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut topics: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for (topic, payload) in messages {
        topics
            .entry(topic.clone())
            .or_default()
            .push(payload.clone());
    }
    topics
}

#[test]
fn every_fleet_publishes_the_references_forms_and_nothing_is_missing() {
    let scratch = scratch_dir("simulate-fleets");
    let broker = MosquittoServer::start(&scratch.join("broker"));
    let subscriber = Subscriber::start(&broker, "checker", &scratch.join("received.txt"));
    let fleet_file = scratch.join("greenhouse.toml");
    std::fs::write(
        &fleet_file,
        "name = \"greenhouse\"\n[[field]]\nname = \"humidity\"\nrandom_walk = { start = 60.0, step = 1.0, min = 0.0, max = 100.0, decimals = 1 }\n[[field]]\nname = \"n\"\ncounter = { start = 1 }\n",
    )
    .unwrap();
    let url = broker.url();
    let runs: [(&str, &str, &[&str]); 5] = [
        ("gcp-iot-lab", "20", &[]),
        ("host-status", "8", &["--devices", "2"]),
        ("co2-meter", "10", &["--qos", "0"]),
        ("nightlight", "10", &["--topic-prefix", ""]),
        (fleet_file.to_str().unwrap(), "15", &["--devices", "3"]),
    ];
    for (fleet, messages, extra) in runs {
        let mut args = vec![
            "--fleet",
            fleet,
            "--messages",
            messages,
            "--rate",
            "200",
            "--broker",
            &url,
        ];
        args.extend_from_slice(extra);
        let run = simulate(&args);
        assert!(run.status.success(), "{fleet}: {}", text(&run));
        assert!(text(&run).contains("failed 0"), "{}", text(&run));
    }
    // 2x20 + 2x8 + 10 + 10 + 3x15
    let messages = subscriber.wait_for(121, Duration::from_secs(20));
    let topics = by_topic(&messages);
    let count = |topic: &str| topics.get(topic).map_or(0, Vec::len);

    for device in ["temp-sensor-buenos-aires", "temp-sensor-istanbul"] {
        let topic = format!("devices/{device}/telemetry");
        assert_eq!(count(&topic), 20, "{topic}: {:?}", topics.keys());
        for payload in &topics[&topic] {
            let text = String::from_utf8(payload.clone()).unwrap();
            assert!(text.starts_with("{\n    \"timestamp\": "), "{text}");
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["device"], device);
            assert!(value["temperature"].is_f64());
        }
    }
    for device in ["host-status-1", "host-status-2"] {
        let topic = format!("devices/{device}/status");
        assert_eq!(count(&topic), 8, "{topic}");
        for payload in &topics[&topic] {
            let text = String::from_utf8(payload.clone()).unwrap();
            assert!(text.starts_with("{\n\"name\": "), "{text}");
            let value: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(value["name"]
                .as_str()
                .unwrap()
                .ends_with(&format!("({device})")));
            assert!(value["value"].as_str().unwrap().ends_with(' '), "{text}");
        }
    }
    assert_eq!(count("devices/co2-meter-1/text"), 10);
    for payload in &topics["devices/co2-meter-1/text"] {
        let line = String::from_utf8(payload.clone()).unwrap();
        let (date, ppm) = line.split_once('|').unwrap();
        assert!(ppm.parse::<u32>().is_ok(), "{line}");
        let day = date.split(' ').next().unwrap();
        assert!(
            day.split('-').skip(1).all(|part| !part.starts_with('0')),
            "unpadded: {line}"
        );
    }
    assert_eq!(count("nightlight-1/telemetry"), 10);
    for payload in &topics["nightlight-1/telemetry"] {
        let value: serde_json::Value = serde_json::from_slice(payload).unwrap();
        assert!(
            value["light"].is_u64() && value["led"].is_boolean(),
            "{value}"
        );
    }
    for device in 1..=3 {
        let topic = format!("devices/greenhouse-{device}/telemetry");
        let counters: Vec<u64> = topics[&topic]
            .iter()
            .map(|payload| {
                serde_json::from_slice::<serde_json::Value>(payload).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            counters,
            (1..=15).collect::<Vec<u64>>(),
            "{topic}: all, in order"
        );
    }
    assert_eq!(
        messages.len(),
        121,
        "nothing more than sent: {:?}",
        topics.keys()
    );
}

#[test]
fn qos_1_loses_nothing_when_the_broker_restarts_and_forgets_every_session() {
    let scratch = scratch_dir("simulate-restart");
    let mut broker = MosquittoServer::start(&scratch.join("broker"));
    // The devices reach the broker through a gate, so the test decides when
    // they reconnect: after the new broker's subscriber is in place.
    let gate = TcpGate::start(broker.port);
    let subscriber = Subscriber::start(&broker, "checker", &scratch.join("before.txt"));
    let mut run = Command::new(function_binary("iotpipe"))
        .args([
            "simulate",
            "--fleet",
            "gcp-iot-lab",
            "--messages",
            "400",
            "--rate",
            "100",
        ])
        .args(["--broker", &gate.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let before = subscriber.wait_for(150, Duration::from_secs(20));
    assert!(
        before.len() >= 150,
        "{} messages before the restart",
        before.len()
    );

    gate.cut();
    broker.restart(); // no persistence: subscriptions and sessions are gone
    subscriber.stop();
    let after = Subscriber::start(&broker, "checker-2", &scratch.join("after.txt"));
    std::thread::sleep(Duration::from_millis(300));
    gate.open();

    let output = wait(&mut run, Duration::from_secs(60));
    assert!(output.status.success(), "{}", text(&output));
    let said = text(&output);
    assert!(
        said.contains("sent 800, acknowledged 800, failed 0"),
        "{said}"
    );
    assert!(said.contains("reconnected"), "{said}");

    let first = Subscriber::messages_in(&scratch.join("before.txt"));
    let second = after.wait_for(800 - first.len(), Duration::from_secs(20));
    let mut received: Vec<Vec<u8>> = first
        .into_iter()
        .chain(second)
        .map(|(_, payload)| payload)
        .collect();
    received.sort();
    received.dedup(); // at least once: a resent message may arrive twice
    assert_eq!(received.len(), 800, "every message reached a subscriber");
}

/// Waits for a child process, killing it after `timeout`.
fn wait(child: &mut Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    Output {
        status: child.wait().unwrap(),
        stdout,
        stderr,
    }
}

#[test]
fn the_night_light_switches_its_led_on_a_command() {
    let scratch = scratch_dir("simulate-nightlight");
    let broker = MosquittoServer::start(&scratch.join("broker"));
    let subscriber = Subscriber::start(&broker, "checker", &scratch.join("received.txt"));
    let mut device = Command::new(function_binary("iotpipe"))
        .args([
            "simulate",
            "--fleet",
            "nightlight",
            "--messages",
            "100",
            "--rate",
            "10",
        ])
        .args(["--broker", &broker.url()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(device.stdout.take().unwrap()).lines();
    let telemetry = "devices/nightlight-1/telemetry";
    let leds = |messages: &[(String, Vec<u8>)]| -> Vec<bool> {
        messages
            .iter()
            .filter(|(topic, _)| topic == telemetry)
            .map(|(_, payload)| {
                serde_json::from_slice::<serde_json::Value>(payload).unwrap()["led"]
                    .as_bool()
                    .unwrap()
            })
            .collect()
    };
    let before = subscriber.wait_for(3, Duration::from_secs(10));
    assert!(leds(&before).iter().all(|on| !on), "the LED starts off");

    mosquitto_pub(
        &broker,
        "devices/nightlight-1/commands",
        r#"{"led_on": true}"#,
    );
    let switched = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("LED"))
        .expect("the device reports the command");
    assert_eq!(switched, "nightlight-1: LED on");
    let seen = subscriber.messages().len();
    let later = subscriber.wait_for(seen + 3, Duration::from_secs(10));
    assert_eq!(
        leds(&later).last(),
        Some(&true),
        "its telemetry reports the LED on"
    );

    mosquitto_pub(
        &broker,
        "devices/nightlight-1/commands",
        r#"{"led_on": false}"#,
    );
    let switched = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("LED"))
        .unwrap();
    assert_eq!(switched, "nightlight-1: LED off");
    let _ = device.kill();
    let _ = device.wait();
}

#[test]
fn devices_connect_over_tls_with_their_own_certificates() {
    let scratch = scratch_dir("simulate-tls");
    let certificates = TestCertificates::generate(&scratch.join("certificates"));
    let broker = MosquittoServer::start_tls(&scratch.join("broker"), &certificates);
    // A key directory as `iotpipe provision` writes it, with certificates
    // the broker's CA signed.
    let keys = scratch.join("keys");
    for device in ["pi-1", "pi-2"] {
        let (certificate, key) = certificates.client(device);
        let directory = keys.join(device);
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::copy(&certificate, directory.join("certificate.pem.crt")).unwrap();
        std::fs::copy(&key, directory.join("private.pem.key")).unwrap();
        std::fs::write(
            directory.join("device.toml"),
            format!(
                "thing_name = \"{device}\"\nclient_id = \"{device}\"\nfleet = \"pis\"\nbroker = \"mqtts://localhost:{}\"\ntopic_prefix = \"devices\"\ncertificate_id = \"test\"\ncertificate_arn = \"arn:aws:iot:us-east-1:123456789012:cert/test\"\ncertificate = \"certificate.pem.crt\"\nprivate_key = \"private.pem.key\"\n",
                broker.port
            ),
        )
        .unwrap();
    }
    let keys_arg = keys.to_str().unwrap();
    let ca = certificates.ca.to_str().unwrap();
    let run = simulate(&[
        "--fleet",
        "host-status",
        "--keys",
        keys_arg,
        "--ca",
        ca,
        "--messages",
        "5",
        "--rate",
        "0",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    assert!(
        text(&run).contains("2 device(s)")
            && text(&run).contains("sent 10, acknowledged 10, failed 0"),
        "{}",
        text(&run)
    );
    assert!(text(&run).contains("mqtts://localhost:"), "{}", text(&run));

    // A broker whose certificate no trusted CA signed is refused.
    let other = certificates.other_ca.to_str().unwrap();
    assert_refused(
        &[
            "--fleet",
            "host-status",
            "--keys",
            keys_arg,
            "--ca",
            other,
            "--messages",
            "1",
            "--patience",
            "2",
        ],
        "not acknowledged",
    );
}

#[test]
fn devices_batch_readings_into_one_message() {
    let scratch = scratch_dir("simulate-batch");
    let broker = MosquittoServer::start(&scratch.join("broker"));
    let subscriber = Subscriber::start(&broker, "checker", &scratch.join("received.txt"));
    let url = broker.url();
    // Objects (the default form), then the same again as bare JSON arrays.
    for form in ["object", "array"] {
        let run = simulate(&[
            "--fleet",
            "gcp-iot-lab",
            "--messages",
            "3",
            "--batch",
            "4",
            "--batch-form",
            form,
            "--rate",
            "0",
            "--broker",
            &url,
        ]);
        assert!(run.status.success(), "{}", text(&run));
        assert!(
            text(&run).contains("3 message(s) of 4 readings"),
            "{}",
            text(&run)
        );
    }
    let messages = subscriber.wait_for(12, Duration::from_secs(10));
    assert_eq!(messages.len(), 12, "3 messages per sensor, twice");
    for (index, (topic, payload)) in messages.iter().enumerate() {
        let payload: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let readings = match &payload {
            serde_json::Value::Array(readings) => readings.clone(),
            object => object["readings"].as_array().cloned().unwrap_or_default(),
        };
        // The first run's 6 messages are objects, the second's arrays.
        assert_eq!(payload.is_array(), index >= 6, "{topic} {payload}");
        assert_eq!(readings.len(), 4, "{topic}");
        let device = topic.split('/').nth(1).unwrap();
        for reading in &readings {
            assert_eq!(reading["device"], device);
            assert!(
                reading["temperature"].is_f64() && reading["timestamp"].is_i64(),
                "{reading}"
            );
        }
    }
    assert_refused(
        &["--fleet", "co2-meter", "--batch", "2", "--broker", &url],
        "--batch 2: co2-meter sends text lines",
    );
}

#[test]
fn basic_ingest_puts_the_rule_in_front_of_every_topic() {
    let scratch = scratch_dir("simulate-basic-ingest");
    let broker = MosquittoServer::start(&scratch.join("broker"));
    let subscriber = Subscriber::start_on(
        &broker,
        "checker",
        &scratch.join("received.txt"),
        "$aws/rules/#",
    );
    let url = broker.url();
    let run = simulate(&[
        "--fleet",
        "host-status",
        "--messages",
        "3",
        "--rate",
        "0",
        "--basic-ingest",
        "TelemetryRule",
        "--broker",
        &url,
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let messages = subscriber.wait_for(3, Duration::from_secs(10));
    let topics: Vec<&str> = messages.iter().map(|(topic, _)| topic.as_str()).collect();
    assert_eq!(
        topics,
        ["$aws/rules/TelemetryRule/devices/host-status-1/status"; 3]
    );
    // Without a rule: the template's rule for each topic, by its RuleName.
    for (received, (fleet, prefix, expected)) in [
        (
            "host-status",
            None,
            "$aws/rules/iotpipe_status/devices/host-status-1/status",
        ),
        (
            "co2-meter",
            Some("plant_7"),
            "$aws/rules/plant_7_text/devices/co2-meter-1/text",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut args = vec!["--fleet", fleet, "--messages", "1", "--rate", "0"];
        args.extend(["--basic-ingest", "--broker", &url]);
        if let Some(prefix) = prefix {
            args.extend(["--rule-name-prefix", prefix]);
        }
        let run = simulate(&args);
        assert!(run.status.success(), "{}", text(&run));
        let messages = subscriber.wait_for(4 + received, Duration::from_secs(10));
        assert_eq!(messages.len(), 4 + received);
        assert_eq!(messages.last().unwrap().0, expected);
    }
    assert_refused(
        &[
            "--fleet",
            "host-status",
            "--basic-ingest",
            "my-rule",
            "--broker",
            &url,
        ],
        "--basic-ingest \"my-rule\"",
    );
}
