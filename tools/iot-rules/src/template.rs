//! The local pipeline's wiring, read from `infra/template.yaml` (the file
//! that deploys) as it deploys for the chosen parameters (conditions
//! applied by [`crate::cloudformation`]): every enabled
//! `AWS::IoT::TopicRule` with its SQL and actions, the functions those
//! actions reach (binary, environment), the SQS queues (batch size and
//! window, receive count before the redrive queue) and the Kinesis stream
//! (batch size, tumbling window), whether a function's SAM `Events` or an
//! `AWS::Lambda::EventSourceMapping` names them.

use std::collections::BTreeMap;

use serde_yaml::Value as Yaml;

use super::sql::{parse_expression, parse_rule, Expr, RuleQuery};
use crate::cloudformation;

/// A topic rule, ready to evaluate.
#[derive(Debug, Clone)]
pub struct TopicRule {
    /// The rule's logical id in the template.
    pub name: String,
    /// Its `RuleName`, when the template sets one: the name devices use in
    /// Basic Ingest topics (`$aws/rules/<name>/...`).
    pub rule_name: Option<String>,
    pub query: RuleQuery,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// Invoke the function with the rule's output (one message per
    /// invocation, asynchronously).
    Lambda { function: String },
    /// Send the output to a queue; its consumer gets batches.
    Sqs { queue: String, base64: bool },
    /// Put the output on a stream, partitioned by the key template.
    Kinesis {
        stream: String,
        partition_key: Vec<KeyPart>,
    },
}

/// A substitution template: text and `${expression}` parts.
#[derive(Debug, Clone)]
pub enum KeyPart {
    Text(String),
    Expr(Expr),
}

/// A function of the template: the binary `cargo lambda build` makes, and
/// its environment with the parameters' defaults filled in.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub binary: String,
    pub environment: BTreeMap<String, String>,
    pub events: Vec<EventSource>,
}

#[derive(Debug, Clone)]
pub enum EventSource {
    Sqs {
        queue: String,
        batch_size: usize,
        window_seconds: f64,
        /// Deliveries before the redrive queue takes a message.
        max_receive_count: u32,
    },
    Kinesis {
        stream: String,
        batch_size: usize,
        window_seconds: f64,
        tumbling_window_seconds: Option<u64>,
    },
}

/// Everything the local pipeline runs.
#[derive(Debug, Clone)]
pub struct Wiring {
    pub rules: Vec<TopicRule>,
    pub functions: BTreeMap<String, FunctionSpec>,
    pub topic_prefix: String,
    /// The template's parameter values (defaults, then the user's).
    pub parameters: BTreeMap<String, String>,
}

impl Wiring {
    /// Every function consuming `queue` or `stream` (a queue has one; a
    /// stream gives each consumer every record).
    pub fn consumers_of(&self, source: &str) -> Vec<(&FunctionSpec, &EventSource)> {
        self.functions
            .values()
            .flat_map(|function| function.events.iter().map(move |event| (function, event)))
            .filter(|(_, event)| match event {
                EventSource::Sqs { queue, .. } => queue == source,
                EventSource::Kinesis { stream, .. } => stream == source,
            })
            .collect()
    }

    /// The first function consuming `queue` or `stream`.
    pub fn consumer_of(&self, source: &str) -> Option<(&FunctionSpec, &EventSource)> {
        self.consumers_of(source).into_iter().next()
    }

    /// The rule devices publish to with Basic Ingest for `topic`: the first
    /// whose `FROM` filter takes it, by its `RuleName` (else logical id).
    pub fn basic_ingest_rule(&self, topic: &str) -> Option<&str> {
        self.rules
            .iter()
            .find(|rule| super::sql::topic_matches(&rule.query.topic_filter, topic))
            .map(|rule| rule.rule_name.as_deref().unwrap_or(&rule.name))
    }
}

