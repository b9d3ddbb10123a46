//! Configuration from the environment, read once per cold start.

pub mod pipeline_file;

use std::path::PathBuf;

use crate::config::pipeline_file::{PipelineFile, PipelineFileError};
use crate::invocation::InvocationSettings;
use crate::reading::validate::validate_namespace;
use crate::window::{Outputs, WindowSettings};

pub const DEFAULT_NAMESPACE: &str = "IoT/Telemetry";
pub const DEFAULT_DEAD_LETTER_DIR: &str = "./dead-letters";
/// Lambda's only writable directory.
pub const LAMBDA_DEAD_LETTER_DIR: &str = "/tmp/dead-letters";

/// Every environment variable `telemetry-metrics` reads (the infrastructure
/// test checks the template sets no other).
pub const METRICS_ENV_VARS: &[&str] = &[
    "PIPELINE_CONFIG",
    "PIPELINE_CONFIG_TOML",
    "METRICS_NAMESPACE",
    "METRICS_SINK",
    "AWS_LAMBDA_FUNCTION_NAME",
    "DEAD_LETTER_URL",
    "METRICS_HIGH_RESOLUTION",
    "CLOUDWATCH_MAX_ATTEMPTS",
    "PUBSUB_VERIFICATION_TOKEN",
];

/// Which metrics backend to use (`METRICS_SINK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsSinkKind {
    /// Embedded Metric Format on stdout: no API call.
    Emf,
    /// `PutMetricData`.
    CloudWatch,
}

/// Where dead letters go (`DEAD_LETTER_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterTarget {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// A `DEAD_LETTER_URL` that names no usable destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadLetterUrlError {
    #[error("DEAD_LETTER_URL {0:?} has no bucket; write s3://bucket/prefix")]
    NoBucket(String),
    #[error("DEAD_LETTER_URL {0:?} is not supported; use a directory path, file:///path or s3://bucket/prefix")]
    Unsupported(String),
}

impl DeadLetterTarget {
    pub fn parse(url: &str) -> Result<Self, DeadLetterUrlError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(DeadLetterUrlError::NoBucket(url.to_owned()));
            }
            return Ok(DeadLetterTarget::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.is_empty() || url.contains("://") && !url.starts_with("file://") {
            return Err(DeadLetterUrlError::Unsupported(url.to_owned()));
        }
        Ok(DeadLetterTarget::Local(PathBuf::from(path)))
    }
}

/// Everything `telemetry-metrics` reads from its environment.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub namespace: String,
    pub sink: MetricsSinkKind,
    pub dead_letters: DeadLetterTarget,
    pub settings: InvocationSettings,
    /// Attempts per `PutMetricData` call (throttling and 5xx are retried).
    pub max_attempts: u32,
}

/// A setting is wrong; the message says which variable and what to write.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("{variable}={value:?}: {why}")]
    Invalid {
        variable: &'static str,
        value: String,
        why: String,
    },
    #[error(transparent)]
    PipelineFile(#[from] PipelineFileError),
}

impl MetricsConfig {
    pub fn from_env() -> Result<Self, SettingError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a test's map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let invalid = |variable: &'static str, value: &str, why: String| SettingError::Invalid {
            variable,
            value: value.to_owned(),
            why,
        };
        let file = load_pipeline_file(&lookup)?;
        let namespace = metrics_namespace(&lookup, &file)?;
        let sink = match lookup("METRICS_SINK")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "" | "emf" => MetricsSinkKind::Emf,
            "cloudwatch" | "api" => MetricsSinkKind::CloudWatch,
            other => {
                return Err(invalid(
                    "METRICS_SINK",
                    other,
                    "expected \"emf\" or \"cloudwatch\"".into(),
                ))
            }
        };
        let dead_letters = dead_letter_target(&lookup)?;
        let high_resolution = parse_bool(&lookup, "METRICS_HIGH_RESOLUTION")?;
        let max_attempts = parse_count(&lookup, "CLOUDWATCH_MAX_ATTEMPTS", 5, 20)?;
        Ok(MetricsConfig {
            namespace,
            sink,
            dead_letters,
            settings: InvocationSettings {
                verification_token: lookup("PUBSUB_VERIFICATION_TOKEN").filter(|t| !t.is_empty()),
                high_resolution,
                ..file.into()
            },
            max_attempts,
        })
    }
}

/// The variables of the windows function's own settings (it also reads
/// the metrics function's and the warehouse function's).
pub const WINDOW_ENV_VARS: &[&str] = &[
    "WINDOW_SECONDS",
    "ALLOWED_LATENESS_SECONDS",
    "WINDOW_STATE_BUDGET_BYTES",
    "WINDOW_OUTPUTS",
];

