//! Shared helpers for the end-to-end tests: real servers on loopback
//! (moto), the repository's paths, and capturing sinks.

pub mod runtime;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use telemetry_core::sink::dead_letter::DeadLetter;
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

impl MotoServer {}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.recording);
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
        let doc: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("EMF line is JSON ({e}): {line}"));
        let aws = &doc["_aws"];
        let timestamp_ms = aws["Timestamp"].as_i64().expect("EMF Timestamp in ms");
        let directives = aws["CloudWatchMetrics"]
            .as_array()
            .expect("CloudWatchMetrics");
        for directive in directives {
            let namespace = directive["Namespace"]
                .as_str()
                .expect("Namespace")
                .to_owned();
            let dimension_set = directive["Dimensions"][0]
                .as_array()
                .expect("one dimension set");
            assert!(dimension_set.len() <= 30, "EMF allows 30 dimensions");
            let definitions = directive["Metrics"].as_array().expect("Metrics");
            assert!(
                definitions.len() <= 100,
                "EMF allows 100 metrics per document"
            );
            let dimensions: Vec<(String, String)> = dimension_set
                .iter()
                .map(|name| {
                    let name = name.as_str().unwrap();
                    (
                        name.to_owned(),
                        doc[name]
                            .as_str()
                            .expect("dimension value is a string")
                            .to_owned(),
                    )
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
                        dimensions: dimensions
                            .iter()
                            .filter(|(n, _)| n != "device")
                            .cloned()
                            .collect(),
                        namespace: namespace.clone(),
                    });
                }
            }
        }
    }
    metrics
}

/// A plain HTTP/1.1 request to a loopback server; returns (status, body).
pub fn http_request(endpoint: &str, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let address = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = find(&response, b"\r\n\r\n").expect("HTTP response head");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = find(body, b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&body[..line_end]).unwrap().trim(), 16)
                .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 2 + size + 2..];
    }
    out
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

/// A canned HTTP response.
#[derive(Clone)]
pub struct Canned {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Canned {
    /// CloudWatch's `Throttling` error (query protocol).
    pub fn cloudwatch_throttling() -> Canned {
        Canned {
            status: 400,
            content_type: "text/xml",
            body: "<ErrorResponse xmlns=\"http://monitoring.amazonaws.com/doc/2010-08-01/\"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>throttled</RequestId></ErrorResponse>".into(),
        }
    }
}

/// A loopback HTTP proxy in front of moto: answers the first requests with
/// canned responses (the last one repeats if `repeat_last`), forwards the
/// rest, and keeps every request body it saw.
pub struct ThrottlingProxy {
    pub endpoint: String,
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    pub bodies: std::sync::Arc<Mutex<Vec<Vec<u8>>>>,
}

impl ThrottlingProxy {
    /// Throttles the first `throttle_first` CloudWatch requests.
    pub fn start(upstream: &str, throttle_first: usize) -> ThrottlingProxy {
        let script = vec![Canned::cloudwatch_throttling(); throttle_first.min(1000)];
        Self::scripted(upstream, script, throttle_first == usize::MAX)
    }

