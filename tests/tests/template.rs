//! infra/template.yaml against the workspace: every function's binary
//! exists, its environment holds only variables the function reads, its
//! queue and stream sources report batch item failures, and every topic
//! rule's SQL selects the fields the functions use.

use std::collections::BTreeMap;

use e2e_tests::repo_root;
use e2e_tests::stack::{deployed, substituted};
use serde_yaml::Value;

fn template() -> Value {
    e2e_tests::stack::template_yaml()
}

/// The template as it deploys for each choice of the parameters that change
/// what deploys, with the parameter values.
fn variants() -> Vec<(Value, BTreeMap<String, String>)> {
    let mut variants = Vec::new();
    for ingest in ["topics", "basic-ingest"] {
        for transport in ["sqs", "kinesis"] {
            variants.push(deployed(&[
                ("IngestPath", ingest),
                ("Transport", transport),
            ]));
        }
    }
    variants
}

/// `!Sub "..."`, `!Ref X` and friends arrive as tagged values.
fn untag(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => &tagged.value,
        other => other,
    }
}

fn text(value: &Value) -> String {
    match untag(value) {
        Value::String(text) => text.clone(),
        other => serde_yaml::to_string(other).unwrap(),
    }
}

fn resources(template: &Value, kind: &str) -> BTreeMap<String, Value> {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some(kind))
        .map(|(name, resource)| (name.as_str().unwrap().to_owned(), resource.clone()))
        .collect()
}

/// Binary name -> the environment variables it reads.
fn known_binaries() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        (
            "telemetry-metrics",
            telemetry_core::config::METRICS_ENV_VARS,
        ),
        (
            "telemetry-warehouse",
            telemetry_warehouse::WAREHOUSE_ENV_VARS,
        ),
        ("device-commands", telemetry_core::config::COMMANDS_ENV_VARS),
        (
            "telemetry-windows",
            telemetry_windows::WINDOWS_FUNCTION_ENV_VARS,
        ),
    ])
}

/// Binaries the workspace's function crates define.
fn workspace_binaries() -> Vec<(String, std::path::PathBuf)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("functions")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let manifest: toml::Value = toml::from_str(&manifest).unwrap();
        for bin in manifest
            .get("bin")
            .and_then(|b| b.as_array())
            .into_iter()
            .flatten()
        {
            found.push((bin["name"].as_str().unwrap().to_owned(), dir.clone()));
        }
        if dir.join("src/main.rs").exists() && manifest.get("bin").is_none() {
            found.push((
                manifest["package"]["name"].as_str().unwrap().to_owned(),
                dir.clone(),
            ));
        }
    }
    found
}

#[test]
fn every_function_builds_an_existing_binary_with_known_settings() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Architectures"][0].as_str(), Some("arm64"));
    assert_eq!(globals["Handler"].as_str(), Some("bootstrap"));
    let binaries = workspace_binaries();
    let functions = resources(&template, "AWS::Serverless::Function");
    assert!(!functions.is_empty());
    for (name, function) in &functions {
        let metadata = &function["Metadata"];
        assert_eq!(
            metadata["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{name}"
        );
        let binary = metadata["BuildProperties"]["Binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: Binary"));
        let code_uri = function["Properties"]["CodeUri"].as_str().unwrap();
        let crate_dir = repo_root()
            .join("infra")
            .join(code_uri)
            .canonicalize()
            .unwrap();
        assert!(
            binaries
                .iter()
                .any(|(bin, dir)| bin == binary && dir.canonicalize().unwrap() == crate_dir),
            "{name}: binary {binary} is not built by {code_uri}; workspace has {binaries:?}"
        );
        let reads = known_binaries()
            .get(binary)
            .copied()
            .unwrap_or_else(|| panic!("{binary}: add its environment variables to this test"));
        let variables = function["Properties"]["Environment"]["Variables"]
            .as_mapping()
            .unwrap();
        for variable in variables.keys() {
            let variable = variable.as_str().unwrap();
            assert!(
                reads.contains(&variable),
                "{name} sets {variable}, which {binary} does not read"
            );
        }
        assert_eq!(
            function["Properties"]["LoggingConfig"]["LogFormat"].as_str(),
            Some("JSON"),
            "{name}: JSON logs"
        );
        for (event_name, event) in function["Properties"]["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
        {
            let kind = event["Type"].as_str().unwrap();
            if kind == "SQS" || kind == "Kinesis" {
                let response_types = &event["Properties"]["FunctionResponseTypes"];
                assert_eq!(
                    response_types[0].as_str(),
                    Some("ReportBatchItemFailures"),
                    "{name}.{}: batch item failures",
                    event_name.as_str().unwrap()
                );
            }
        }
    }
}