/// How `telemetry-windows` cuts, closes and emits its aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowsConfig {
    pub window: WindowSettings,
    pub outputs: Outputs,
}

impl WindowsConfig {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let defaults = WindowSettings::default();
        let bucket_seconds = parse_count(&lookup, "WINDOW_SECONDS", 60, 86_400)?;
        // Zero lateness is a valid choice: buckets close with the first
        // reading past them.
        let lateness_seconds = match lookup("ALLOWED_LATENESS_SECONDS").filter(|v| !v.is_empty()) {
            Some(text) if text.trim() == "0" => 0,
            Some(_) => parse_count(&lookup, "ALLOWED_LATENESS_SECONDS", 10, 86_400)?,
            None => (defaults.allowed_lateness_ms / 1000) as u32,
        };
        let budget = parse_count(
            &lookup,
            "WINDOW_STATE_BUDGET_BYTES",
            defaults.state_budget_bytes as u32,
            1_000_000,
        )?;
        let outputs_text = lookup("WINDOW_OUTPUTS")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "metrics,warehouse".into());
        let mut outputs = 0;
        for name in outputs_text.split(',').map(str::trim) {
            outputs |= match name.to_ascii_lowercase().as_str() {
                "metrics" => Outputs::METRICS,
                "warehouse" | "table" => Outputs::TABLE,
                _ => {
                    return Err(SettingError::Invalid {
                        variable: "WINDOW_OUTPUTS",
                        value: outputs_text.clone(),
                        why: format!("unknown output {name:?}; expected \"metrics\", \"warehouse\" or both, comma-separated"),
                    })
                }
            };
        }
        Ok(WindowsConfig {
            window: WindowSettings {
                bucket_ms: i64::from(bucket_seconds) * 1000,
                allowed_lateness_ms: i64::from(lateness_seconds) * 1000,
                state_budget_bytes: budget as usize,
            },
            outputs: Outputs(outputs),
        })
    }
}

/// Every environment variable `device-commands` reads.
pub const COMMANDS_ENV_VARS: &[&str] = &[
    "PIPELINE_CONFIG",
    "PIPELINE_CONFIG_TOML",
    "METRICS_NAMESPACE",
    "AWS_LAMBDA_FUNCTION_NAME",
    "DEAD_LETTER_URL",
    "PUBSUB_VERIFICATION_TOKEN",
    "COMMAND_MEMORY_SHADOW",
];

/// Everything `device-commands` reads from its environment.
#[derive(Debug, Clone)]
pub struct CommandsConfig {
    /// Where its own counts go: `<namespace>/Pipeline`.
    pub namespace: String,
    pub dead_letters: DeadLetterTarget,
    /// The named shadow that keeps the last command each rule sent a
    /// device (`COMMAND_MEMORY_SHADOW`, default `commands`).
    pub memory_shadow: String,
    pub settings: InvocationSettings,
}

impl CommandsConfig {
    pub fn from_env() -> Result<Self, SettingError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let file = load_pipeline_file(&lookup)?;
        let namespace = metrics_namespace(&lookup, &file)?;
        let memory_shadow = lookup("COMMAND_MEMORY_SHADOW")
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "commands".to_owned());
        // Named shadows: letters, digits, and - _ : (64 at most).
        let valid = memory_shadow.len() <= 64
            && memory_shadow
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':'));
        if !valid {
            return Err(SettingError::Invalid {
                variable: "COMMAND_MEMORY_SHADOW",
                value: memory_shadow,
                why: "a shadow name is at most 64 letters, digits, '-', '_' or ':'".into(),
            });
        }
        let dead_letters = dead_letter_target(&lookup)?;
        Ok(CommandsConfig {
            namespace,
            dead_letters,
            memory_shadow,
            settings: InvocationSettings {
                verification_token: lookup("PUBSUB_VERIFICATION_TOKEN").filter(|t| !t.is_empty()),
                ..file.into()
            },
        })
    }
}