/// Reads the template for the given parameter values (`NAME=VALUE`, over
/// the defaults); every error names the rule or resource and the piece
/// that cannot run locally.
pub fn load(text: &str, overrides: &[(String, String)]) -> Result<Wiring, String> {
    let template: Yaml =
        serde_yaml::from_str(text).map_err(|error| format!("not YAML: {error}"))?;
    let parameters = cloudformation::parameters(&template, overrides)?;
    let template = cloudformation::resolve(&template, &parameters)?;
    let topic_prefix = parameters
        .get("TopicPrefix")
        .cloned()
        .unwrap_or_else(|| "devices".into());
    let resources = template["Resources"].as_mapping().ok_or("no Resources")?;
    let resolve = |value: &Yaml| resolve_text(value, &parameters);

    let mut rules = Vec::new();
    let mut functions = BTreeMap::new();
    let mut receive_counts = BTreeMap::new();
    let mut mappings = Vec::new();
    for (name, resource) in resources {
        let name = name.as_str().unwrap_or_default().to_owned();
        match resource["Type"].as_str() {
            Some("AWS::SQS::Queue") => {
                let count = resource["Properties"]["RedrivePolicy"]["maxReceiveCount"]
                    .as_u64()
                    .unwrap_or(u64::from(u32::MAX)) as u32;
                receive_counts.insert(name, count);
            }
            Some("AWS::Lambda::EventSourceMapping") => {
                let properties = &resource["Properties"];
                let function = referenced(&properties["FunctionName"])
                    .ok_or_else(|| format!("{name}: FunctionName names no function"))?;
                let source = referenced(&properties["EventSourceArn"])
                    .ok_or_else(|| format!("{name}: EventSourceArn names no resource"))?;
                mappings.push((function, event_source(properties, &source, &resolve)?));
            }
            Some("AWS::IoT::TopicRule") => {
                let payload = &resource["Properties"]["TopicRulePayload"];
                if payload["RuleDisabled"].as_bool() == Some(true) {
                    continue;
                }
                let sql = resolve(&payload["Sql"]).ok_or_else(|| format!("rule {name}: no Sql"))?;
                let query = parse_rule(&sql).map_err(|error| format!("rule {name}: {error}"))?;
                let actions = payload["Actions"]
                    .as_sequence()
                    .ok_or_else(|| format!("rule {name}: no Actions"))?
                    .iter()
                    .map(|action| rule_action(&name, action))
                    .collect::<Result<Vec<_>, _>>()?;
                let rule_name = resolve(&resource["Properties"]["RuleName"]);
                rules.push(TopicRule {
                    name,
                    rule_name,
                    query,
                    actions,
                });
            }
            Some("AWS::Serverless::Function") => {
                let binary = resource["Metadata"]["BuildProperties"]["Binary"]
                    .as_str()
                    .ok_or_else(|| format!("function {name}: no Metadata.BuildProperties.Binary"))?
                    .to_owned();
                let mut environment = BTreeMap::new();
                if let Some(variables) =
                    resource["Properties"]["Environment"]["Variables"].as_mapping()
                {
                    for (key, value) in variables {
                        if let (Some(key), Some(value)) = (key.as_str(), resolve(value)) {
                            environment.insert(key.to_owned(), value);
                        }
                    }
                }
                let mut events = Vec::new();
                if let Some(sources) = resource["Properties"]["Events"].as_mapping() {
                    for source in sources.values() {
                        let properties = &source["Properties"];
                        let named = match source["Type"].as_str() {
                            Some("SQS") => referenced(&properties["Queue"]),
                            Some("Kinesis") => referenced(&properties["Stream"]),
                            _ => continue,
                        };
                        let named = named.ok_or_else(|| {
                            format!("function {name}: an event source that names no resource")
                        })?;
                        events.push(event_source(properties, &named, &resolve)?);
                    }
                }
                functions.insert(
                    name.clone(),
                    FunctionSpec {
                        name,
                        binary,
                        environment,
                        events,
                    },
                );
            }
            _ => {}
        }
    }
    for (function, event) in mappings {
        functions
            .get_mut(&function)
            .ok_or_else(|| format!("an event source mapping for {function}, which is not a function of the template"))?
            .events
            .push(event);
    }
    for function in functions.values_mut() {
        for event in &mut function.events {
            if let EventSource::Sqs {
                queue,
                max_receive_count,
                ..
            } = event
            {
                if let Some(count) = receive_counts.get(queue) {
                    *max_receive_count = *count;
                }
            }
        }
    }
    if rules.is_empty() {
        return Err("no enabled AWS::IoT::TopicRule: nothing routes the devices' messages".into());
    }
    let wiring = Wiring {
        rules,
        functions,
        topic_prefix,
        parameters,
    };
    for rule in &wiring.rules {
        for action in &rule.actions {
            let target = match action {
                Action::Lambda { function } => wiring.functions.get(function).map(|_| ()),
                Action::Sqs { queue, .. } => wiring.consumer_of(queue).map(|_| ()),
                Action::Kinesis { stream, .. } => wiring.consumer_of(stream).map(|_| ()),
            };
            if target.is_none() {
                return Err(format!(
                    "rule {}: its action {action:?} reaches no function of the template",
                    rule.name
                ));
            }
        }
    }
    Ok(wiring)
}

