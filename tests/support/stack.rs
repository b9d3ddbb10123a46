//! `infra/template.yaml` as a stack deploys it, for the tests that read it:
//! the conditions taken for chosen parameters (by `iot_rules`), and `!Sub`
//! text filled in for a fixed account, written out here independently of
//! the resolver iotpipe uses.

use std::collections::BTreeMap;

use serde_yaml::Value;

use crate::repo_root;

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";

/// The template as written.
pub fn template_yaml() -> Value {
    let text = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    serde_yaml::from_str(&text).expect("template is YAML")
}

/// The template as it deploys with `overrides` over its parameter
/// defaults, and the parameter values.
pub fn deployed(overrides: &[(&str, &str)]) -> (Value, BTreeMap<String, String>) {
    let template = template_yaml();
    let overrides: Vec<(String, String)> = overrides
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let parameters = iot_rules::cloudformation::parameters(&template, &overrides).unwrap();
    let resolved = iot_rules::cloudformation::resolve(&template, &parameters).unwrap();
    (resolved, parameters)
}

/// `!Sub` (or plain) text as CloudFormation resolves it for the stack's
/// parameters in [`ACCOUNT`] and [`REGION`]: `${!x}` is the literal `${x}`
/// that IoT's policy variables need. Anything that is not text (an absent
/// key, `!GetAtt`) is empty.
pub fn substituted(value: &Value, parameters: &BTreeMap<String, String>) -> String {
    let text = match value {
        Value::Tagged(tagged) => &tagged.value,
        other => other,
    };
    let mut text = text
        .as_str()
        .unwrap_or_default()
        .replace("${AWS::Partition}", "aws")
        .replace("${AWS::Region}", REGION)
        .replace("${AWS::AccountId}", ACCOUNT);
    for (name, value) in parameters {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    text.replace("${!", "${")
}