/// `DEAD_LETTER_URL`, or the local default (`/tmp` in Lambda).
fn dead_letter_target(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<DeadLetterTarget, SettingError> {
    let in_lambda = lookup("AWS_LAMBDA_FUNCTION_NAME").is_some();
    Ok(match lookup("DEAD_LETTER_URL").filter(|u| !u.is_empty()) {
        Some(url) => DeadLetterTarget::parse(&url).map_err(|why| SettingError::Invalid {
            variable: "DEAD_LETTER_URL",
            value: url.clone(),
            why: why.to_string(),
        })?,
        None if in_lambda => DeadLetterTarget::Local(PathBuf::from(LAMBDA_DEAD_LETTER_DIR)),
        None => DeadLetterTarget::Local(PathBuf::from(DEFAULT_DEAD_LETTER_DIR)),
    })
}

/// The CloudWatch namespace: `METRICS_NAMESPACE`, else the pipeline
/// file's, else the default; checked here, so a bad one stops the cold
/// start instead of every `PutMetricData`.
fn metrics_namespace(
    lookup: &impl Fn(&str) -> Option<String>,
    file: &PipelineFile,
) -> Result<String, SettingError> {
    let namespace = lookup("METRICS_NAMESPACE")
        .filter(|n| !n.is_empty())
        .or_else(|| file.namespace.clone())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    match validate_namespace(&namespace) {
        Ok(()) => Ok(namespace),
        Err(why) => Err(SettingError::Invalid {
            variable: "METRICS_NAMESPACE",
            why: why.to_string(),
            value: namespace,
        }),
    }
}

/// The pipeline file: the one `PIPELINE_CONFIG` names, or its text in
/// `PIPELINE_CONFIG_TOML` (for deployments that ship no file, such as the
/// SAM template's), or none.
pub fn load_pipeline_file(
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<PipelineFile, SettingError> {
    let path = lookup("PIPELINE_CONFIG").filter(|p| !p.is_empty());
    let text = lookup("PIPELINE_CONFIG_TOML").filter(|t| !t.trim().is_empty());
    match (path, text) {
        (Some(path), Some(_)) => Err(SettingError::Invalid {
            variable: "PIPELINE_CONFIG_TOML",
            value: "(set)".into(),
            why: format!("PIPELINE_CONFIG={path:?} is set too; give the pipeline file one way"),
        }),
        (Some(path), None) => Ok(PipelineFile::load(std::path::Path::new(&path))?),
        (None, Some(text)) => Ok(PipelineFile::parse(&text)?),
        (None, None) => Ok(PipelineFile::default()),
    }
}

/// A whole number from 1 to `max`, `default` when unset.
pub fn parse_count(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: u32,
    max: u32,
) -> Result<u32, SettingError> {
    match lookup(variable).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| SettingError::Invalid {
                variable,
                value: text.clone(),
                why: format!("expected a whole number from 1 to {max}"),
            }),
    }
}

