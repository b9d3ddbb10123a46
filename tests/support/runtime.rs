//! A local Lambda Runtime API (the HTTP interface a function binary polls),
//! enough to run a real function binary and invoke it: `next`, `response`,
//! `error` and `init/error`.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::read_request;

#[derive(Default)]
struct State {
    queue: VecDeque<(String, Vec<u8>)>,
    /// request id -> (is_error, body)
    results: HashMap<String, (bool, Vec<u8>)>,
    init_error: Option<Vec<u8>>,
}

/// The runtime API on a loopback port; `address` goes into
/// `AWS_LAMBDA_RUNTIME_API`.
pub struct LocalRuntime {
    pub address: String,
    state: Arc<(Mutex<State>, Condvar)>,
    counter: Mutex<u64>,
}

impl LocalRuntime {
    pub fn start() -> LocalRuntime {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, shared));
            }
        });
        LocalRuntime {
            address,
            state,
            counter: Mutex::new(0),
        }
    }

    /// Queues an event and waits for the function's answer: `Ok(response)`
    /// or `Err(error document)`.
    pub fn invoke(&self, event: &[u8], timeout: Duration) -> Result<Value, Value> {
        let id = {
            let mut counter = self.counter.lock().unwrap();
            *counter += 1;
            format!("00000000-0000-4000-8000-{:012}", *counter)
        };
        let (lock, signal) = &*self.state;
        lock.lock()
            .unwrap()
            .queue
            .push_back((id.clone(), event.to_vec()));
        signal.notify_all();
        let deadline = Instant::now() + timeout;
        let mut state = lock.lock().unwrap();
        loop {
            if let Some((is_error, body)) = state.results.remove(&id) {
                let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                return if is_error { Err(value) } else { Ok(value) };
            }
            if let Some(error) = &state.init_error {
                return Err(serde_json::from_slice(error).unwrap_or(Value::Null));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the function did not answer invocation {id} in {timeout:?}"
            );
            state = signal.wait_timeout(state, left).unwrap().0;
        }
    }
}

fn serve(mut stream: TcpStream, shared: Arc<(Mutex<State>, Condvar)>) {
    let (lock, signal) = &*shared;
    while let Some((head, body)) = read_request(&mut stream) {
        let request_line = head.lines().next().unwrap_or_default().to_owned();
        let path = request_line
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let reply = if path.ends_with("/runtime/invocation/next") {
            let mut state = lock.lock().unwrap();
            let (id, event) = loop {
                if let Some(next) = state.queue.pop_front() {
                    break next;
                }
                state = signal.wait(state).unwrap();
            };
            drop(state);
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 30_000;
            let mut reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: {id}\r\n\
                 Lambda-Runtime-Deadline-Ms: {deadline}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:local\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1\r\n\
                 Content-Length: {}\r\n\r\n",
                event.len()
            )
            .into_bytes();
            reply.extend_from_slice(&event);
            reply
        } else if let Some(rest) = path.strip_prefix("/2018-06-01/runtime/invocation/") {
            let (id, kind) = rest.split_once('/').unwrap_or((rest, ""));
            lock.lock()
                .unwrap()
                .results
                .insert(id.to_owned(), (kind == "error", body));
            signal.notify_all();
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n".to_vec()
        } else if path.ends_with("/runtime/init/error") {
            lock.lock().unwrap().init_error = Some(body);
            signal.notify_all();
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n".to_vec()
        } else {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
        };
        if stream.write_all(&reply).is_err() {
            break;
        }
    }
}

/// A function binary polling a [`LocalRuntime`], configured only through
/// its environment; its stdout (EMF lines) is kept.
pub struct Function {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl Function {
    /// `telemetry-metrics`.
    pub fn start(runtime: &LocalRuntime, env: &[(&str, String)]) -> Function {
        Self::start_binary("telemetry-metrics", runtime, env)
    }

    pub fn start_binary(binary: &str, runtime: &LocalRuntime, env: &[(&str, String)]) -> Function {
        let mut command = Command::new(crate::function_binary(binary));
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", &runtime.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", binary)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the function binary starts");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = stdout.clone();
        let pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        Function { child, stdout }
    }

    pub fn output(&self) -> Vec<String> {
        // stdout is read by a thread; give it a moment to catch up.
        std::thread::sleep(Duration::from_millis(200));
        self.stdout.lock().unwrap().clone()
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
