//! A throwaway PostgreSQL server from the machine's (Debian's) binaries.

use std::path::PathBuf;
use std::process::Command;

use crate::certificates::TestCertificates;
use crate::free_port;

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

    /// Adds a login role that must give `password` over TCP (SCRAM), and
    /// the URL it connects with; the server's own `postgres` role stays
    /// trusted for the tests' psql.
    pub fn with_password_role(&self, role: &str, password: &str) -> String {
        self.psql(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT ALL ON SCHEMA public TO {role}"
        ));
        std::fs::write(
            self.data.join("cluster/pg_hba.conf"),
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        self.psql("SELECT pg_reload_conf()");
        format!(
            "postgres://{role}:{password}@127.0.0.1:{}/postgres",
            self.port
        )
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

pub(crate) fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
