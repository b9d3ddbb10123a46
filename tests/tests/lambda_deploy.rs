//! `cargo lambda deploy <function> --iam-role <arn>`, as a user without our
//! SAM stack runs it, against a real moto server: each function exists
//! afterwards with the memory, timeout, architecture, tracing and
//! environment its crate's `[package.metadata.lambda]` declares, and a
//! second deploy updates it in place. The packages are the arm64 ones
//! `make build` makes with `cargo lambda build --arm64`.

use std::path::PathBuf;
use std::process::Command;

use e2e_tests::{http_request_with_headers, repo_root, MotoServer};
use serde_json::Value;

const ROLE: &str = "iotpipe-function";
const FUNCTIONS: [&str; 3] = [
    "device-commands",
    "telemetry-metrics",
    "telemetry-warehouse",
];

/// moto tells services apart by the credential scope of a request's
/// signature (it does not check the signature itself).
fn signed_for(service: &str) -> [(&'static str, String); 1] {
    [(
        "Authorization",
        format!(
            "AWS4-HMAC-SHA256 Credential=testing/20261201/us-east-1/{service}/aws4_request, \
             SignedHeaders=host, Signature=0"
        ),
    )]
}

fn call(moto: &MotoServer, service: &str, method: &str, path: &str) -> (u16, String) {
    let [(name, value)] = signed_for(service);
    let (status, body) =
        http_request_with_headers(&moto.endpoint, method, path, &[(name, value.as_str())], b"");
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn cargo_lambda() -> PathBuf {
    let binary = repo_root().join(".venv/bin/cargo-lambda");
    assert!(
        binary.exists(),
        "{} not found: run `make test` (it installs cargo-lambda into .venv)",
        binary.display()
    );
    binary
}

/// The crate's `[package.metadata.lambda]`.
fn lambda_metadata(function: &str) -> toml::Value {
    let manifest = repo_root()
        .join("functions")
        .join(function)
        .join("Cargo.toml");
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    manifest["package"]["metadata"]["lambda"].clone()
}

/// Creates the execution role in moto's IAM (it must exist before a
/// function names it) and returns its ARN.
fn create_role(moto: &MotoServer) -> String {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let encoded = percent_encoding::utf8_percent_encode(policy, percent_encoding::NON_ALPHANUMERIC);
    let path = format!(
        "/?Action=CreateRole&Version=2010-05-08&RoleName={ROLE}&AssumeRolePolicyDocument={encoded}"
    );
    let (status, body) = call(moto, "iam", "POST", &path);
    assert_eq!(status, 200, "CreateRole: {body}");
    let start = body.find("<Arn>").expect("the role's ARN") + 5;
    let end = body[start..].find("</Arn>").unwrap() + start;
    body[start..end].to_owned()
}

fn deploy(moto: &MotoServer, function: &str, role: &str) {
    let bootstrap = repo_root()
        .join("target/lambda")
        .join(function)
        .join("bootstrap");
    assert!(
        bootstrap.exists(),
        "{} not found: run `make build` (it runs `cargo lambda build --arm64`)",
        bootstrap.display()
    );
    let output = Command::new(cargo_lambda())
        .args(["lambda", "deploy", function, "--iam-role", role])
        .current_dir(repo_root())
        .envs(moto.env())
        .output()
        .expect("cargo lambda runs");
    assert!(
        output.status.success(),
        "cargo lambda deploy {function}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn configuration(moto: &MotoServer, function: &str) -> Value {
    let path = format!("/2015-03-31/functions/{function}/configuration");
    let (status, body) = call(moto, "lambda", "GET", &path);
    assert_eq!(status, 200, "GetFunctionConfiguration {function}: {body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn cargo_lambda_deploys_each_function_with_its_crate_settings() {
    let moto = MotoServer::start();
    let role = create_role(&moto);
    for function in FUNCTIONS {
        let metadata = lambda_metadata(function);
        let declared = &metadata["deploy"];
        deploy(&moto, function, &role);
        let first = configuration(&moto, function);
        assert_eq!(first["Role"], role.as_str(), "{function}");
        assert_eq!(first["Runtime"], "provided.al2023", "{function}");
        assert_eq!(first["Handler"], "bootstrap", "{function}");
        assert_eq!(
            first["Architectures"],
            serde_json::json!(["arm64"]),
            "{function}"
        );
        assert_eq!(
            first["MemorySize"].as_i64(),
            declared["memory"].as_integer(),
            "{function}"
        );
        assert_eq!(
            first["Timeout"].as_i64(),
            declared["timeout"].as_integer(),
            "{function}"
        );
        assert_eq!(
            first["TracingConfig"]["Mode"]
                .as_str()
                .map(str::to_ascii_lowercase),
            declared["tracing"].as_str().map(str::to_owned),
            "{function}"
        );
        let environment = &first["Environment"]["Variables"];
        let declared_env = declared.get("env").and_then(|env| env.as_table()).cloned();
        for (variable, value) in declared_env.unwrap_or_default() {
            assert_eq!(
                environment[&variable],
                value.as_str().unwrap(),
                "{function}: {variable}"
            );
        }

        // Again: the same function, updated in place.
        deploy(&moto, function, &role);
        let second = configuration(&moto, function);
        assert_eq!(second["FunctionArn"], first["FunctionArn"], "{function}");
        assert_eq!(second["MemorySize"], first["MemorySize"], "{function}");
        assert_eq!(second["Environment"], first["Environment"], "{function}");
    }
    let (_, listing) = call(&moto, "lambda", "GET", "/2015-03-31/functions/");
    let listing: Value = serde_json::from_str(&listing).unwrap();
    let mut names: Vec<&str> = listing["Functions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|function| function["FunctionName"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, FUNCTIONS, "no function deployed twice");
}
