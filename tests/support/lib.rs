//! Shared helpers for the end-to-end tests: real servers on loopback
//! (moto, PostgreSQL, a Lambda Runtime API), the repository's paths, and
//! capturing sinks. One concern per module:
//!
//! - `moto`: [`MotoServer`], [`sdk_config`] and moto's request recorder
//!   ([`start_recording`], [`recorded_requests`], [`recorded_actions`]).
//! - `http`: [`http_request`], a plain HTTP/1.1 client, and the request
//!   reading and chunked-body helpers the proxy and the runtime share.
//! - `proxy`: [`ThrottlingProxy`] in front of moto, answering with
//!   [`Canned`] responses before it forwards.
//! - `mariadb`: [`MariadbServer`], a throwaway MariaDB server.
//! - `postgres`: [`PostgresServer`], a throwaway PostgreSQL server.
//! - `certificates`: [`TestCertificates`] for the TLS-only server.
//! - `duckdb`: [`duckdb_query`], an independent Parquet reader.
//! - `capture`: [`CapturedDeadLetters`], and [`parse_emf`] reading EMF back
//!   as [`EmittedMetric`]s.
//! - [`faults`]: [`FaultyTcp`], a TCP proxy that refuses, delays or cuts
//!   connections by script (in front of PostgreSQL).
//! - [`runtime`]: a local Lambda Runtime API to run a function binary.
//! - [`stack`]: the SAM template as it deploys for chosen parameters.
//! - [`triggers`]: how each trigger wraps device payloads into an event.
//! - `events`: [`sqs_event`], an SQS batch written inline.
//! - `mosquitto`: [`MosquittoServer`], a throwaway MQTT broker, and
//!   [`Subscriber`] (`mosquitto_sub`) recording every message's bytes.
//! - `gate`: [`TcpGate`], a loopback forwarder the test can cut.
//! - `samples`: [`Sample`], a file of events/ with its expectation in
//!   events/expected/, for tests that need a sample's ids or counts.
//!
//! Here: [`repo_root`], [`free_port`] and [`function_binary`].

mod capture;
mod certificates;
mod duckdb;
mod events;
pub mod faults;
mod gate;
mod http;
mod mariadb;
mod mosquitto;
mod moto;
mod postgres;
mod proxy;
pub mod runtime;
mod samples;
pub mod stack;
pub mod triggers;

use std::net::TcpListener;
use std::path::PathBuf;

pub use capture::{parse_emf, CapturedDeadLetters, EmittedMetric};
pub use certificates::{signing_request, TestCertificates};
pub use duckdb::duckdb_query;
pub use events::{retry_ids, sqs_event};
pub use faults::{FaultyTcp, TcpFault};
pub use gate::TcpGate;
pub use http::{http_request, http_request_with_headers};
pub use mariadb::{MariadbServer, MARIADB_PASSWORD};
pub use mosquitto::{mosquitto_pub, MosquittoServer, Subscriber};
pub use moto::{recorded_actions, recorded_requests, sdk_config, start_recording, MotoServer};
pub use postgres::PostgresServer;
pub use proxy::{Canned, Step, ThrottlingProxy};
pub use samples::Sample;

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

/// An empty directory of this test process's own under the system's
/// temporary directory (whatever an earlier run left there is removed).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iotpipe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
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