#[test]
fn the_metrics_function_may_put_metrics_only_in_its_namespace() {
    let template = template();
    let function = &resources(&template, "AWS::Serverless::Function")["TelemetryMetricsFunction"];
    let policies = serde_yaml::to_string(&function["Properties"]["Policies"]).unwrap();
    assert!(policies.contains("cloudwatch:PutMetricData"));
    assert!(
        policies.contains("cloudwatch:namespace"),
        "PutMetricData is conditioned on the namespace"
    );
    assert!(
        !policies.contains("\"*:*\"") && !policies.contains("Action: '*'"),
        "no wildcard actions"
    );
}

#[test]
fn every_topic_rule_selects_what_the_functions_use() {
    for (template, parameters) in variants() {
        rules_select_what_the_functions_use(&template, &parameters);
    }
}

fn rules_select_what_the_functions_use(template: &Value, parameters: &BTreeMap<String, String>) {
    let rules = resources(template, "AWS::IoT::TopicRule");
    assert!(rules.len() >= 3, "status, telemetry and text rules");
    let permissions = resources(template, "AWS::Lambda::Permission");
    let ingest = &parameters["IngestPath"];
    for (name, rule) in &rules {
        let payload = &rule["Properties"]["TopicRulePayload"];
        let sql = text(&payload["Sql"]);
        for field in [
            "topic() AS topic",
            "clientid() AS client_id",
            "timestamp() AS received_at",
        ] {
            assert!(sql.contains(field), "{name}: SQL lacks `{field}`: {sql}");
        }
        assert!(
            sql.starts_with("SELECT *,") || sql.contains("encode(*, 'base64') AS data"),
            "{name}: selects the whole payload (or its base64 as `data`): {sql}"
        );
        assert!(
            !payload["ErrorAction"].is_null(),
            "{name}: an error action keeps failed messages"
        );
        for action in payload["Actions"].as_sequence().unwrap() {
            if !action["Lambda"].is_null() {
                let function = text(&action["Lambda"]["FunctionArn"]);
                let function = function.split('.').next().unwrap();
                let granted = permissions.values().any(|permission| {
                    let properties = &permission["Properties"];
                    properties["Principal"].as_str() == Some("iot.amazonaws.com")
                        && text(&properties["SourceArn"]).contains(name.as_str())
                        && text(&properties["FunctionName"]) == function
                });
                assert!(
                    granted,
                    "{name} ({ingest}): no permission for iot.amazonaws.com to invoke {function}"
                );
            }
        }
    }
    // Whatever the parameters, JSON telemetry reaches device-commands once:
    // by a rule's Lambda action, or by reading the stream the rule feeds.
    let transport = &parameters["Transport"];
    let invoking_rules = rules
        .values()
        .filter(|rule| {
            let payload = &rule["Properties"]["TopicRulePayload"];
            text(&payload["Sql"]).contains("/+/telemetry'")
                && payload["Actions"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|action| {
                        text(&action["Lambda"]["FunctionArn"]).starts_with("DeviceCommandsFunction")
                    })
        })
        .count();
    let reads_stream = resources(template, "AWS::Lambda::EventSourceMapping")
        .values()
        .any(|mapping| text(&mapping["Properties"]["FunctionName"]) == "DeviceCommandsFunction");
    assert_eq!(
        invoking_rules + usize::from(reads_stream),
        1,
        "{ingest}, {transport}: device-commands reached {invoking_rules} time(s) by rules, stream: {reads_stream}"
    );
    assert_eq!(
        reads_stream,
        transport == "kinesis",
        "{ingest}, {transport}"
    );
}

