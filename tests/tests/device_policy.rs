//! The device policy of infra/template.yaml, evaluated as AWS IoT Core
//! evaluates it (explicit allow, default deny, policy variables, the
//! `Bool` condition) against (thing, client id, action, topic) requests: a
//! device connects only as its own thing and publishes and subscribes only
//! under its own topics.

use std::collections::BTreeMap;

use e2e_tests::stack::{deployed, substituted, ACCOUNT, REGION};
use serde_yaml::Value;

/// A connection's facts the policy variables read.
struct Connection<'a> {
    /// The thing attached to the certificate, if any.
    thing: Option<&'a str>,
    client_id: &'a str,
}

struct Statement {
    effect: String,
    actions: Vec<String>,
    resources: Vec<String>,
    needs_attached_thing: bool,
}

fn list(parameters: &BTreeMap<String, String>, value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items
            .iter()
            .map(|item| substituted(item, parameters))
            .collect(),
        other => vec![substituted(other, parameters)],
    }
}

/// The device policy of a stack deployed with `overrides`.
fn device_policy_with(overrides: &[(&str, &str)]) -> (String, Vec<Statement>) {
    let (template, parameters) = deployed(overrides);
    let document = &template["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"];
    let statements = document["Statement"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|statement| {
            let condition = &statement["Condition"];
            let known = condition.is_null()
                || condition.as_mapping().unwrap().len() == 1
                    && condition["Bool"].as_mapping().map(|bool| bool.len()) == Some(1);
            assert!(
                known,
                "a condition this test does not evaluate: {condition:?}"
            );
            Statement {
                effect: statement["Effect"].as_str().unwrap().to_owned(),
                actions: list(&parameters, &statement["Action"]),
                resources: list(&parameters, &statement["Resource"]),
                needs_attached_thing: condition["Bool"]["iot:Connection.Thing.IsAttached"].as_str()
                    == Some("true"),
            }
        })
        .collect();
    (serde_yaml::to_string(document).unwrap(), statements)
}

/// The device policy of a stack with the default parameters.
fn device_policy() -> (String, Vec<Statement>) {
    device_policy_with(&[])
}

/// The resource with the connection's policy variables filled in; `None`
/// when a variable has no value (IoT then matches nothing).
fn resolve(resource: &str, connection: &Connection<'_>) -> Option<String> {
    let mut resolved = resource.replace("${iot:ClientId}", connection.client_id);
    if resolved.contains("${iot:Connection.Thing.ThingName}") {
        resolved = resolved.replace("${iot:Connection.Thing.ThingName}", connection.thing?);
    }
    assert!(
        !resolved.contains("${"),
        "a policy variable this test does not know: {resolved}"
    );
    Some(resolved)
}

/// IoT resources match with `*` and `?` wildcards.
fn matches(pattern: &str, resource: &str) -> bool {
    fn go(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| go(rest, &text[skip..])),
            Some((b'?', rest)) => !text.is_empty() && go(rest, &text[1..]),
            Some((byte, rest)) => text.first() == Some(byte) && go(rest, &text[1..]),
        }
    }
    go(pattern.as_bytes(), resource.as_bytes())
}

fn allowed(
    statements: &[Statement],
    connection: &Connection<'_>,
    action: &str,
    resource: &str,
) -> bool {
    let applies = |statement: &Statement| {
        statement
            .actions
            .iter()
            .any(|a| a == action || a == "iot:*")
            && (!statement.needs_attached_thing || connection.thing.is_some())
            && statement.resources.iter().any(|pattern| {
                resolve(pattern, connection).is_some_and(|pattern| matches(&pattern, resource))
            })
    };
    let denied = statements.iter().any(|s| s.effect == "Deny" && applies(s));
    !denied && statements.iter().any(|s| s.effect == "Allow" && applies(s))
}

fn arn(kind: &str, name: &str) -> String {
    format!("arn:aws:iot:{REGION}:{ACCOUNT}:{kind}/{name}")
}

#[test]
fn a_device_connects_only_as_its_own_thing() {
    let (_, policy) = device_policy();
    let pi1 = |client_id| Connection {
        thing: Some("pi-1"),
        client_id,
    };
    assert!(allowed(
        &policy,
        &pi1("pi-1"),
        "iot:Connect",
        &arn("client", "pi-1")
    ));
    assert!(!allowed(
        &policy,
        &pi1("pi-2"),
        "iot:Connect",
        &arn("client", "pi-2")
    ));
    assert!(!allowed(
        &policy,
        &pi1("anything"),
        "iot:Connect",
        &arn("client", "anything")
    ));
    let no_thing = Connection {
        thing: None,
        client_id: "pi-1",
    };
    assert!(!allowed(
        &policy,
        &no_thing,
        "iot:Connect",
        &arn("client", "pi-1")
    ));
}

