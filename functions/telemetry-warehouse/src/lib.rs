//! The warehouse function's backends and configuration: Parquet files in a
//! local directory or S3, Firehose, PostgreSQL, chosen by `WAREHOUSE_URL`.

pub mod mysql;
pub mod parquet_file;
pub mod parquet_tables;
pub mod postgres;
pub mod postgres_tls;

use std::path::PathBuf;

use telemetry_core::config::{load_pipeline_file, parse_count, SettingError};
use telemetry_core::invocation::InvocationSettings;
use telemetry_core::payload::timestamp::TimestampFormat;
use telemetry_core::warehouse::{LocalDirectory, PlausibleTimes, TableWriter};

pub const DEFAULT_WAREHOUSE_DIR: &str = "./warehouse";
pub const LAMBDA_WAREHOUSE_DIR: &str = "/tmp/warehouse";

/// Every environment variable `telemetry-warehouse` reads.
pub const WAREHOUSE_ENV_VARS: &[&str] = &[
    "PIPELINE_CONFIG",
    "PIPELINE_CONFIG_TOML",
    "WAREHOUSE_URL",
    "PUBSUB_VERIFICATION_TOKEN",
    "FIREHOSE_MAX_ATTEMPTS",
    "AWS_LAMBDA_FUNCTION_NAME",
    "WAREHOUSE_EARLIEST",
    "WAREHOUSE_MAX_AHEAD_SECONDS",
];

/// Where rows go (`WAREHOUSE_URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarehouseTarget {
    Local(PathBuf),
    S3 {
        bucket: String,
        prefix: String,
    },
    Firehose {
        stream: String,
    },
    /// The whole URL, TLS settings included (`ssl-mode`, `ssl-ca`).
    Mysql {
        url: String,
    },
    /// `url` without the TLS settings, which `tls` holds.
    Postgres {
        url: String,
        tls: postgres_tls::TlsMode,
    },
}

/// A `WAREHOUSE_URL` that names no usable destination.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseUrlError {
    #[error("has no bucket; write s3://bucket/prefix")]
    NoBucket,
    #[error("write firehose://<delivery stream name>")]
    NoStream,
    #[error(
        "use a directory, file:///path, s3://bucket/prefix, firehose://stream or postgres://..."
    )]
    UnknownScheme,
    #[error("is empty")]
    Empty,
    #[error(transparent)]
    PostgresTls(#[from] postgres_tls::TlsSettingError),
    #[error(transparent)]
    Mysql(#[from] mysql::MysqlSettingError),
}

impl WarehouseTarget {
    pub fn parse(url: &str) -> Result<Self, WarehouseUrlError> {
        let url = url.trim();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(WarehouseUrlError::NoBucket);
            }
            return Ok(WarehouseTarget::S3 {
                bucket: bucket.into(),
                prefix: prefix.trim_matches('/').into(),
            });
        }
        if let Some(stream) = url.strip_prefix("firehose://") {
            if stream.is_empty() || stream.contains('/') {
                return Err(WarehouseUrlError::NoStream);
            }
            return Ok(WarehouseTarget::Firehose {
                stream: stream.into(),
            });
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (url, tls) = postgres_tls::TlsMode::split_from(url)?;
            return Ok(WarehouseTarget::Postgres { url, tls });
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            mysql::SslMode::split_from(&url)?;
            return Ok(WarehouseTarget::Mysql { url });
        }
        if url.contains("://") && !url.starts_with("file://") {
            return Err(WarehouseUrlError::UnknownScheme);
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        if path.is_empty() {
            return Err(WarehouseUrlError::Empty);
        }
        Ok(WarehouseTarget::Local(PathBuf::from(path)))
    }
}

/// Where rows go, as a message may show it (no password).
impl std::fmt::Display for WarehouseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WarehouseTarget::Local(directory) => write!(f, "{}", directory.display()),
            WarehouseTarget::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            WarehouseTarget::Firehose { stream } => write!(f, "firehose://{stream}"),
            WarehouseTarget::Postgres { url, tls } => {
                write!(f, "{} (TLS: {:?})", redact_url(url), tls)
            }
            WarehouseTarget::Mysql { url } => write!(f, "{}", redact_url(url)),
        }
    }
}

/// Everything `telemetry-warehouse` reads from its environment.
#[derive(Debug, Clone)]
pub struct WarehouseConfig {
    pub settings: InvocationSettings,
    pub target: WarehouseTarget,
    pub firehose_max_attempts: u32,
}

impl WarehouseConfig {
    pub fn from_env() -> Result<Self, SettingError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingError> {
        let invalid = |variable: &'static str, value: &str, why: String| SettingError::Invalid {
            variable,
            value: value.to_owned(),
            why,
        };
        let file = load_pipeline_file(&lookup)?;
        let in_lambda = lookup("AWS_LAMBDA_FUNCTION_NAME").is_some();
        let target = match lookup("WAREHOUSE_URL").filter(|u| !u.is_empty()) {
            Some(url) => WarehouseTarget::parse(&url)
                .map_err(|why| invalid("WAREHOUSE_URL", &redact_url(&url), why.to_string()))?,
            None if in_lambda => WarehouseTarget::Local(PathBuf::from(LAMBDA_WAREHOUSE_DIR)),
            None => WarehouseTarget::Local(PathBuf::from(DEFAULT_WAREHOUSE_DIR)),
        };
        let firehose_max_attempts = parse_count(&lookup, "FIREHOSE_MAX_ATTEMPTS", 4, 10)?;
        let mut plausible_times = PlausibleTimes::default();
        if let Some(text) = lookup("WAREHOUSE_EARLIEST").filter(|t| !t.is_empty()) {
            plausible_times.earliest_ms =
                TimestampFormat::Auto.from_text(&text).ok_or_else(|| {
                    invalid(
                        "WAREHOUSE_EARLIEST",
                        &text,
                        "expected a date such as 2000-01-01 or 2000-01-01T00:00:00Z".into(),
                    )
                })?;
        }
        if lookup("WAREHOUSE_MAX_AHEAD_SECONDS").is_some() {
            let seconds =
                parse_count(&lookup, "WAREHOUSE_MAX_AHEAD_SECONDS", 86_400, 366 * 86_400)?;
            plausible_times.max_ahead_ms = i64::from(seconds) * 1000;
        }
        Ok(WarehouseConfig {
            settings: InvocationSettings {
                verification_token: lookup("PUBSUB_VERIFICATION_TOKEN").filter(|t| !t.is_empty()),
                plausible_times,
                ..file.into()
            },
            target,
            firehose_max_attempts,
        })
    }
}