/// With Basic Ingest a device publishes to `$aws/rules/<rule>/<topic>`:
/// every such topic its policy allows names a rule of the stack (by its
/// RuleName) whose FROM filter takes `<topic>`, and every rule that takes
/// device topics can be reached that way. With broker topics, each topic
/// the policy allows reaches a rule.
#[test]
fn basic_ingest_rule_names_match_the_device_policy() {
    for (template, parameters) in variants() {
        let ingest = parameters["IngestPath"].clone();
        let rules: BTreeMap<String, String> = resources(&template, "AWS::IoT::TopicRule")
            .values()
            .map(|rule| {
                let name = substituted(&rule["Properties"]["RuleName"], &parameters);
                let sql = substituted(&rule["Properties"]["TopicRulePayload"]["Sql"], &parameters);
                let from = sql
                    .split("FROM '")
                    .nth(1)
                    .unwrap()
                    .split('\'')
                    .next()
                    .unwrap();
                (name, from.to_owned())
            })
            .collect();
        for name in rules.keys() {
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                "{ingest}: rule name {name:?} is not a valid IoT rule name"
            );
        }
        let statements = template["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"]
            ["Statement"]
            .as_sequence()
            .unwrap()
            .clone();
        let published: Vec<String> = statements
            .iter()
            .filter(|statement| statement["Action"].as_str() == Some("iot:Publish"))
            .flat_map(|statement| match &statement["Resource"] {
                Value::Sequence(items) => items.clone(),
                one => vec![one.clone()],
            })
            .map(|resource| {
                substituted(&resource, &parameters)
                    .replace("${iot:Connection.Thing.ThingName}", "pi-1")
                    .split(":topic/")
                    .nth(1)
                    .unwrap()
                    .to_owned()
            })
            .filter(|topic| !topic.starts_with("$aws/things/"))
            .collect();
        assert_eq!(
            published.len(),
            3,
            "{ingest}: telemetry, status, text: {published:?}"
        );
        let mut reached = Vec::new();
        for topic in &published {
            let (rule, inner) = match topic.strip_prefix("$aws/rules/") {
                Some(rest) => {
                    let (rule, inner) = rest.split_once('/').unwrap();
                    (Some(rule), inner)
                }
                None => (None, topic.as_str()),
            };
            assert_eq!(
                rule.is_some(),
                ingest == "basic-ingest",
                "{ingest}: the policy allows {topic}"
            );
            let takers: Vec<&String> = rules
                .iter()
                .filter(|(name, from)| {
                    rule.is_none_or(|rule| rule == name.as_str())
                        && iot_rules::sql::topic_matches(from, inner)
                })
                .map(|(name, _)| name)
                .collect();
            assert!(!takers.is_empty(), "{ingest}: {topic} reaches no rule");
            reached.extend(takers);
        }
        if ingest == "basic-ingest" {
            reached.sort();
            reached.dedup();
            let device_rules: Vec<&String> = rules.keys().collect();
            assert_eq!(
                reached, device_rules,
                "every rule is reachable through Basic Ingest"
            );
        }
    }
}

