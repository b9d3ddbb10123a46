//! moto on loopback: the server itself, an SDK configuration pointing at it,
//! and its request recorder (what the SDK actually sent).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::http::http_request;
use crate::repo_root;

static NEXT_RECORDING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A `moto_server` on a free loopback port, stopped when dropped.
pub struct MotoServer {
    child: Child,
    recording: PathBuf,
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
        // Port 0: moto binds a port itself and prints it. Picking a "free"
        // port first races with other tests' listeners (a readiness probe can
        // then reach someone else's server).
        // Its own recording file: moto appends to `./moto_recording` by
        // default, across servers and runs.
        let recording = std::env::temp_dir().join(format!(
            "iotpipe-moto-recording-{}-{}",
            std::process::id(),
            NEXT_RECORDING.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&recording);
        let mut child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .env("MOTO_RECORDER_FILEPATH", &recording)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (port_sender, port_receiver) = std::sync::mpsc::channel();
        // Reads the announced port, then keeps draining moto's request log
        // so a full pipe never blocks the server.
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut port_sender = Some(port_sender);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line
                    .split("Running on http://127.0.0.1:")
                    .nth(1)
                    .and_then(|rest| rest.trim().parse::<u16>().ok())
                {
                    if let Some(sender) = port_sender.take() {
                        let _ = sender.send(port);
                    }
                }
            }
        });
        let port = port_receiver
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{} did not announce its port", binary.display()));
        // Werkzeug announces the port once the socket listens: no probing.
        let endpoint = format!("http://127.0.0.1:{port}");
        MotoServer {
            child,
            recording,
            endpoint,
        }
    }

    /// The standard AWS environment pointing at this server, for child
    /// processes (the function binary, `cargo lambda watch`).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.recording);
    }
}

/// An SDK configuration for `endpoint` with moto's test credentials. Tests
/// in one binary share a process, so they pass the endpoint explicitly
/// rather than through `AWS_ENDPOINT_URL`.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(telemetry_aws::https_client())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await
}

/// The actions of the requests moto recorded since `start_recording`.
pub fn recorded_actions(endpoint: &str) -> Vec<String> {
    recorded_requests(endpoint)
        .into_iter()
        .map(|(action, _)| action)
        .collect()
}

/// The requests moto recorded since `start_recording`, as (action, body as
/// sent before the SDK's gzip).
pub fn recorded_requests(endpoint: &str) -> Vec<(String, Vec<u8>)> {
    use base64::Engine as _;
    let (_, body) = http_request(
        endpoint,
        "GET",
        "/moto-api/recorder/download-recording",
        b"",
    );
    String::from_utf8_lossy(&body)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .map(|entry| {
            let raw = entry["body"].as_str().unwrap_or_default();
            let mut bytes = if entry["body_encoded"].as_bool() == Some(true) {
                base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .unwrap_or_default()
            } else {
                raw.as_bytes().to_vec()
            };
            // The SDK gzips large PutMetricData bodies (request compression).
            if bytes.starts_with(&[0x1f, 0x8b]) {
                use std::io::Read;
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_end(&mut plain)
                    .unwrap();
                bytes = plain;
            }
            let action = String::from_utf8_lossy(&bytes)
                .split('&')
                .find_map(|pair| pair.strip_prefix("Action="))
                .map(str::to_owned)
                .unwrap_or_else(|| format!("{} {}", entry["method"], entry["url"]));
            (action, bytes)
        })
        .collect()
}

pub fn start_recording(endpoint: &str) {
    http_request(endpoint, "POST", "/moto-api/recorder/reset-recording", b"");
    let (status, _) = http_request(endpoint, "POST", "/moto-api/recorder/start-recording", b"");
    assert_eq!(status, 200, "moto recorder starts");
}
