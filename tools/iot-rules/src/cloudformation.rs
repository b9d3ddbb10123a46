//! `infra/template.yaml` as CloudFormation would deploy it for chosen
//! parameter values: `Conditions` evaluated, each `!If` replaced by the
//! branch it takes, `!Ref AWS::NoValue` removed, and resources whose
//! `Condition` is false left out. The local pipeline, `provision` and the
//! tests read the template through this, so each parameter combination
//! (`IngestPath`, `Transport`, ...) runs as it would deploy.

use std::collections::BTreeMap;

use serde_yaml::Value as Yaml;

/// Parameter values: the template's defaults, then `overrides` (each
/// checked against the parameter's `AllowedValues`). An unknown name is an
/// error that lists the known ones.
pub fn parameters(
    template: &Yaml,
    overrides: &[(String, String)],
) -> Result<BTreeMap<String, String>, String> {
    let declared = template["Parameters"].as_mapping();
    let mut values = BTreeMap::new();
    for (name, parameter) in declared.into_iter().flatten() {
        if let (Some(name), Some(default)) = (name.as_str(), scalar_text(&parameter["Default"])) {
            values.insert(name.to_owned(), default);
        }
    }
    for (name, value) in overrides {
        let Some(parameter) = declared.and_then(|parameters| parameters.get(name.as_str())) else {
            let known: Vec<&str> = declared
                .into_iter()
                .flatten()
                .filter_map(|(name, _)| name.as_str())
                .collect();
            return Err(format!(
                "--parameter {name}: the template has no such parameter (it has {})",
                known.join(", ")
            ));
        };
        if let Some(allowed) = parameter["AllowedValues"].as_sequence() {
            let allowed: Vec<String> = allowed.iter().filter_map(scalar_text).collect();
            if !allowed.contains(value) {
                return Err(format!(
                    "--parameter {name}={value}: not one of {}",
                    allowed.join(", ")
                ));
            }
        }
        values.insert(name.clone(), value.clone());
    }
    Ok(values)
}