/// The Glue tables Athena queries must match the Parquet the function writes.
#[test]
fn glue_tables_match_the_parquet_schemas() {
    let template = template();
    let tables = resources(&template, "AWS::Glue::Table");
    for schema in [
        telemetry_core::warehouse::tables::Schema::readings(),
        telemetry_core::warehouse::tables::Schema::dead_letter(),
    ] {
        let table = tables
            .values()
            .find(|t| t["Properties"]["TableInput"]["Name"].as_str() == Some(&schema.table))
            .unwrap_or_else(|| panic!("no Glue table {}", schema.table));
        let columns: Vec<(String, String)> = table["Properties"]["TableInput"]["StorageDescriptor"]
            ["Columns"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["Name"].as_str().unwrap().to_owned(),
                    c["Type"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = schema
            .columns
            .iter()
            .map(|(name, kind)| {
                let glue = match kind {
                    telemetry_core::warehouse::tables::ColumnType::Timestamp => "timestamp",
                    telemetry_core::warehouse::tables::ColumnType::Float => "double",
                    telemetry_core::warehouse::tables::ColumnType::Integer => "bigint",
                    telemetry_core::warehouse::tables::ColumnType::Boolean => "boolean",
                    _ => "string",
                };
                (name.clone(), glue.to_owned())
            })
            .collect();
        assert_eq!(columns, expected, "{}", schema.table);
        let location =
            text(&table["Properties"]["TableInput"]["Parameters"]["storage.location.template"]);
        assert!(
            location.ends_with(&format!("/{}/date=${{!date}}/", schema.table)),
            "{location}"
        );
    }
}

#[test]
fn the_warehouse_bucket_is_private_encrypted_and_tls_only() {
    let template = template();
    let bucket = &resources(&template, "AWS::S3::Bucket")["WarehouseBucket"]["Properties"];
    let block = &bucket["PublicAccessBlockConfiguration"];
    for setting in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[setting].as_bool(), Some(true), "{setting}");
    }
    assert!(!bucket["BucketEncryption"].is_null());
    assert!(!bucket["LifecycleConfiguration"].is_null());
    let policies = serde_yaml::to_string(&resources(&template, "AWS::S3::BucketPolicy")).unwrap();
    assert!(policies.contains("aws:SecureTransport"));
}

/// A crate's `[package.metadata.lambda]` table (what `cargo lambda build`
/// and `cargo lambda deploy` read).
fn lambda_metadata(crate_dir: &std::path::Path) -> toml::Value {
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    let manifest: toml::Value = toml::from_str(&manifest).unwrap();
    manifest["package"]
        .get("metadata")
        .and_then(|metadata| metadata.get("lambda"))
        .cloned()
        .unwrap_or_else(|| panic!("{} has no [package.metadata.lambda]", crate_dir.display()))
}