#[test]
fn a_device_publishes_and_subscribes_only_under_its_own_topics() {
    let (document, policy) = device_policy();
    let pi1 = Connection {
        thing: Some("pi-1"),
        client_id: "pi-1",
    };
    for topic in ["telemetry", "status", "text"] {
        let own = format!("devices/pi-1/{topic}");
        assert!(
            allowed(&policy, &pi1, "iot:Publish", &arn("topic", &own)),
            "{own}"
        );
        let other = format!("devices/pi-2/{topic}");
        assert!(
            !allowed(&policy, &pi1, "iot:Publish", &arn("topic", &other)),
            "{other}"
        );
    }
    // Commands come to a device; it does not send them, to itself or others.
    assert!(!allowed(
        &policy,
        &pi1,
        "iot:Publish",
        &arn("topic", "devices/pi-1/commands")
    ));
    assert!(!allowed(
        &policy,
        &pi1,
        "iot:Publish",
        &arn("topic", "devices/pi-2/commands")
    ));
    assert!(allowed(
        &policy,
        &pi1,
        "iot:Subscribe",
        &arn("topicfilter", "devices/pi-1/commands")
    ));
    for filter in [
        "devices/pi-2/commands",
        "devices/+/commands",
        "devices/#",
        "#",
    ] {
        assert!(
            !allowed(&policy, &pi1, "iot:Subscribe", &arn("topicfilter", filter)),
            "{filter}"
        );
    }
    assert!(allowed(
        &policy,
        &pi1,
        "iot:Receive",
        &arn("topic", "devices/pi-1/commands")
    ));
    assert!(!allowed(
        &policy,
        &pi1,
        "iot:Receive",
        &arn("topic", "devices/pi-2/commands")
    ));
    // Nothing else: other services' topics, shadows, rules.
    for (action, resource) in [
        (
            "iot:Publish",
            arn("topic", "$aws/things/pi-2/shadow/update"),
        ),
        ("iot:Publish", arn("topic", "$aws/rules/anything")),
        ("iot:UpdateThingShadow", arn("thing", "pi-1")),
    ] {
        assert!(
            !allowed(&policy, &pi1, action, &resource),
            "{action} {resource}"
        );
    }
    // The client id is chosen by the device: it must not open topics.
    assert!(!document.contains("iot:ClientId"), "{document}");
    // The only wildcards are below the device's own shadow.
    let wildcards = document.matches('*').count();
    let own = document
        .matches("${!iot:Connection.Thing.ThingName}/shadow/*")
        .count();
    assert_eq!(
        wildcards, own,
        "a wildcard outside the device's own shadow: {document}"
    );
}

/// IngestPath=basic-ingest: a device publishes its telemetry, status and
/// text only to the rule that takes each, only under its own thing name,
/// and no longer through the broker's topics; commands are unchanged.
#[test]
fn with_basic_ingest_a_device_publishes_only_to_its_rules_under_its_own_name() {
    let (document, policy) = device_policy_with(&[
        ("IngestPath", "basic-ingest"),
        ("RuleNamePrefix", "plant_7"),
    ]);
    let pi1 = Connection {
        thing: Some("pi-1"),
        client_id: "pi-1",
    };
    for kind in ["telemetry", "status", "text"] {
        let own = format!("$aws/rules/plant_7_{kind}/devices/pi-1/{kind}");
        assert!(
            allowed(&policy, &pi1, "iot:Publish", &arn("topic", &own)),
            "{own}"
        );
        for refused in [
            format!("$aws/rules/plant_7_{kind}/devices/pi-2/{kind}"),
            format!("devices/pi-1/{kind}"),
            format!("$aws/rules/other_{kind}/devices/pi-1/{kind}"),
        ] {
            assert!(
                !allowed(&policy, &pi1, "iot:Publish", &arn("topic", &refused)),
                "{refused}"
            );
        }
    }
    // Not the telemetry rule with a status topic, nor the commands rule.
    for refused in [
        "$aws/rules/plant_7_telemetry/devices/pi-1/status",
        "$aws/rules/plant_7_commands/devices/pi-1/telemetry",
    ] {
        assert!(
            !allowed(&policy, &pi1, "iot:Publish", &arn("topic", refused)),
            "{refused}"
        );
    }
    assert!(allowed(
        &policy,
        &pi1,
        "iot:Subscribe",
        &arn("topicfilter", "devices/pi-1/commands")
    ));
    assert!(!document.contains("iot:ClientId"), "{document}");
}

#[test]
fn the_evaluator_matches_wildcards_as_iot_does() {
    assert!(matches(
        "topic/devices/*/telemetry",
        "topic/devices/pi-1/telemetry"
    ));
    assert!(matches("client/pi-?", "client/pi-1"));
    assert!(!matches("client/pi-?", "client/pi-10"));
    assert!(!matches(
        "topic/devices/pi-1/telemetry",
        "topic/devices/pi-1/telemetry/x"
    ));
}