/// `!Sub`'s text with each `${name}` replaced by `lookup(name)` (a
/// parameter, `AWS::Region`, ...); `${!x}` is the literal `${x}`. An
/// unclosed `${` or a name `lookup` does not know is an error naming it.
pub fn substitute<'v>(
    text: &str,
    lookup: impl Fn(&str) -> Option<&'v str>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len() + 32);
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{text:?}: an unclosed ${{"))?;
        let name = &after[..end];
        match name.strip_prefix('!') {
            Some(literal) => {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            }
            None => out.push_str(
                lookup(name)
                    .ok_or_else(|| format!("{text:?}: ${{{name}}} cannot be resolved locally"))?,
            ),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `KEY=VALUE`, as `--parameter` takes it.
pub fn parse_parameter(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .filter(|(key, _)| !key.is_empty())
        .ok_or_else(|| format!("{text:?}: write NAME=VALUE, e.g. IngestPath=basic-ingest"))
}

/// The template with its conditions applied for `parameters`.
pub fn resolve(template: &Yaml, parameters: &BTreeMap<String, String>) -> Result<Yaml, String> {
    let conditions = evaluate_conditions(template, parameters)?;
    let mut resolved = template.clone();
    if let Some(resources) = resolved.get_mut("Resources").and_then(Yaml::as_mapping_mut) {
        let mut kept = serde_yaml::Mapping::new();
        for (name, resource) in std::mem::take(resources) {
            let included = match resource["Condition"].as_str() {
                Some(condition) => *conditions.get(condition).ok_or_else(|| {
                    format!("resource {name:?}: condition {condition:?} is not declared")
                })?,
                None => true,
            };
            if included {
                if let Some(resource) = apply(&resource, &conditions)? {
                    kept.insert(name, resource);
                }
            }
        }
        *resources = kept;
    }
    Ok(resolved)
}

/// Every declared condition's value.
fn evaluate_conditions(
    template: &Yaml,
    parameters: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, bool>, String> {
    let declared = template["Conditions"].as_mapping();
    let mut values = BTreeMap::new();
    for (name, _) in declared.into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        let value = condition(template, name, parameters, 0)?;
        values.insert(name.to_owned(), value);
    }
    Ok(values)
}

fn condition(
    template: &Yaml,
    name: &str,
    parameters: &BTreeMap<String, String>,
    depth: usize,
) -> Result<bool, String> {
    let body = &template["Conditions"][name];
    if body.is_null() || depth > 32 {
        return Err(format!(
            "condition {name:?} is not declared (or refers to itself)"
        ));
    }
    truth(template, body, parameters, depth + 1)
        .map_err(|error| format!("condition {name}: {error}"))
}

fn truth(
    template: &Yaml,
    value: &Yaml,
    parameters: &BTreeMap<String, String>,
    depth: usize,
) -> Result<bool, String> {
    let Yaml::Tagged(tagged) = value else {
        return Err(format!("{value:?} is not a condition function"));
    };
    let items = || tagged.value.as_sequence().cloned().unwrap_or_default();
    match tagged.tag.to_string().as_str() {
        "!Equals" => match items().as_slice() {
            [left, right] => Ok(text(left, parameters)? == text(right, parameters)?),
            _ => Err("!Equals takes two values".into()),
        },
        "!Not" => match items().as_slice() {
            [inner] => Ok(!truth(template, inner, parameters, depth)?),
            _ => Err("!Not takes one condition".into()),
        },
        "!And" => items().iter().try_fold(true, |all, inner| {
            Ok(all & truth(template, inner, parameters, depth)?)
        }),
        "!Or" => items().iter().try_fold(false, |any, inner| {
            Ok(any | truth(template, inner, parameters, depth)?)
        }),
        "!Condition" => condition(
            template,
            tagged.value.as_str().unwrap_or_default(),
            parameters,
            depth,
        ),
        other => Err(format!("{other} is not evaluated locally")),
    }
}

/// A scalar, or `!Ref` of a parameter, as text.
fn text(value: &Yaml, parameters: &BTreeMap<String, String>) -> Result<String, String> {
    match value {
        Yaml::Tagged(tagged) if tagged.tag == "!Ref" => {
            let name = tagged.value.as_str().unwrap_or_default();
            parameters
                .get(name)
                .cloned()
                .ok_or_else(|| format!("!Ref {name}: not a parameter with a value"))
        }
        other => scalar_text(other).ok_or_else(|| format!("{other:?} is not a scalar")),
    }
}

/// A YAML scalar (text, number, boolean) as text.
pub fn scalar_text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(text) => Some(text.clone()),
        Yaml::Number(number) => Some(number.to_string()),
        Yaml::Bool(boolean) => Some(boolean.to_string()),
        _ => None,
    }
}

fn is_no_value(value: &Yaml) -> bool {
    matches!(value, Yaml::Tagged(tagged)
        if tagged.tag == "!Ref" && tagged.value.as_str() == Some("AWS::NoValue"))
}

/// `value` with every `!If` taken and `AWS::NoValue` removed; `None` when
/// the value itself is removed.
fn apply(value: &Yaml, conditions: &BTreeMap<String, bool>) -> Result<Option<Yaml>, String> {
    if is_no_value(value) {
        return Ok(None);
    }
    Ok(Some(match value {
        Yaml::Tagged(tagged) if tagged.tag == "!If" => {
            let branches = tagged.value.as_sequence().map(Vec::as_slice);
            let Some([name, then, otherwise]) = branches else {
                return Err("!If takes [condition, then, else]".into());
            };
            let name = name.as_str().unwrap_or_default();
            let taken = conditions
                .get(name)
                .ok_or_else(|| format!("!If {name}: no such condition"))?;
            return apply(if *taken { then } else { otherwise }, conditions);
        }
        Yaml::Tagged(tagged) => {
            let mut tagged = tagged.clone();
            tagged.value = apply(&tagged.value, conditions)?.unwrap_or(Yaml::Null);
            Yaml::Tagged(tagged)
        }
        Yaml::Sequence(items) => {
            let mut kept = Vec::with_capacity(items.len());
            for item in items {
                kept.extend(apply(item, conditions)?);
            }
            Yaml::Sequence(kept)
        }
        Yaml::Mapping(mapping) => {
            let mut kept = serde_yaml::Mapping::with_capacity(mapping.len());
            for (key, item) in mapping {
                if let Some(item) = apply(item, conditions)? {
                    kept.insert(key.clone(), item);
                }
            }
            Yaml::Mapping(kept)
        }
        other => other.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Parameters:
  Mode: {Type: String, Default: a, AllowedValues: [a, b]}
  Count: {Type: Number, Default: 0}
Conditions:
  IsB: !Equals [!Ref Mode, b]
  IsA: !Not [!Condition IsB]
  Counted: !And [!Condition IsB, !Not [!Equals [!Ref Count, 0]]]
Resources:
  Always:
    Type: X
    Properties:
      List: [one, !If [IsB, two, !Ref AWS::NoValue], three]
      Picked: !If [IsA, {Kind: a}, {Kind: b}]
      Gone: !If [IsB, kept, !Ref AWS::NoValue]
      Sub: !Sub "${Mode}-x"
  OnlyB:
    Type: X
    Condition: IsB
  OnlyCounted:
    Type: X
    Condition: Counted
"#;

    fn resolved(overrides: &[(&str, &str)]) -> Yaml {
        let template: Yaml = serde_yaml::from_str(TEMPLATE).unwrap();
        let overrides: Vec<(String, String)> = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(&template, &parameters(&template, &overrides).unwrap()).unwrap()
    }

    #[test]
    fn conditions_pick_branches_and_resources() {
        let a = resolved(&[]);
        let properties = &a["Resources"]["Always"]["Properties"];
        assert_eq!(
            properties["List"],
            serde_yaml::from_str::<Yaml>("[one, three]").unwrap()
        );
        assert_eq!(properties["Picked"]["Kind"], "a");
        assert!(properties.get("Gone").is_none());
        assert!(a["Resources"].get("OnlyB").is_none());

        let b = resolved(&[("Mode", "b")]);
        let properties = &b["Resources"]["Always"]["Properties"];
        assert_eq!(
            properties["List"],
            serde_yaml::from_str::<Yaml>("[one, two, three]").unwrap()
        );
        assert_eq!(properties["Picked"]["Kind"], "b");
        assert_eq!(properties["Gone"], "kept");
        assert!(b["Resources"].get("OnlyB").is_some());
        assert!(b["Resources"].get("OnlyCounted").is_none());
        let counted = resolved(&[("Mode", "b"), ("Count", "2")]);
        assert!(counted["Resources"].get("OnlyCounted").is_some());
        // Other intrinsics are left for the reader.
        assert!(matches!(properties["Sub"], Yaml::Tagged(_)));
    }

    #[test]
    fn unknown_or_disallowed_parameters_are_refused_by_name() {
        let template: Yaml = serde_yaml::from_str(TEMPLATE).unwrap();
        let error = parameters(&template, &[("Mood".into(), "b".into())]).unwrap_err();
        assert!(
            error.contains("Mood") && error.contains("Mode, Count"),
            "{error}"
        );
        let error = parameters(&template, &[("Mode".into(), "c".into())]).unwrap_err();
        assert_eq!(error, "--parameter Mode=c: not one of a, b");
        assert!(parse_parameter("IngestPath").is_err());
        assert_eq!(
            parse_parameter("Transport=kinesis").unwrap(),
            ("Transport".into(), "kinesis".into())
        );
    }
}
