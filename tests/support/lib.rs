//! Shared helpers for the end-to-end tests: real servers on loopback
//! (moto), the repository's paths, and capturing sinks.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use telemetry_core::deadletter::DeadLetter;
use telemetry_core::sink::{DeadLetterError, DeadLetterSink};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .to_path_buf()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// A `moto_server` on a free loopback port, stopped when dropped.
pub struct MotoServer {
    child: Child,
    pub endpoint: String,
}

impl MotoServer {
    /// Starts moto from the project's virtualenv (`make test` installs it;
    /// `MOTO_SERVER` may name another binary).
    pub fn start() -> MotoServer {
        let binary = std::env::var("MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|_| repo_root().join(".venv/bin/moto_server"));
        assert!(
            binary.exists(),
            "{} not found: run `make test` (it installs moto[server] into .venv) or set MOTO_SERVER",
            binary.display()
        );
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on {endpoint}");
            std::thread::sleep(Duration::from_millis(50));
        }
        MotoServer { child, endpoint }
    }

    /// Points the AWS SDK's standard environment at this server.
    pub fn export_env(&self) {
        // Tests that use moto run in their own processes (one test binary per
        // file) and set the same values, so this is not racy across tests.
        std::env::set_var("AWS_ENDPOINT_URL", &self.endpoint);
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::remove_var("AWS_PROFILE");
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps dead letters in memory; can be told to fail.
#[derive(Default)]
pub struct CapturedDeadLetters {
    pub letters: Mutex<Vec<DeadLetter>>,
    pub fail: bool,
}

#[async_trait]
impl DeadLetterSink for CapturedDeadLetters {
    async fn write(&self, letters: &[DeadLetter]) -> Result<String, DeadLetterError> {
        if self.fail {
            return Err(DeadLetterError {
                destination: "memory".into(),
                reason: "simulated outage".into(),
            });
        }
        self.letters.lock().unwrap().extend_from_slice(letters);
        Ok("memory".into())
    }
}

/// One metric value as EMF declares it, flattened for comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct EmittedMetric {
    pub device: String,
    pub metric: String,
    pub value: f64,
    pub unit: String,
    pub timestamp_ms: i64,
    pub dimensions: Vec<(String, String)>,
    pub namespace: String,
}

/// Reads EMF lines back as a CloudWatch agent would: checks the structure
/// and expands value arrays.
pub fn parse_emf(output: &[u8]) -> Vec<EmittedMetric> {
    let text = std::str::from_utf8(output).expect("EMF is UTF-8");
    let mut metrics = Vec::new();
    for line in text.lines() {
        let doc: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("EMF line is JSON ({e}): {line}"));
        let aws = &doc["_aws"];
        let timestamp_ms = aws["Timestamp"].as_i64().expect("EMF Timestamp in ms");
        let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics");
        for directive in directives {
            let namespace = directive["Namespace"].as_str().expect("Namespace").to_owned();
            let dimension_set = directive["Dimensions"][0].as_array().expect("one dimension set");
            assert!(dimension_set.len() <= 30, "EMF allows 30 dimensions");
            let definitions = directive["Metrics"].as_array().expect("Metrics");
            assert!(definitions.len() <= 100, "EMF allows 100 metrics per document");
            let dimensions: Vec<(String, String)> = dimension_set
                .iter()
                .map(|name| {
                    let name = name.as_str().unwrap();
                    (name.to_owned(), doc[name].as_str().expect("dimension value is a string").to_owned())
                })
                .collect();
            for definition in definitions {
                let name = definition["Name"].as_str().unwrap();
                let values: Vec<f64> = match &doc[name] {
                    Value::Array(values) => values.iter().map(|v| v.as_f64().unwrap()).collect(),
                    value => vec![value.as_f64().expect("metric value is a number")],
                };
                for value in values {
                    metrics.push(EmittedMetric {
                        device: doc["device"].as_str().expect("device dimension").to_owned(),
                        metric: name.to_owned(),
                        value,
                        unit: definition["Unit"].as_str().unwrap_or("None").to_owned(),
                        timestamp_ms,
                        dimensions: dimensions.iter().filter(|(n, _)| n != "device").cloned().collect(),
                        namespace: namespace.clone(),
                    });
                }
            }
        }
    }
    metrics
}