    pub fn scripted(upstream: &str, script: Vec<Canned>, repeat_last: bool) -> ThrottlingProxy {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let counter = requests.clone();
        let seen_bodies = bodies.clone();
        let upstream = upstream.to_owned();
        let script = Arc::new(script);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let counter = counter.clone();
                let upstream = upstream.clone();
                let script = script.clone();
                let seen_bodies = seen_bodies.clone();
                std::thread::spawn(move || {
                    while let Some((head, body)) = read_request(&mut stream) {
                        let seen = counter.fetch_add(1, Ordering::SeqCst);
                        seen_bodies.lock().unwrap().push(body.clone());
                        let canned = script
                            .get(seen)
                            .or(if repeat_last { script.last() } else { None })
                            .cloned();
                        let response = match canned {
                            Some(canned) => format!(
                                "HTTP/1.1 {} Canned\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{}",
                                canned.status,
                                canned.content_type,
                                canned.body.len(),
                                canned.body
                            )
                            .into_bytes(),
                            None => forward(&upstream, &head, &body),
                        };
                        use std::io::Write;
                        if stream.write_all(&response).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        ThrottlingProxy {
            endpoint,
            requests,
            bodies,
        }
    }
}

pub(crate) fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use std::io::Read;
    let mut buffer = Vec::new();
    let mut byte = [0u8; 1];
    while find(&buffer, b"\r\n\r\n").is_none() {
        match stream.read(&mut byte) {
            Ok(1) => buffer.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buffer).to_string();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0usize);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// Sends one request upstream with `Connection: close` and returns the
/// response re-framed with a Content-Length, so the client may keep its
/// connection to the proxy alive.
fn forward(upstream: &str, head: &str, body: &[u8]) -> Vec<u8> {
    let lines: Vec<&str> = head
        .lines()
        .filter(|line| !line.is_empty() && !line.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    let request_head = format!("{}\r\nConnection: close\r\n\r\n", lines.join("\r\n"));
    use std::io::{Read, Write};
    let mut upstream_stream =
        std::net::TcpStream::connect(upstream.trim_start_matches("http://")).unwrap();
    upstream_stream.write_all(request_head.as_bytes()).unwrap();
    upstream_stream.write_all(body).unwrap();
    let mut response = Vec::new();
    upstream_stream.read_to_end(&mut response).unwrap();
    let split = find(&response, b"\r\n\r\n").unwrap();
    let response_head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut response_body = response[split + 4..].to_vec();
    if response_head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        response_body = dechunk(&response_body);
    }
    let kept: Vec<&str> = response_head
        .lines()
        .filter(|line| {
            let lower = line.to_ascii_lowercase();
            !lower.starts_with("content-length:")
                && !lower.starts_with("transfer-encoding:")
                && !lower.starts_with("connection:")
        })
        .collect();
    let mut out = format!(
        "{}\r\nContent-Length: {}\r\n\r\n",
        kept.join("\r\n"),
        response_body.len()
    )
    .into_bytes();
    out.extend_from_slice(&response_body);
    out
}

/// A function binary built by `cargo build` (the Makefile builds them
/// before the tests run).
pub fn function_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let binary = target.join("debug").join(name);
    assert!(
        binary.exists(),
        "{} not built: run `make test` or `cargo build -p {name}` first",
        binary.display()
    );
    binary
}

/// Runs SQL with DuckDB (PyPI `duckdb` in the project's virtualenv: an
/// independent Parquet reader) and returns the rows as JSON objects.
pub fn duckdb_query(sql: &str) -> Vec<Value> {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run `make test` (it installs duckdb)",
        python.display()
    );
    let script = r#"
import datetime, decimal, json, sys, duckdb
def plain(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return int(v.timestamp() * 1000)
    if isinstance(v, decimal.Decimal):
        return float(v)
    return v
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
cur = con.execute(sys.argv[1])
names = [d[0] for d in cur.description]
print(json.dumps([{n: plain(v) for n, v in zip(names, row)} for row in cur.fetchall()]))
"#;
    let output = Command::new(python)
        .args(["-c", script, sql])
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "DuckDB failed on {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON rows")
}

/// A PostgreSQL server of its own: `initdb` in a temporary directory,
/// started with `pg_ctl` on a free loopback port (trust authentication),
/// stopped and removed when dropped.
pub struct PostgresServer {
    pub url: String,
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
}

fn postgres_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL not installed: run `make test` (it installs Debian's postgresql)")
}

impl PostgresServer {
    pub fn start() -> PostgresServer {
        Self::start_with(None)
    }

    /// As [`PostgresServer::start`], refusing connections without TLS
    /// (`hostssl` only), with the server certificate of `certificates`.
    pub fn start_tls_only(certificates: &TestCertificates) -> PostgresServer {
        Self::start_with(Some(certificates))
    }