/// A queue or stream a function reads, from SAM `Events` properties or an
/// event source mapping's (which share the batching keys). A queue is
/// told from a stream by the resource it names.
fn event_source(
    properties: &Yaml,
    source: &str,
    resolve: &dyn Fn(&Yaml) -> Option<String>,
) -> Result<EventSource, String> {
    let number = |key: &str, default: f64| {
        resolve(&properties[key])
            .and_then(|text| text.parse().ok())
            .unwrap_or(default)
    };
    let is_stream = !properties["Stream"].is_null()
        || properties["StartingPosition"].as_str().is_some()
        || properties["TumblingWindowInSeconds"] != Yaml::Null;
    Ok(if is_stream {
        EventSource::Kinesis {
            stream: source.to_owned(),
            batch_size: number("BatchSize", 100.0) as usize,
            window_seconds: number("MaximumBatchingWindowInSeconds", 0.0),
            tumbling_window_seconds: resolve(&properties["TumblingWindowInSeconds"])
                .and_then(|text| text.parse().ok()),
        }
    } else {
        EventSource::Sqs {
            queue: source.to_owned(),
            batch_size: number("BatchSize", 10.0) as usize,
            window_seconds: number("MaximumBatchingWindowInSeconds", 0.0),
            max_receive_count: u32::MAX,
        }
    })
}

fn rule_action(rule: &str, action: &Yaml) -> Result<Action, String> {
    let mapping = action
        .as_mapping()
        .ok_or_else(|| format!("rule {rule}: an action that is not a mapping"))?;
    let (kind, properties) = mapping
        .iter()
        .next()
        .ok_or_else(|| format!("rule {rule}: an empty action"))?;
    let kind = kind.as_str().unwrap_or_default();
    let unresolved = |what: &str| {
        format!("rule {rule}: its {kind} action's {what} is not a reference to a template resource")
    };
    match kind {
        "Lambda" => Ok(Action::Lambda {
            function: referenced(&properties["FunctionArn"])
                .ok_or_else(|| unresolved("FunctionArn"))?,
        }),
        "Sqs" => Ok(Action::Sqs {
            queue: referenced(&properties["QueueUrl"]).ok_or_else(|| unresolved("QueueUrl"))?,
            base64: properties["UseBase64"].as_bool().unwrap_or(false),
        }),
        "Kinesis" => Ok(Action::Kinesis {
            stream: referenced(&properties["StreamName"])
                .ok_or_else(|| unresolved("StreamName"))?,
            partition_key: key_template(
                properties["PartitionKey"]
                    .as_str()
                    .unwrap_or("${newuuid()}"),
            )
            .map_err(|error| format!("rule {rule}: PartitionKey: {error}"))?,
        }),
        other => Err(format!(
            "rule {rule}: the {other} action is not run locally (Lambda, Sqs and Kinesis are)"
        )),
    }
}

