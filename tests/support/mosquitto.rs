//! A throwaway `mosquitto` broker (Debian package) on a loopback port, and
//! `mosquitto_sub` as an independent subscriber recording every message's
//! topic and exact bytes.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, TestCertificates};

/// A mosquitto process, stopped when dropped.
pub struct MosquittoServer {
    child: Option<Child>,
    config: PathBuf,
    pub port: u16,
}

impl MosquittoServer {
    /// Plain MQTT, anonymous clients, loopback only.
    pub fn start(directory: &Path) -> MosquittoServer {
        Self::start_with(directory, |port| {
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n")
        })
    }

    /// MQTT over TLS only; clients must present a certificate the test CA
    /// signed (as AWS IoT Core requires of devices).
    pub fn start_tls(directory: &Path, certificates: &TestCertificates) -> MosquittoServer {
        // Started as root, mosquitto drops to its own user: let it read the
        // throwaway test key.
        std::fs::set_permissions(
            &certificates.server_key,
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        Self::start_with(directory, |port| {
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\ntls_version tlsv1.2\n",
                certificates.ca.display(),
                certificates.server_certificate.display(),
                certificates.server_key.display()
            )
        })
    }

    fn start_with(directory: &Path, config: impl Fn(u16) -> String) -> MosquittoServer {
        std::fs::create_dir_all(directory).unwrap();
        let mosquitto = which("mosquitto");
        // A free port can be taken between the probe and the bind: retry.
        for _ in 0..5 {
            let port = free_port();
            let path = directory.join("mosquitto.conf");
            std::fs::write(&path, config(port)).unwrap();
            let mut server = MosquittoServer {
                child: None,
                config: path,
                port,
            };
            server.child = Some(spawn(&mosquitto, &server.config, directory));
            if server.wait_until_listening() {
                return server;
            }
        }
        panic!(
            "mosquitto did not start; see {}",
            directory.join("mosquitto.log").display()
        );
    }

    fn wait_until_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false; // exited: the port was taken
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills the broker (no goodbye to its clients, sessions lost).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let directory = self.config.parent().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.child = Some(spawn(&which("mosquitto"), &self.config, &directory));
            if self.wait_until_listening() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for MosquittoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(mosquitto: &Path, config: &Path, directory: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(directory.join("mosquitto.log"))
        .unwrap();
    Command::new(mosquitto)
        .arg("-c")
        .arg(config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("mosquitto starts")
}

/// A Debian binary, with a hint when it is missing.
fn which(program: &str) -> PathBuf {
    for directory in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(directory).join(program);
        if path.exists() {
            return path;
        }
    }
    panic!("{program} not found: run `make test` (it installs Debian's mosquitto and mosquitto-clients)");
}

/// `mosquitto_sub` on `#` at QoS 1, one line per message: topic and
/// payload in hex (exact bytes, multi-line payloads included).
pub struct Subscriber {
    child: Child,
    output: PathBuf,
}

impl Subscriber {
    /// Subscribes with a persistent session under `client_id`; returns once
    /// the subscription is in place (a probe message came back).
    pub fn start(broker: &MosquittoServer, client_id: &str, output: &Path) -> Subscriber {
        Self::start_on(broker, client_id, output, "#")
    }

    /// Also subscribed to `extra` (`#` does not match topics that begin
    /// with `$`, such as Basic Ingest's `$aws/rules/...`).
    pub fn start_on(
        broker: &MosquittoServer,
        client_id: &str,
        output: &Path,
        extra: &str,
    ) -> Subscriber {
        let child = Command::new(which("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
            .args([
                "-t", "#", "-t", extra, "-q", "1", "-c", "-i", client_id, "-F", "%t %x",
            ])
            .stdout(std::fs::File::create(output).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub starts");
        let subscriber = Subscriber {
            child,
            output: output.to_owned(),
        };
        let probe = format!("probe/{client_id}/{}", std::process::id());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let _ = Command::new(which("mosquitto_pub"))
                .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
                .args(["-t", &probe, "-m", "probe", "-q", "1"])
                .status();
            std::thread::sleep(Duration::from_millis(100));
            if read_messages(output)
                .iter()
                .any(|(topic, _)| *topic == probe)
            {
                return subscriber;
            }
            assert!(Instant::now() < deadline, "mosquitto_sub did not subscribe");
        }
    }

    /// Every message received so far, probes left out.
    pub fn messages(&self) -> Vec<(String, Vec<u8>)> {
        Self::messages_in(&self.output)
    }

    /// The messages a subscriber wrote to `output`, probes left out.
    pub fn messages_in(output: &Path) -> Vec<(String, Vec<u8>)> {
        read_messages(output)
            .into_iter()
            .filter(|(topic, _)| !topic.starts_with("probe/"))
            .collect()
    }

    /// Waits until at least `count` messages arrived (or `timeout`).
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<(String, Vec<u8>)> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count || Instant::now() > deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every `topic hex` line `mosquitto_sub -F '%t %x'` wrote.
fn read_messages(output: &Path) -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(output).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (topic, hex) = line.split_once(' ').unwrap_or((line, ""));
            let bytes = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            Some((topic.to_owned(), bytes))
        })
        .collect()
}

/// Publishes one message with `mosquitto_pub` (a command to a device).
pub fn mosquitto_pub(broker: &MosquittoServer, topic: &str, payload: &str) {
    let status = Command::new(which("mosquitto_pub"))
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", topic, "-m", payload, "-q", "1"])
        .status()
        .expect("mosquitto_pub runs");
    assert!(status.success(), "mosquitto_pub {topic} {payload}");
    let _ = std::io::stdout().flush();
}