/// A database URL with its user and password hidden, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The credentials are in the authority, before the path and query.
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://…@{host}{tail}"),
        None => url.to_owned(),
    }
}

/// Builds the writer for a target, once per cold start. Fails only on
/// what a target needs from outside its URL (a PostgreSQL root
/// certificate file), naming it.
pub async fn build_writer(
    target: &WarehouseTarget,
    firehose_max_attempts: u32,
) -> Result<Box<dyn TableWriter>, SettingError> {
    Ok(match target {
        WarehouseTarget::Local(directory) => {
            if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
                tracing::warn!(directory = %directory.display(), "rows go to the sandbox's local disk; set WAREHOUSE_URL");
            }
            Box::new(parquet_tables::ParquetTables {
                store: LocalDirectory {
                    root: directory.clone(),
                },
            })
        }
        WarehouseTarget::S3 { bucket, prefix } => {
            let sdk = telemetry_aws::load_sdk_config().await;
            Box::new(parquet_tables::ParquetTables {
                store: telemetry_aws::s3::S3Objects::new(&sdk, bucket, prefix),
            })
        }
        WarehouseTarget::Firehose { stream } => {
            let sdk = telemetry_aws::load_sdk_config().await;
            Box::new(telemetry_aws::firehose::FirehoseTables::new(
                &sdk,
                stream,
                firehose_max_attempts,
            ))
        }
        WarehouseTarget::Mysql { url } => Box::new(mysql::MysqlTables::from_url(url).map_err(
            |why| SettingError::Invalid {
                variable: "WAREHOUSE_URL",
                value: redact_url(url),
                why: why.to_string(),
            },
        )?),
        WarehouseTarget::Postgres { url, tls } => {
            Box::new(postgres::PostgresTables::new(url, tls).map_err(|why| {
                SettingError::Invalid {
                    variable: "WAREHOUSE_URL",
                    value: redact_url(url),
                    why: why.to_string(),
                }
            })?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<WarehouseConfig, SettingError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WarehouseConfig::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn targets_parse_from_urls() {
        assert_eq!(
            config(&[]).unwrap().target,
            WarehouseTarget::Local(DEFAULT_WAREHOUSE_DIR.into())
        );
        let cases = [
            (
                "s3://b/p/",
                WarehouseTarget::S3 {
                    bucket: "b".into(),
                    prefix: "p".into(),
                },
            ),
            (
                "firehose://rows",
                WarehouseTarget::Firehose {
                    stream: "rows".into(),
                },
            ),
            (
                "postgres://u@127.0.0.1/db?sslmode=require",
                WarehouseTarget::Postgres {
                    url: "postgres://u@127.0.0.1/db".into(),
                    tls: postgres_tls::TlsMode::Require,
                },
            ),
            ("file:///data/wh", WarehouseTarget::Local("/data/wh".into())),
        ];
        for (url, target) in cases {
            assert_eq!(config(&[("WAREHOUSE_URL", url)]).unwrap().target, target);
        }
        let error = config(&[("WAREHOUSE_URL", "bigquery://x")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("WAREHOUSE_URL") && error.contains("bigquery://x"),
            "{error}"
        );
    }

    #[test]
    fn the_plausible_times_are_settings() {
        let defaults = config(&[]).unwrap().settings.plausible_times;
        assert_eq!(defaults, PlausibleTimes::default());
        let set = config(&[
            ("WAREHOUSE_EARLIEST", "2020-01-01T00:00:00Z"),
            ("WAREHOUSE_MAX_AHEAD_SECONDS", "3600"),
        ])
        .unwrap()
        .settings
        .plausible_times;
        assert_eq!(set.earliest_ms, 1_577_836_800_000);
        assert_eq!(set.max_ahead_ms, 3_600_000);
        let error = config(&[("WAREHOUSE_EARLIEST", "last year")])
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("WAREHOUSE_EARLIEST") && error.contains("last year"),
            "{error}"
        );
    }

    #[test]
    fn reads_exactly_the_documented_variables() {
        let asked = std::cell::RefCell::new(Vec::new());
        WarehouseConfig::from_lookup(|name| {
            asked.borrow_mut().push(name.to_owned());
            None
        })
        .unwrap();
        let mut asked = asked.into_inner();
        asked.sort();
        asked.dedup();
        let mut documented: Vec<String> =
            WAREHOUSE_ENV_VARS.iter().map(|v| v.to_string()).collect();
        documented.sort();
        assert_eq!(asked, documented);
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact_url("postgres://iot:s3cr%40t@db:5432/x"),
            "postgres://…@db:5432/x"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
        assert_eq!(
            redact_url("postgres://iot:pw@db/x?application_name=a@b"),
            "postgres://…@db/x?application_name=a@b"
        );
    }
}
