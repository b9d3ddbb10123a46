//! A function binary (the one `cargo lambda build` packages) behind a
//! Lambda Runtime API of our own: one process per function, reused across
//! invocations as Lambda reuses a warm instance. Its stdout and stderr go to
//! `<out>/logs/<binary>.log`; its EMF lines are also read back into per
//! device metric summaries for the report.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Bytes;
use hyper::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::{oneshot, Notify};

use super::http::{serve, HttpRequest, HttpResponse};

type Answer = Result<Bytes, Bytes>;

#[derive(Default)]
struct RuntimeState {
    queue: Mutex<VecDeque<(String, Bytes)>>,
    ready: Notify,
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_error: Mutex<Option<String>>,
}

/// Per device and metric: how many values, their minimum, maximum, last.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MetricSummary {
    pub count: u64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
}

pub type Metrics = BTreeMap<String, BTreeMap<String, MetricSummary>>;

pub struct LocalFunction {
    pub binary: String,
    state: Arc<RuntimeState>,
    /// Its instances: processes polling the same Runtime API, so
    /// invocations run side by side as Lambda's concurrency runs them.
    children: Mutex<Vec<Child>>,
    timeout: Duration,
    log: PathBuf,
    metrics: Arc<Mutex<Metrics>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("{binary} not found in {directory}: build the functions first (`cargo build --workspace --bins`, which `make run` does) or point --functions at them")]
    Missing { binary: String, directory: PathBuf },
    #[error("{binary} did not start: {reason}; its log: {log}")]
    Start {
        binary: String,
        reason: String,
        log: PathBuf,
    },
}

