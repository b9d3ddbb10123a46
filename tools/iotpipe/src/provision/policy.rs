//! The device policy, taken from `infra/template.yaml` (the document the
//! stack deploys) and resolved as CloudFormation's `!Sub` would for this
//! account: `${!iot:...}` stays the policy variable `${iot:...}`, so a
//! certificate connects only as its own thing and publishes and subscribes
//! only under its own topics.

use std::collections::BTreeMap;

use iot_rules::cloudformation;
use serde_json::{Map, Value};
use serde_yaml::Value as Yaml;

pub use iot_rules::TEMPLATE;

/// What `!Sub` may name in the device policy: the account's pseudo
/// parameters and the stack's parameter values.
pub struct Substitutions<'a> {
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub parameters: &'a BTreeMap<String, String>,
}

/// The stack's parameter values: the template's defaults, then
/// `overrides` (`TopicPrefix`, `IngestPath`, `RuleNamePrefix`, ...).
pub fn stack_parameters(
    template: &str,
    overrides: &[(String, String)],
) -> Result<BTreeMap<String, String>, String> {
    let template: Yaml = serde_yaml::from_str(template).map_err(|error| error.to_string())?;
    cloudformation::parameters(&template, overrides)
}

/// `Resources.DevicePolicy.Properties.PolicyDocument` as the stack deploys
/// it for these parameters (its `!If`s taken), resolved, as JSON.
pub fn device_policy(template: &str, names: &Substitutions) -> Result<String, String> {
    let template: Yaml = serde_yaml::from_str(template).map_err(|error| error.to_string())?;
    let template = cloudformation::resolve(&template, names.parameters)?;
    let document = &template["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"];
    if document.is_null() {
        return Err("no Resources.DevicePolicy.Properties.PolicyDocument".into());
    }
    let json = resolve(document, names)?;
    Ok(serde_json::to_string(&json).expect("JSON values serialise"))
}

fn resolve(value: &Yaml, names: &Substitutions) -> Result<Value, String> {
    Ok(match value {
        Yaml::Null => Value::Null,
        Yaml::Bool(boolean) => Value::Bool(*boolean),
        Yaml::Number(number) => serde_json::to_value(number).map_err(|error| error.to_string())?,
        Yaml::String(text) => Value::String(text.clone()),
        Yaml::Sequence(items) => Value::Array(
            items
                .iter()
                .map(|item| resolve(item, names))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(mapping) => {
            let mut object = Map::with_capacity(mapping.len());
            for (key, value) in mapping {
                let key = key
                    .as_str()
                    .ok_or_else(|| format!("a key that is not text: {key:?}"))?;
                object.insert(key.to_owned(), resolve(value, names)?);
            }
            Value::Object(object)
        }
        Yaml::Tagged(tagged) if tagged.tag == "!Sub" => match &tagged.value {
            Yaml::String(text) => Value::String(substitute(text, names)?),
            other => return Err(format!("!Sub of something other than text: {other:?}")),
        },
        Yaml::Tagged(tagged) => {
            return Err(format!(
                "{} in the device policy: only !Sub is resolved locally",
                tagged.tag
            ))
        }
    })
}

/// `!Sub`: `${AWS::Partition}`, `${AWS::Region}`, `${AWS::AccountId}`,
/// the stack's parameters; `${!x}` is the literal `${x}`.
pub fn substitute(text: &str, names: &Substitutions) -> Result<String, String> {
    cloudformation::substitute(text, |name| match name {
        "AWS::Partition" => Some(names.partition),
        "AWS::Region" => Some(names.region),
        "AWS::AccountId" => Some(names.account),
        parameter => names.parameters.get(parameter).map(String::as_str),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(parameters: &BTreeMap<String, String>) -> Substitutions<'_> {
        Substitutions {
            partition: "aws",
            region: "eu-west-1",
            account: "111122223333",
            parameters,
        }
    }

    fn parameters(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        stack_parameters(TEMPLATE, &pairs).unwrap()
    }

    #[test]
    fn the_templates_policy_resolves_with_its_policy_variables_kept() {
        assert_eq!(parameters(&[])["TopicPrefix"], "devices");
        let plant = parameters(&[("TopicPrefix", "plant")]);
        let document: Value =
            serde_json::from_str(&device_policy(TEMPLATE, &names(&plant)).unwrap()).unwrap();
        assert_eq!(document["Version"], "2012-10-17");
        let text = document.to_string();
        assert!(text.contains(
            "arn:aws:iot:eu-west-1:111122223333:client/${iot:Connection.Thing.ThingName}"
        ));
        assert!(text.contains(
            "arn:aws:iot:eu-west-1:111122223333:topic/plant/${iot:Connection.Thing.ThingName}/telemetry"
        ));
        assert!(
            !text.contains("${AWS::") && !text.contains("${!") && !text.contains("TopicPrefix")
        );
        assert!(
            !text.contains("iot:ClientId"),
            "client ids are chosen by the device"
        );
        assert!(!text.contains("$aws/rules"), "{text}");
    }

    /// With Basic Ingest the device publishes to its rules only.
    #[test]
    fn the_basic_ingest_policy_names_the_rules() {
        let basic = parameters(&[
            ("IngestPath", "basic-ingest"),
            ("RuleNamePrefix", "plant_7"),
        ]);
        let text = device_policy(TEMPLATE, &names(&basic)).unwrap();
        for kind in ["telemetry", "status", "text"] {
            assert!(
                text.contains(&format!(
                    "topic/$aws/rules/plant_7_{kind}/devices/${{iot:Connection.Thing.ThingName}}/{kind}"
                )),
                "{kind}: {text}"
            );
        }
        assert!(
            !text.contains("topic/devices/${iot:Connection.Thing.ThingName}/telemetry"),
            "{text}"
        );
    }

    #[test]
    fn substitution_errors_name_the_piece() {
        let plant = parameters(&[("TopicPrefix", "plant")]);
        let names = names(&plant);
        assert_eq!(
            substitute("a/${TopicPrefix}/${!iot:ClientId}", &names).unwrap(),
            "a/plant/${iot:ClientId}"
        );
        assert!(substitute("${Bucket}", &names)
            .unwrap_err()
            .contains("${Bucket}"));
        assert!(substitute("x${AWS::Region", &names)
            .unwrap_err()
            .contains("unclosed"));
        let template = "Resources:\n  DevicePolicy:\n    Properties:\n      PolicyDocument:\n        Resource: !GetAtt X.Arn\n";
        assert!(device_policy(template, &names)
            .unwrap_err()
            .contains("!GetAtt"));
        assert!(device_policy("Resources: {}", &names)
            .unwrap_err()
            .contains("DevicePolicy"));
    }
}