    fn start_with(tls: Option<&TestCertificates>) -> PostgresServer {
        let bin = postgres_bin();
        static NEXT_CLUSTER: std::sync::atomic::AtomicUsize =
            std::sync::atomic::AtomicUsize::new(0);
        let cluster_number = NEXT_CLUSTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data = std::env::temp_dir().join(format!(
            "iotpipe-pg-{}-{cluster_number}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data).unwrap();
        // The server's certificate and key, private to its account.
        for (from, name) in tls.iter().flat_map(|c| {
            [
                (&c.server_certificate, "server.pem"),
                (&c.server_key, "server.key"),
            ]
        }) {
            let to = data.join(name);
            std::fs::copy(from, &to).unwrap();
            Command::new("chmod").arg("600").arg(&to).status().unwrap();
        }
        // initdb refuses to run as root: use the postgres account then.
        let as_postgres = running_as_root();
        if as_postgres {
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&data)
                .status()
                .unwrap();
        }
        let run = |program: &str, args: &[&str]| -> Result<(), String> {
            let mut command = if as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join(program));
                c
            } else {
                Command::new(bin.join(program))
            };
            let output = command.args(args).output().expect("PostgreSQL tool runs");
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{program} failed: {}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ))
            }
        };
        let cluster = data.join("cluster");
        let cluster_text = cluster.display().to_string();
        run(
            "initdb",
            &[
                "-D",
                &cluster_text,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )
        .unwrap_or_else(|error| panic!("{error}"));
        let mut tls_options = String::new();
        if tls.is_some() {
            std::fs::write(
                cluster.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n",
            )
            .unwrap();
            tls_options = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                data.join("server.pem").display(),
                data.join("server.key").display()
            );
        }
        let log = data.join("server.log").display().to_string();
        // PostgreSQL cannot be told to pick its own port, so a free port can
        // be taken by another test between probe and bind: try a few.
        let mut attempts = 0;
        let port = loop {
            let port = free_port();
            let options = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off{tls_options}",
                data.display()
            );
            let started = run(
                "pg_ctl",
                &[
                    "-D",
                    &cluster_text,
                    "-o",
                    &options,
                    "-l",
                    &log,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            );
            attempts += 1;
            match started {
                Ok(()) => break port,
                Err(error) if attempts >= 3 => panic!(
                    "{error}\nserver log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
                Err(_) => continue,
            }
        };
        PostgresServer {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            bin,
            data,
            as_postgres,
        }
    }

    /// Runs SQL with psql and returns its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                self.url.as_str(),
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

/// A test CA, a server certificate it signed for `localhost` only (not
/// `127.0.0.1`), and a second CA that signed nothing, made by `openssl`.
pub struct TestCertificates {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub server_certificate: PathBuf,
    pub server_key: PathBuf,
}

impl TestCertificates {
    pub fn generate(directory: &Path) -> TestCertificates {
        std::fs::create_dir_all(directory).unwrap();
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(directory)
                .output()
                .expect("openssl runs (Debian's openssl package)");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let p256 = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for (name, subject) in [
            ("ca", "/CN=iotpipe test CA"),
            ("other-ca", "/CN=someone else"),
        ] {
            let (key, certificate) = (format!("{name}.key"), format!("{name}.pem"));
            let mut args = vec!["req", "-x509", "-days", "2", "-subj", subject];
            args.extend(p256);
            args.extend(["-keyout", &key, "-out", &certificate]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            openssl(&args);
        }
        let mut request = vec!["req", "-subj", "/CN=localhost", "-keyout", "server.key"];
        request.extend(p256);
        request.extend(["-out", "server.csr"]);
        openssl(&request);
        std::fs::write(
            directory.join("server.ext"),
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        TestCertificates {
            ca: directory.join("ca.pem"),
            other_ca: directory.join("other-ca.pem"),
            server_certificate: directory.join("server.pem"),
            server_key: directory.join("server.key"),
        }
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let cluster = self.data.join("cluster").display().to_string();
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"])
                .arg(self.bin.join("pg_ctl"));
            c
        } else {
            Command::new(self.bin.join("pg_ctl"))
        };
        let _ = command
            .args(["-D", &cluster, "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
