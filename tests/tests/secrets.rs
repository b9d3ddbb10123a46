//! No secret in the repository, in a log line or in an output: devices are
//! provisioned (moto) and the local pipeline runs with its warehouse in a
//! PostgreSQL that wants a password, once with the right one and once with
//! a wrong one (so the failure paths log too); then every byte the tools
//! printed and every file they wrote is searched for the private keys and
//! both passwords.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e_tests::{function_binary, repo_root, scratch_dir, MotoServer, PostgresServer};

const PASSWORD: &str = "s3cret-Pa55word-7f1c";
const WRONG_PASSWORD: &str = "wr0ng-Pa55word-91ad";

fn printed(output: &Output) -> Vec<u8> {
    let mut all = output.stdout.clone();
    all.extend_from_slice(&output.stderr);
    all
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// The lines of a PEM private key's body: what must never be printed.
fn key_lines(keys: &Path) -> Vec<String> {
    let mut files = Vec::new();
    files_under(keys, &mut files);
    let mut lines = Vec::new();
    for file in files.iter().filter(|f| f.ends_with("private.pem.key")) {
        let pem = std::fs::read_to_string(file).unwrap();
        lines.extend(
            pem.lines()
                .filter(|line| !line.starts_with("-----") && line.len() >= 32)
                .map(str::to_owned),
        );
    }
    lines
}

fn run_pipeline(out: &Path, warehouse_url: &str) -> Output {
    Command::new(function_binary("iotpipe"))
        .args(["run", "--out", out.to_str().unwrap()])
        .args([
            "--fleet",
            "gcp-iot-lab,co2-meter",
            "--messages",
            "4",
            "--rate",
            "20",
        ])
        .arg("--env")
        .arg(format!("telemetry-warehouse:WAREHOUSE_URL={warehouse_url}"))
        .output()
        .expect("iotpipe runs")
}

#[test]
fn provisioning_and_a_full_local_run_never_print_keys_or_passwords() {
    let scratch = scratch_dir("secrets");
    let keys = scratch.join("keys");
    let moto = MotoServer::start();
    let mut outputs = Vec::new();
    for args in [
        &["provision", "--fleet", "lab", "--devices", "2", "--out"][..],
        &["provision", "--fleet", "lab", "--list", "--out"][..],
    ] {
        let output = Command::new(function_binary("iotpipe"))
            .args(args)
            .arg(&keys)
            .envs(moto.env())
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&printed(&output))
        );
        outputs.push(printed(&output));
    }
    let secrets_of_keys = key_lines(&keys);
    assert!(
        secrets_of_keys.len() >= 2 * 5,
        "two provisioned private keys"
    );

    let postgres = PostgresServer::start();
    let url = postgres.with_password_role("iot", PASSWORD);
    let good = scratch.join("run-good");
    let run = run_pipeline(&good, &url);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&printed(&run))
    );
    outputs.push(printed(&run));
    // The password was used: the rows are there.
    let rows: u64 = postgres
        .psql("SELECT count(*) FROM readings")
        .parse()
        .unwrap();
    assert!(rows >= 2 * 4, "{rows} rows");

    let bad = scratch.join("run-wrong-password");
    let wrong_url = url.replace(PASSWORD, WRONG_PASSWORD);
    let run = run_pipeline(&bad, &wrong_url);
    outputs.push(printed(&run));
    // The failure is logged, naming the server and not the password.
    let log = std::fs::read_to_string(bad.join("logs/telemetry-warehouse.log")).unwrap();
    assert!(
        log.contains("password authentication failed") && log.contains("postgres://…@127.0.0.1"),
        "{log}"
    );

    let mut files = Vec::new();
    files_under(&good, &mut files);
    files_under(&bad, &mut files);
    assert!(
        files.iter().any(|f| f.starts_with(good.join("logs"))),
        "logs were written"
    );
    let mut searched = outputs;
    searched.extend(files.iter().map(|file| std::fs::read(file).unwrap()));
    for (index, haystack) in searched.iter().enumerate() {
        let source = files
            .get(index.wrapping_sub(4))
            .map_or_else(|| format!("output {index}"), |f| f.display().to_string());
        for secret in [PASSWORD, WRONG_PASSWORD] {
            assert!(!contains(haystack, secret), "{source} holds a password");
        }
        for line in &secrets_of_keys {
            assert!(
                !contains(haystack, line),
                "{source} holds private key material"
            );
        }
    }
}

/// Nothing committed looks like a private key or an AWS access key.
#[test]
fn the_repository_holds_no_private_key_or_access_key() {
    let listed = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    assert!(listed.status.success());
    let mut checked = 0;
    for path in listed
        .stdout
        .split(|byte| *byte == 0)
        .filter(|p| !p.is_empty())
    {
        let path = repo_root().join(String::from_utf8_lossy(path).as_ref());
        let Ok(bytes) = std::fs::read(&path) else {
            continue; // deleted in the working tree
        };
        checked += 1;
        // Spelled in two pieces so this file does not match itself.
        for marker in [
            concat!("PRIVATE", " KEY-----"),
            concat!("aws_secret", "_access_key ="),
        ] {
            assert!(
                !contains(&bytes, marker),
                "{} holds {marker:?}",
                path.display()
            );
        }
        // An AWS access key id: AKIA + 16 upper-case letters or digits.
        let access_key = bytes.windows(20).any(|window| {
            window.starts_with(b"AKIA")
                && window[4..]
                    .iter()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        });
        assert!(!access_key, "{} holds an AWS access key id", path.display());
    }
    assert!(checked > 100, "{checked} files checked");
}
