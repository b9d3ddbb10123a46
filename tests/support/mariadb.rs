//! A throwaway MariaDB server from the machine's (Debian's) binaries.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::certificates::TestCertificates;
use crate::free_port;
use crate::postgres::running_as_root;

/// The password of the `iot` account the tests connect as.
pub const MARIADB_PASSWORD: &str = "s3cr3t-pw";

/// A MariaDB server of its own: `mariadb-install-db` in a temporary
/// directory, `mariadbd` on a free loopback port, a database `iot` and an
/// account `iot` with [`MARIADB_PASSWORD`]; stopped and removed when dropped.
pub struct MariadbServer {
    /// `mysql://iot:<password>@127.0.0.1:<port>/iot`.
    pub url: String,
    pub port: u16,
    directory: PathBuf,
    child: Child,
}

impl MariadbServer {
    pub fn start() -> MariadbServer {
        Self::start_with(None)
    }

    /// As [`MariadbServer::start`], refusing connections without TLS
    /// (`require_secure_transport`), with the certificate of `certificates`.
    pub fn start_tls_only(certificates: &TestCertificates) -> MariadbServer {
        Self::start_with(Some(certificates))
    }

    fn start_with(tls: Option<&TestCertificates>) -> MariadbServer {
        assert!(
            Path::new("/usr/sbin/mariadbd").exists(),
            "MariaDB not installed: run `make test` (it installs Debian's mariadb-server)"
        );
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let directory =
            std::env::temp_dir().join(format!("iotpipe-mariadb-{}-{number}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        let data = directory.join("data");
        let socket = directory.join("sock");
        for (from, name) in tls.iter().flat_map(|c| {
            [
                (&c.server_certificate, "server.pem"),
                (&c.server_key, "server.key"),
                (&c.ca, "ca.pem"),
            ]
        }) {
            std::fs::copy(from, directory.join(name)).unwrap();
        }
        // Each server its own temporary directory: installs running side by
        // side in the shared /tmp have failed to drop each other's
        // `#sql-temptable` files ("Unknown table 'mysql.tmp_user_sys'").
        let tmp = directory.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        // mariadbd refuses to run as root unless told whom to run as.
        let user = if running_as_root() { "mysql" } else { "" };
        if !user.is_empty() {
            Command::new("chown")
                .args(["-R", "mysql:mysql"])
                .arg(&directory)
                .status()
                .unwrap();
        }
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"]);
        if !user.is_empty() {
            install.arg(format!("--user={user}"));
        }
        let installed = install.output().expect("mariadb-install-db runs");
        assert!(
            installed.status.success(),
            "mariadb-install-db: {}",
            String::from_utf8_lossy(&installed.stderr)
        );
        let port = free_port();
        let mut server = Command::new("/usr/sbin/mariadbd");
        server
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", directory.join("pid").display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--bind-address=127.0.0.1", &format!("--port={port}")])
            .args(["--skip-log-bin", "--innodb-buffer-pool-size=16M"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !user.is_empty() {
            server.arg(format!("--user={user}"));
        }
        if tls.is_some() {
            server
                .arg(format!(
                    "--ssl-cert={}",
                    directory.join("server.pem").display()
                ))
                .arg(format!(
                    "--ssl-key={}",
                    directory.join("server.key").display()
                ))
                .arg(format!("--ssl-ca={}", directory.join("ca.pem").display()))
                .arg("--require-secure-transport=ON");
        }
        let child = server.spawn().expect("mariadbd starts");
        let started = MariadbServer {
            url: format!("mysql://iot:{MARIADB_PASSWORD}@127.0.0.1:{port}/iot"),
            port,
            directory,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while started.root_sql("SELECT 1").is_err() {
            assert!(Instant::now() < deadline, "mariadbd did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        started
            .root_sql(&format!(
                "CREATE DATABASE iot; \
                 CREATE USER 'iot'@'127.0.0.1' IDENTIFIED BY '{MARIADB_PASSWORD}'; \
                 CREATE USER 'iot'@'localhost' IDENTIFIED BY '{MARIADB_PASSWORD}'; \
                 GRANT ALL ON iot.* TO 'iot'@'127.0.0.1'; GRANT ALL ON iot.* TO 'iot'@'localhost'"
            ))
            .unwrap();
        started
    }

    /// Runs SQL as root over the server's socket, in database `iot` once it
    /// exists; returns the rows tab-separated, one a line.
    fn root_sql(&self, sql: &str) -> Result<String, String> {
        let socket = self.directory.join("sock");
        let mut command = Command::new("mariadb");
        command
            .arg("--no-defaults")
            .arg(format!("--socket={}", socket.display()))
            .args([
                "--default-character-set=utf8mb4",
                "-uroot",
                "-N",
                "-B",
                "-e",
                sql,
            ]);
        let output = command.output().map_err(|error| error.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout)
                .trim_end()
                .to_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// SQL in database `iot`, as root; panics with the server's words.
    pub fn sql(&self, sql: &str) -> String {
        self.root_sql(&format!("USE iot; {sql}"))
            .unwrap_or_else(|error| panic!("{sql}: {error}"))
    }
}

impl Drop for MariadbServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}