/// `${expr}` parts of a substitution template.
fn key_template(text: &str) -> Result<Vec<KeyPart>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            parts.push(KeyPart::Text(rest[..start].to_owned()));
        }
        let end = rest[start..].find('}').ok_or("an unclosed ${")? + start;
        parts.push(KeyPart::Expr(parse_expression(&rest[start + 2..end])?));
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(KeyPart::Text(rest.to_owned()));
    }
    Ok(parts)
}

/// The logical id behind `!Ref X`, `!GetAtt X.Arn` or `!GetAtt [X, Arn]`.
fn referenced(value: &Yaml) -> Option<String> {
    let Yaml::Tagged(tagged) = value else {
        return None;
    };
    match (tagged.tag.to_string().as_str(), &tagged.value) {
        ("!Ref", Yaml::String(name)) => Some(name.clone()),
        ("!GetAtt", Yaml::String(path)) => path.split('.').next().map(str::to_owned),
        ("!GetAtt", Yaml::Sequence(items)) => items.first()?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// A scalar, `!Ref <parameter>` or `!Sub` over parameters; `None` for
/// anything naming a resource (an ARN, a bucket), which has no local value.
fn resolve_text(value: &Yaml, parameters: &BTreeMap<String, String>) -> Option<String> {
    match value {
        Yaml::Tagged(tagged) => match (tagged.tag.to_string().as_str(), &tagged.value) {
            ("!Ref", Yaml::String(name)) => parameters.get(name).cloned(),
            ("!Sub", Yaml::String(text)) => {
                cloudformation::substitute(text, |name| parameters.get(name).map(String::as_str))
                    .ok()
            }
            _ => None,
        },
        scalar => cloudformation::scalar_text(scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TEMPLATE;

    #[test]
    fn every_rule_of_the_template_loads_with_its_actions_and_consumers() {
        let wiring = load(TEMPLATE, &[]).unwrap();
        assert_eq!(wiring.topic_prefix, "devices");
        let names: Vec<&str> = wiring.rules.iter().map(|rule| rule.name.as_str()).collect();
        for name in [
            "StatusRule",
            "CommandsRule",
            "TelemetryRule",
            "TextTelemetryRule",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        let telemetry = wiring
            .rules
            .iter()
            .find(|rule| rule.name == "TelemetryRule")
            .unwrap();
        assert_eq!(telemetry.query.topic_filter, "devices/+/telemetry");
        assert_eq!(telemetry.actions.len(), 3);
        for action in &telemetry.actions {
            let consumer = match action {
                Action::Sqs { queue, .. } => wiring.consumer_of(queue).unwrap().0,
                Action::Kinesis { stream, .. } => wiring.consumer_of(stream).unwrap().0,
                Action::Lambda { .. } => panic!("TelemetryRule has no Lambda action"),
            };
            assert!(
                [
                    "telemetry-metrics",
                    "telemetry-warehouse",
                    "telemetry-windows"
                ]
                .contains(&consumer.binary.as_str()),
                "{}",
                consumer.binary
            );
        }
        let (windows, source) = wiring.consumer_of("TelemetryStream").unwrap();
        assert_eq!(windows.binary, "telemetry-windows");
        assert!(matches!(
            source,
            EventSource::Kinesis {
                tumbling_window_seconds: Some(300),
                batch_size: 1000,
                ..
            }
        ));
        let (warehouse, source) = wiring.consumer_of("WarehouseQueue").unwrap();
        assert_eq!(warehouse.binary, "telemetry-warehouse");
        assert!(matches!(
            source,
            EventSource::Sqs {
                max_receive_count: 5,
                batch_size: 1000,
                ..
            }
        ));
        let commands = &wiring.functions["DeviceCommandsFunction"];
        assert!(
            commands.environment["PIPELINE_CONFIG_TOML"].contains("from = \"devices/+/telemetry\"")
        );
        assert_eq!(commands.environment["COMMAND_MEMORY_SHADOW"], "commands");
        assert!(
            !commands.environment.contains_key("DEAD_LETTER_URL"),
            "a bucket has no local value"
        );
        assert_eq!(
            wiring.functions["TelemetryWindowsFunction"].environment["WINDOW_SECONDS"],
            "60"
        );
    }

    /// The template's parameters change the wiring as they change what
    /// deploys.
    #[test]
    fn transport_and_ingest_path_parameters_rewire_the_rules() {
        let set = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let rule = |wiring: &Wiring, name: &str| {
            wiring.rules.iter().find(|rule| rule.name == name).cloned()
        };
        let kinds = |rule: &TopicRule| -> Vec<String> {
            rule.actions
                .iter()
                .map(|action| match action {
                    Action::Lambda { function } => format!("Lambda {function}"),
                    Action::Sqs { queue, .. } => format!("Sqs {queue}"),
                    Action::Kinesis { stream, .. } => format!("Kinesis {stream}"),
                })
                .collect()
        };

        let kinesis = load(TEMPLATE, &set(&[("Transport", "kinesis")])).unwrap();
        for name in ["TelemetryRule", "TextTelemetryRule"] {
            assert_eq!(
                kinds(&rule(&kinesis, name).unwrap()),
                ["Kinesis TelemetryStream"],
                "{name}"
            );
        }
        let mut readers: Vec<&str> = kinesis
            .consumers_of("TelemetryStream")
            .iter()
            .map(|(function, _)| function.binary.as_str())
            .collect();
        readers.sort();
        assert_eq!(
            readers,
            [
                "device-commands",
                "telemetry-metrics",
                "telemetry-warehouse",
                "telemetry-windows"
            ]
        );
        assert!(rule(&kinesis, "CommandsRule").is_none());
        let (_, metrics_source) = kinesis
            .consumers_of("TelemetryStream")
            .into_iter()
            .find(|(function, _)| function.binary == "telemetry-metrics")
            .unwrap();
        assert!(matches!(
            metrics_source,
            EventSource::Kinesis {
                batch_size: 10000,
                tumbling_window_seconds: None,
                ..
            }
        ));

        let basic = load(TEMPLATE, &set(&[("IngestPath", "basic-ingest")])).unwrap();
        assert!(rule(&basic, "CommandsRule").is_none());
        assert_eq!(
            kinds(&rule(&basic, "TelemetryRule").unwrap()),
            [
                "Sqs TelemetryQueue",
                "Sqs WarehouseQueue",
                "Kinesis TelemetryStream",
                "Lambda DeviceCommandsFunction"
            ]
        );
        for (topic, rule_name) in [
            ("devices/t-1/telemetry", Some("iotpipe_telemetry")),
            ("devices/t-1/status", Some("iotpipe_status")),
            ("devices/t-1/text", Some("iotpipe_text")),
            ("devices/t-1/commands", None),
        ] {
            assert_eq!(basic.basic_ingest_rule(topic), rule_name, "{topic}");
        }
        let renamed = load(
            TEMPLATE,
            &set(&[
                ("IngestPath", "basic-ingest"),
                ("RuleNamePrefix", "plant_7"),
            ]),
        )
        .unwrap();
        assert_eq!(
            renamed.basic_ingest_rule("devices/t-1/telemetry"),
            Some("plant_7_telemetry")
        );
        let error = load(TEMPLATE, &set(&[("Transport", "mqtt")])).unwrap_err();
        assert!(
            error.contains("Transport=mqtt: not one of sqs, kinesis"),
            "{error}"
        );
    }

    #[test]
    fn a_rule_the_local_engine_cannot_run_is_refused_by_name() {
        let bad = TEMPLATE.replace(
            "SELECT *, topic() AS topic, clientid() AS client_id, timestamp() AS received_at FROM '${TopicPrefix}/+/status'",
            "SELECT *, aws_lambda('arn', *) AS x FROM '${TopicPrefix}/+/status'",
        );
        let error = load(&bad, &[]).unwrap_err();
        assert!(
            error.contains("rule StatusRule") && error.contains("aws_lambda"),
            "{error}"
        );
        let no_rules = "Resources:\n  Queue:\n    Type: AWS::SQS::Queue\n";
        assert!(load(no_rules, &[])
            .unwrap_err()
            .contains("no enabled AWS::IoT::TopicRule"));
    }
}