/// A template value as a deploy without the stack would have it: a literal,
/// or a parameter's default; `None` for what only the stack knows (`!Sub`
/// of a resource, `!GetAtt`) and for empty defaults (secrets).
fn standalone_value(template: &Value, value: &Value) -> Option<String> {
    match value {
        Value::Tagged(tagged) if tagged.tag == "!Ref" => {
            let parameter = tagged.value.as_str()?;
            match &template["Parameters"][parameter]["Default"] {
                // A Number parameter's default.
                Value::Number(number) => Some(number.to_string()),
                default => {
                    let default = text(default);
                    (!default.is_empty() && default != "~\n").then_some(default)
                }
            }
        }
        Value::Tagged(_) => None,
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

#[test]
fn cargo_lambda_deploy_settings_agree_with_the_template() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let deploy_one = readme
        .split("## Deploy one function")
        .nth(1)
        .expect("the README has a 'Deploy one function' section")
        .split("\n## ")
        .next()
        .unwrap();
    let binaries: BTreeMap<String, std::path::PathBuf> = workspace_binaries().into_iter().collect();
    let mut checked = 0;
    for (name, function) in resources(&template, "AWS::Serverless::Function") {
        let binary = text(&function["Metadata"]["BuildProperties"]["Binary"]);
        let crate_dir = &binaries[&binary];
        let lambda = lambda_metadata(crate_dir);
        let deploy = &lambda["deploy"];
        let properties = &function["Properties"];
        let setting = |key: &str| {
            let own = &properties[key];
            if own.is_null() {
                globals[key].clone()
            } else {
                own.clone()
            }
        };
        assert_eq!(
            deploy["memory"].as_integer(),
            setting("MemorySize").as_i64(),
            "{name}: memory"
        );
        assert_eq!(
            deploy["timeout"].as_integer(),
            setting("Timeout").as_i64(),
            "{name}: timeout"
        );
        let tracing = setting("Tracing");
        assert_eq!(
            deploy["tracing"].as_str(),
            tracing.as_str().map(|mode| if mode == "Active" {
                "active"
            } else {
                "passthrough"
            }),
            "{name}: tracing"
        );
        // cargo-lambda takes the architecture from the binary it deploys:
        // the README's build command must make arm64, as the template does.
        let architectures = setting("Architectures");
        assert_eq!(
            architectures[0].as_str(),
            Some("arm64"),
            "{name}: the template deploys arm64"
        );
        assert!(
            deploy_one.contains("cargo lambda build --release --arm64"),
            "{name}: the README's build command makes arm64"
        );
        // Every variable the template sets: the same value when it has one
        // without the stack, else left to the user and named in the README.
        let env = deploy
            .get("env")
            .and_then(|env| env.as_table())
            .cloned()
            .unwrap_or_default();
        let readable = known_binaries()[binary.as_str()];
        for key in env.keys() {
            assert!(
                readable.contains(&key.as_str()),
                "{name}: {key} is not read by {binary}"
            );
        }
        let variables = properties["Environment"]["Variables"].as_mapping().unwrap();
        for (variable, value) in variables {
            let variable = variable.as_str().unwrap();
            match standalone_value(&template, value) {
                Some(value) => assert_eq!(
                    env.get(variable).and_then(|v| v.as_str()),
                    Some(value.as_str()),
                    "{name}: {variable}"
                ),
                None => {
                    assert!(
                        !env.contains_key(variable),
                        "{name}: {variable} has no safe default"
                    );
                    assert!(
                        deploy_one.contains(variable),
                        "{name}: the README's 'Deploy one function' says nothing of {variable}"
                    );
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 2, "every function was checked");
}

/// The AWS SDK calls `telemetry-aws` makes, by module (= cargo feature), and
/// the IAM action each needs.
const SDK_ACTIONS: [(&str, &str, &str); 6] = [
    ("cloudwatch", "put_metric_data", "cloudwatch:PutMetricData"),
    ("s3", "put_object", "s3:PutObject"),
    ("firehose", "put_record_batch", "firehose:PutRecordBatch"),
    ("iotdata", "publish", "iot:Publish"),
    ("iotdata", "get_thing_shadow", "iot:GetThingShadow"),
    ("iotdata", "update_thing_shadow", "iot:UpdateThingShadow"),
];

/// Every SDK operation called in `telemetry-aws/src/<module>.rs`: the
/// first method after a `client` (the SDK's fluent builders).
fn sdk_calls(module: &str) -> Vec<String> {
    let path = repo_root().join(format!("functions/telemetry-aws/src/{module}.rs"));
    let source = std::fs::read_to_string(path).unwrap();
    let mut calls = Vec::new();
    let mut rest = source.as_str();
    while let Some(at) = rest.find("client") {
        rest = &rest[at + "client".len()..];
        let after = rest.trim_start();
        if let Some(call) = after.strip_prefix('.') {
            let name: String = call
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if call[name.len()..].starts_with("()") && !name.is_empty() {
                calls.push(name);
            }
        }
    }
    calls
}

/// Functions hold only the permissions their code calls: each inline IAM
/// statement's action is an SDK call the function's crate makes (through
/// the telemetry-aws features it enables), each call the template's
/// settings select is granted, and the SAM policy templates are only the
/// ones Lambda itself needs (reading the stream a mapping names, sending to
/// a failure destination the function has).
#[test]
fn functions_hold_only_the_permissions_their_code_calls() {
    // The table knows every call telemetry-aws makes.
    for module in ["cloudwatch", "s3", "firehose", "iotdata"] {
        for call in sdk_calls(module) {
            assert!(
                SDK_ACTIONS
                    .iter()
                    .any(|(m, op, _)| *m == module && *op == call),
                "telemetry-aws {module}.rs calls {call}: add its IAM action to SDK_ACTIONS"
            );
        }
    }
    assert!(sdk_calls("iotdata").contains(&"update_thing_shadow".to_owned()));
    for (template, parameters) in variants() {
        let ingest_transport = format!("{} {}", parameters["IngestPath"], parameters["Transport"]);
        let mappings = resources(&template, "AWS::Lambda::EventSourceMapping");
        let invoke_configs = resources(&template, "AWS::Lambda::EventInvokeConfig");
        for (name, function) in resources(&template, "AWS::Serverless::Function") {
            let properties = &function["Properties"];
            let code_uri = properties["CodeUri"].as_str().unwrap();
            let manifest: toml::Value = toml::from_str(
                &std::fs::read_to_string(
                    repo_root().join("infra").join(code_uri).join("Cargo.toml"),
                )
                .unwrap(),
            )
            .unwrap();
            let features: Vec<String> = manifest["dependencies"]["telemetry-aws"]["features"]
                .as_array()
                .map(|features| {
                    features
                        .iter()
                        .map(|f| f.as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            let callable: Vec<&str> = SDK_ACTIONS
                .iter()
                .filter(|(module, _, _)| features.iter().any(|f| f == module))
                .map(|(_, _, action)| *action)
                .collect();

            let mut granted = Vec::new();
            let mut policy_templates = Vec::new();
            for policy in properties["Policies"].as_sequence().unwrap() {
                let (kind, body) = policy.as_mapping().unwrap().iter().next().unwrap();
                let kind = kind.as_str().unwrap();
                if kind != "Statement" {
                    policy_templates.push(kind.to_owned());
                    continue;
                }
                for statement in body.as_sequence().unwrap() {
                    match &statement["Action"] {
                        Value::Sequence(actions) => {
                            granted.extend(actions.iter().map(|a| a.as_str().unwrap().to_owned()))
                        }
                        action => granted.push(action.as_str().unwrap().to_owned()),
                    }
                }
            }
            for action in &granted {
                assert!(
                    callable.contains(&action.as_str()),
                    "{name} ({ingest_transport}) is granted {action}, which its code never calls (it calls {callable:?})"
                );
            }
            // What the template's settings make the code call.
            let environment = &properties["Environment"]["Variables"];
            let mut needed = Vec::new();
            for variable in ["WAREHOUSE_URL", "DEAD_LETTER_URL"] {
                if substituted(&environment[variable], &parameters).starts_with("s3://") {
                    needed.push("s3:PutObject");
                }
            }
            let sink = substituted(&environment["METRICS_SINK"], &parameters);
            if sink == "cloudwatch" || text(&environment["METRICS_SINK"]) == "MetricsSink" {
                needed.push("cloudwatch:PutMetricData");
            }
            if !environment["PIPELINE_CONFIG_TOML"].is_null() {
                needed.push("iot:Publish");
            }
            if !environment["COMMAND_MEMORY_SHADOW"].is_null() {
                needed.extend(["iot:GetThingShadow", "iot:UpdateThingShadow"]);
            }
            for action in needed {
                assert!(
                    granted.iter().any(|granted| granted == action),
                    "{name} ({ingest_transport}) needs {action} and is not granted it"
                );
            }
            // Policy templates only for what Lambda does on the function's behalf.
            let reads_stream = mappings.values().any(|mapping| {
                text(&mapping["Properties"]["FunctionName"]) == name
                    && text(&mapping["Properties"]["EventSourceArn"]).starts_with("TelemetryStream")
            });
            let has_failure_destination = invoke_configs
                .values()
                .any(|config| text(&config["Properties"]["FunctionName"]) == name)
                || mappings.values().any(|mapping| {
                    text(&mapping["Properties"]["FunctionName"]) == name
                        && !mapping["Properties"]["DestinationConfig"].is_null()
                })
                || properties["Events"]
                    .as_mapping()
                    .into_iter()
                    .flatten()
                    .any(|(_, event)| !event["Properties"]["DestinationConfig"].is_null());
            for kind in &policy_templates {
                let justified = match kind.as_str() {
                    "KinesisStreamReadPolicy" => reads_stream,
                    "SQSSendMessagePolicy" => has_failure_destination,
                    _ => false,
                };
                assert!(
                    justified,
                    "{name} ({ingest_transport}): policy template {kind} without the mapping or destination that needs it"
                );
            }
            assert_eq!(
                policy_templates
                    .iter()
                    .any(|kind| kind == "KinesisStreamReadPolicy"),
                reads_stream,
                "{name} ({ingest_transport}): reads the stream through a mapping iff granted to"
            );
        }
    }
}
