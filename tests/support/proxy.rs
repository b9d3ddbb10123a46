//! A scripted HTTP proxy in front of moto: for the first requests, canned
//! responses (throttling, 500s, 400s, partial failures) or faults (the
//! connection reset, the answer cut short, a delay); the rest forwarded.

use std::net::TcpListener;
use std::sync::Mutex;

use crate::http::{dechunk, find, read_request};

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

/// What the proxy does with one request.
#[derive(Clone)]
pub enum Step {
    Respond(Canned),
    /// The connection closes without an answer.
    Reset,
    /// The request is forwarded, and half of moto's answer is sent before
    /// the connection closes.
    Truncate,
    /// The request is forwarded after this delay.
    Delay(std::time::Duration),
}

impl Canned {
    /// A service-side 500 (`InternalFailure`, query protocol).
    pub fn internal_error() -> Canned {
        Canned {
            status: 500,
            content_type: "text/xml",
            body: "<ErrorResponse><Error><Type>Receiver</Type><Code>InternalFailure</Code><Message>We encountered an internal error</Message></Error><RequestId>failed</RequestId></ErrorResponse>".into(),
        }
    }

    /// A 400 the request itself causes (`InvalidParameterValue`).
    pub fn invalid_parameter() -> Canned {
        Canned {
            status: 400,
            content_type: "text/xml",
            body: "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameterValue</Code><Message>The value is not valid</Message></Error><RequestId>invalid</RequestId></ErrorResponse>".into(),
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
        Self::steps(
            upstream,
            script.into_iter().map(Step::Respond).collect(),
            repeat_last,
        )
    }

    /// Plays `script` on the first requests (the last step repeats if
    /// `repeat_last`), then forwards.
    pub fn steps(upstream: &str, script: Vec<Step>, repeat_last: bool) -> ThrottlingProxy {
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
                            Some(Step::Respond(canned)) => format!(
                                "HTTP/1.1 {} Canned\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{}",
                                canned.status,
                                canned.content_type,
                                canned.body.len(),
                                canned.body
                            )
                            .into_bytes(),
                            Some(Step::Reset) => break,
                            Some(Step::Truncate) => {
                                let full = forward(&upstream, &head, &body);
                                let _ = std::io::Write::write_all(&mut stream, &full[..full.len() / 2]);
                                break;
                            }
                            Some(Step::Delay(delay)) => {
                                std::thread::sleep(delay);
                                forward(&upstream, &head, &body)
                            }
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