fn parse_bool(
    lookup: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
) -> Result<bool, SettingError> {
    match lookup(variable)
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "false" | "0" | "no" => Ok(false),
        "true" | "1" | "yes" => Ok(true),
        other => Err(SettingError::Invalid {
            variable,
            value: other.to_owned(),
            why: "expected true or false".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<MetricsConfig, SettingError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        MetricsConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_need_no_settings() {
        let config = config(&[]).unwrap();
        assert_eq!(config.namespace, DEFAULT_NAMESPACE);
        assert_eq!(config.sink, MetricsSinkKind::Emf);
        assert_eq!(
            config.dead_letters,
            DeadLetterTarget::Local(DEFAULT_DEAD_LETTER_DIR.into())
        );
    }

    #[test]
    fn reads_every_setting() {
        let config = config(&[
            ("METRICS_NAMESPACE", "Farm"),
            ("METRICS_SINK", "cloudwatch"),
            ("DEAD_LETTER_URL", "s3://bucket/dead/letters/"),
            ("PUBSUB_VERIFICATION_TOKEN", "s3cret"),
            ("METRICS_HIGH_RESOLUTION", "true"),
            ("CLOUDWATCH_MAX_ATTEMPTS", "3"),
        ])
        .unwrap();
        assert_eq!(config.namespace, "Farm");
        assert_eq!(config.sink, MetricsSinkKind::CloudWatch);
        assert_eq!(
            config.dead_letters,
            DeadLetterTarget::S3 {
                bucket: "bucket".into(),
                prefix: "dead/letters".into()
            }
        );
        assert_eq!(
            config.settings.verification_token.as_deref(),
            Some("s3cret")
        );
        assert!(config.settings.high_resolution);
        assert_eq!(config.max_attempts, 3);
    }

    #[test]
    fn errors_name_the_variable_and_value() {
        for (variable, value) in [
            ("METRICS_SINK", "statsd"),
            ("METRICS_NAMESPACE", "AWS/Mine"),
            ("DEAD_LETTER_URL", "gs://bucket"),
            ("METRICS_HIGH_RESOLUTION", "maybe"),
            ("CLOUDWATCH_MAX_ATTEMPTS", "0"),
            ("PIPELINE_CONFIG", "/does/not/exist.toml"),
        ] {
            let error = config(&[(variable, value)]).unwrap_err().to_string();
            assert!(
                error.contains(variable) && error.contains(value.trim_start_matches('/')),
                "{error}"
            );
        }
    }

    /// What `build` returns from an empty environment, and the variables
    /// it asked for (sorted, once each).
    fn asking<T>(build: impl FnOnce(&dyn Fn(&str) -> Option<String>) -> T) -> (T, Vec<String>) {
        let asked = std::cell::RefCell::new(Vec::new());
        let built = build(&|name| {
            asked.borrow_mut().push(name.to_owned());
            None
        });
        let mut asked = asked.into_inner();
        asked.sort();
        asked.dedup();
        (built, asked)
    }

    fn sorted(variables: &[&str]) -> Vec<String> {
        let mut sorted: Vec<String> = variables.iter().map(|v| v.to_string()).collect();
        sorted.sort();
        sorted
    }

    #[test]
    fn reads_exactly_the_documented_variables() {
        let (config, asked) = asking(|lookup| MetricsConfig::from_lookup(lookup));
        config.unwrap();
        assert_eq!(asked, sorted(METRICS_ENV_VARS));
    }

    #[test]
    fn the_window_settings_read_exactly_their_variables_and_name_a_bad_one() {
        let (config, asked) = asking(|lookup| WindowsConfig::from_lookup(lookup));
        let config = config.unwrap();
        assert_eq!(config.window, WindowSettings::default());
        assert_eq!(config.outputs, Outputs(Outputs::METRICS | Outputs::TABLE));
        assert_eq!(asked, sorted(WINDOW_ENV_VARS));
        let lookup = |name: &str| match name {
            "WINDOW_SECONDS" => Some("300".to_owned()),
            "ALLOWED_LATENESS_SECONDS" => Some("0".to_owned()),
            "WINDOW_OUTPUTS" => Some("warehouse".to_owned()),
            _ => None,
        };
        let config = WindowsConfig::from_lookup(lookup).unwrap();
        assert_eq!(
            (config.window.bucket_ms, config.window.allowed_lateness_ms),
            (300_000, 0)
        );
        assert_eq!(config.outputs, Outputs(Outputs::TABLE));
        let lookup = |name: &str| (name == "WINDOW_OUTPUTS").then(|| "metrics,kafka".to_owned());
        let error = WindowsConfig::from_lookup(lookup).unwrap_err().to_string();
        assert!(
            error.contains("WINDOW_OUTPUTS") && error.contains("kafka"),
            "{error}"
        );
        let lookup = |name: &str| (name == "WINDOW_SECONDS").then(|| "-1".to_owned());
        let error = WindowsConfig::from_lookup(lookup).unwrap_err().to_string();
        assert!(
            error.contains("WINDOW_SECONDS") && error.contains("-1"),
            "{error}"
        );
    }

    #[test]
    fn the_commands_function_reads_exactly_its_documented_variables() {
        let (config, asked) = asking(|lookup| CommandsConfig::from_lookup(lookup));
        assert_eq!(config.unwrap().memory_shadow, "commands");
        assert_eq!(asked, sorted(COMMANDS_ENV_VARS));
        let lookup = |name: &str| (name == "COMMAND_MEMORY_SHADOW").then(|| "no spaces".to_owned());
        let error = CommandsConfig::from_lookup(lookup).unwrap_err().to_string();
        assert!(
            error.contains("COMMAND_MEMORY_SHADOW") && error.contains("no spaces"),
            "{error}"
        );
    }

    #[test]
    fn the_pipeline_file_can_come_as_text() {
        let text = "[[command]]\nname = \"n\"\nwhen = \"light < 300\"\ntopic = \"{device}/c\"\npayload = { on = true }\n";
        let config = config(&[("PIPELINE_CONFIG_TOML", text)]).unwrap();
        assert_eq!(config.settings.commands.len(), 1);
        let error = config_of(&[
            ("PIPELINE_CONFIG_TOML", text),
            ("PIPELINE_CONFIG", "/x.toml"),
        ]);
        assert!(
            error.contains("PIPELINE_CONFIG_TOML") && error.contains("/x.toml"),
            "{error}"
        );
        let error = config_of(&[("PIPELINE_CONFIG_TOML", "[[command]]\nname = 3\n")]);
        assert!(error.contains("pipeline config"), "{error}");
    }

    fn config_of(pairs: &[(&str, &str)]) -> String {
        config(pairs).unwrap_err().to_string()
    }

    #[test]
    fn in_lambda_dead_letters_default_to_tmp() {
        let config = config(&[("AWS_LAMBDA_FUNCTION_NAME", "f")]).unwrap();
        assert_eq!(
            config.dead_letters,
            DeadLetterTarget::Local(LAMBDA_DEAD_LETTER_DIR.into())
        );
    }
}