impl LocalFunction {
    /// Starts `instances` processes of `binary` from `directory` with
    /// `environment` on one Runtime API of their own; fails if one exits or
    /// reports an init error at once.
    pub async fn start(
        binary: &str,
        directory: &Path,
        environment: &BTreeMap<String, String>,
        timeout: Duration,
        logs: &Path,
        instances: usize,
    ) -> Result<LocalFunction, FunctionError> {
        let path = directory.join(binary);
        if !path.is_file() {
            return Err(FunctionError::Missing {
                binary: binary.to_owned(),
                directory: directory.to_owned(),
            });
        }
        let log = logs.join(format!("{binary}.log"));
        let start_error = |reason: String| FunctionError::Start {
            binary: binary.to_owned(),
            reason,
            log: log.clone(),
        };
        let state = Arc::new(RuntimeState::default());
        let address = {
            let state = state.clone();
            let name = binary.to_owned();
            serve(0, move |request| {
                runtime_api(state.clone(), name.clone(), timeout, request)
            })
            .await
            .map_err(|error| start_error(format!("no port for its Runtime API: {error}")))?
        };
        let log_file = std::fs::File::create(&log)
            .map_err(|error| start_error(format!("{}: {error}", log.display())))?;
        let metrics: Arc<Mutex<Metrics>> = Arc::default();
        let mut children = Vec::with_capacity(instances.max(1));
        for _ in 0..instances.max(1) {
            let mut command = Command::new(&path);
            // Its own process group: Ctrl-C in the terminal stops `iotpipe
            // run`, which then lets the functions finish what was sent.
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            let clone_log = || {
                log_file
                    .try_clone()
                    .map_err(|error| start_error(error.to_string()))
            };
            let mut child = command
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
                .env("AWS_LAMBDA_FUNCTION_NAME", binary)
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
                .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
                .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
                .envs(environment)
                .stdout(Stdio::piped())
                .stderr(clone_log()?)
                .spawn()
                .map_err(|error| start_error(error.to_string()))?;
            let stdout = child.stdout.take().expect("piped stdout");
            let (collected, mut log_file) = (metrics.clone(), clone_log()?);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = writeln!(log_file, "{line}");
                    if line.starts_with("{\"_aws\"") {
                        collect_emf(&line, &mut collected.lock().expect("no panic while held"));
                    }
                }
            });
            children.push(child);
        }
        let function = LocalFunction {
            binary: binary.to_owned(),
            state,
            children: Mutex::new(children),
            timeout,
            log: log.clone(),
            metrics,
        };
        // A function that cannot read its configuration says so at once.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Some(reason) = function.failure() {
            return Err(start_error(reason));
        }
        Ok(function)
    }

    /// Why the process is not running, if it is not.
    fn failure(&self) -> Option<String> {
        if let Some(error) = self
            .state
            .init_error
            .lock()
            .expect("no panic while held")
            .clone()
        {
            return Some(format!("init error {error}"));
        }
        let mut children = self.children.lock().expect("no panic while held");
        children
            .iter_mut()
            .find_map(|child| match child.try_wait() {
                Ok(Some(status)) => Some(format!("exited ({status})")),
                _ => None,
            })
    }

    /// One invocation: the function's answer, or its error document.
    pub async fn invoke(&self, request_id: &str, event: Vec<u8>) -> Result<Value, String> {
        if let Some(reason) = self.failure() {
            return Err(format!(
                "{} is not running: {reason}; see {}",
                self.binary,
                self.log.display()
            ));
        }
        let (sender, receiver) = oneshot::channel();
        self.state
            .waiting
            .lock()
            .expect("no panic while held")
            .insert(request_id.to_owned(), sender);
        self.state
            .queue
            .lock()
            .expect("no panic while held")
            .push_back((request_id.to_owned(), Bytes::from(event)));
        self.state.ready.notify_one();
        let answer = tokio::time::timeout(self.timeout + Duration::from_secs(5), receiver).await;
        let answer = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => {
                return Err(format!(
                    "{}: the Runtime API dropped the invocation",
                    self.binary
                ))
            }
            Err(_) => {
                self.state
                    .waiting
                    .lock()
                    .expect("no panic while held")
                    .remove(request_id);
                return Err(format!(
                    "{}: timed out after {:?}; see {}",
                    self.binary,
                    self.timeout,
                    self.log.display()
                ));
            }
        };
        match answer {
            Ok(body) => serde_json::from_slice(&body)
                .or_else(|_| Ok(Value::String(String::from_utf8_lossy(&body).into_owned()))),
            Err(body) => Err(String::from_utf8_lossy(&body).into_owned()),
        }
    }

    pub fn metrics(&self) -> Metrics {
        self.metrics.lock().expect("no panic while held").clone()
    }

    pub fn stop(&self) {
        for child in self
            .children
            .lock()
            .expect("no panic while held")
            .iter_mut()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LocalFunction {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn runtime_api(
    state: Arc<RuntimeState>,
    name: String,
    timeout: Duration,
    request: HttpRequest,
) -> HttpResponse {
    const PREFIX: &str = "/2018-06-01/runtime/";
    let Some(path) = request.path.strip_prefix(PREFIX) else {
        return HttpResponse::json(StatusCode::NOT_FOUND, "{}");
    };
    match (&request.method, path) {
        (&Method::GET, "invocation/next") => loop {
            let notified = state.ready.notified();
            let next = state.queue.lock().expect("no panic while held").pop_front();
            if let Some((id, event)) = next {
                let deadline = chrono::Utc::now().timestamp_millis() + timeout.as_millis() as i64;
                let mut response = HttpResponse::json(StatusCode::OK, event);
                response.headers.extend([
                    ("lambda-runtime-aws-request-id", id),
                    ("lambda-runtime-deadline-ms", deadline.to_string()),
                    (
                        "lambda-runtime-invoked-function-arn",
                        format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
                    ),
                    (
                        "lambda-runtime-trace-id",
                        "Root=1-00000000-000000000000000000000000".into(),
                    ),
                ]);
                return response;
            }
            notified.await;
        },
        (&Method::POST, "init/error") => {
            *state.init_error.lock().expect("no panic while held") =
                Some(String::from_utf8_lossy(&request.body).into_owned());
            HttpResponse::json(StatusCode::ACCEPTED, "{}")
        }
        (&Method::POST, rest) => {
            let (id, outcome) = match rest
                .strip_prefix("invocation/")
                .and_then(|r| r.rsplit_once('/'))
            {
                Some((id, "response")) => (id, Ok(request.body)),
                Some((id, "error")) => (id, Err(request.body)),
                _ => return HttpResponse::json(StatusCode::NOT_FOUND, "{}"),
            };
            if let Some(waiting) = state
                .waiting
                .lock()
                .expect("no panic while held")
                .remove(id)
            {
                let _ = waiting.send(outcome);
            }
            HttpResponse::json(StatusCode::ACCEPTED, "{}")
        }
        _ => HttpResponse::json(StatusCode::NOT_FOUND, "{}"),
    }
}

/// Adds one EMF line's values to the per-device summaries.
fn collect_emf(line: &str, metrics: &mut Metrics) {
    let Ok(document) = serde_json::from_str::<Value>(line) else {
        return;
    };
    let Some(device) = document.get("device").and_then(Value::as_str) else {
        return; // the function's own counts, not a device's
    };
    let names = document["_aws"]["CloudWatchMetrics"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|directive| directive["Metrics"].as_array().into_iter().flatten())
        .filter_map(|metric| metric["Name"].as_str());
    for name in names {
        let values: Vec<f64> = match &document[name] {
            Value::Array(values) => values.iter().filter_map(Value::as_f64).collect(),
            value => value.as_f64().into_iter().collect(),
        };
        for value in values {
            let summary = metrics
                .entry(device.to_owned())
                .or_default()
                .entry(name.to_owned())
                .or_insert(MetricSummary {
                    count: 0,
                    min: f64::INFINITY,
                    max: f64::NEG_INFINITY,
                    last: value,
                });
            summary.count += 1;
            summary.min = summary.min.min(value);
            summary.max = summary.max.max(value);
            summary.last = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_lines_become_per_device_summaries() {
        let mut metrics = Metrics::new();
        for line in [
            r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"IoT/Telemetry","Dimensions":[["device"]],"Metrics":[{"Name":"light"},{"Name":"led"}]}]},"device":"n-1","light":250.0,"led":0.0}"#,
            r#"{"_aws":{"Timestamp":2,"CloudWatchMetrics":[{"Namespace":"IoT/Telemetry","Dimensions":[["device"]],"Metrics":[{"Name":"light"}]}]},"device":"n-1","light":[400.0,100.0]}"#,
            r#"{"_aws":{"Timestamp":2,"CloudWatchMetrics":[{"Namespace":"IoT/Telemetry/Pipeline","Dimensions":[["Function"]],"Metrics":[{"Name":"Messages"}]}]},"Function":"f","Messages":3}"#,
        ] {
            collect_emf(line, &mut metrics);
        }
        let light = &metrics["n-1"]["light"];
        assert_eq!(
            (light.count, light.min, light.max, light.last),
            (3, 100.0, 400.0, 100.0)
        );
        assert_eq!(metrics["n-1"]["led"].count, 1);
        assert_eq!(metrics.len(), 1, "pipeline counts are not a device's");
    }
}
