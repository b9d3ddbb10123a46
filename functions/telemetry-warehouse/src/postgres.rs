//! PostgreSQL backend: tables created if missing, each table's rows of an
//! invocation inserted by one statement (`INSERT ... SELECT FROM UNNEST`),
//! idempotent on (message_id, message_row) so redeliveries add nothing.
//! Identifiers are validated names and always quoted; values only ever
//! travel as bind parameters.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use telemetry_core::outcome::{error_chain, FailureKind};
use telemetry_core::warehouse::tables::{
    Cell, ColumnType, Schema, TableRows, MESSAGE_ID_COLUMN, MESSAGE_ROW_COLUMN,
};
use telemetry_core::warehouse::{TableWriteError, TableWriter};
use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config};

use crate::postgres_tls::{TlsMode, TlsSettingError};
use crate::redact_url;

pub struct PostgresTables {
    config: Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    /// Where the URL points, without the password, for messages.
    display: String,
    client: Mutex<Option<Client>>,
    created: Mutex<HashSet<String>>,
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn sql_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::String => "text",
        ColumnType::Json => "jsonb",
        ColumnType::Integer => "bigint",
        ColumnType::Float => "double precision",
        ColumnType::Boolean => "boolean",
        ColumnType::Timestamp => "timestamptz",
    }
}

/// The array type a column travels as (JSON goes as text and is cast).
fn array_type(kind: ColumnType) -> &'static str {
    match kind {
        ColumnType::String | ColumnType::Json => "text[]",
        ColumnType::Integer => "bigint[]",
        ColumnType::Float => "float8[]",
        ColumnType::Boolean => "bool[]",
        ColumnType::Timestamp => "timestamptz[]",
    }
}

pub fn create_table_sql(schema: &Schema) -> String {
    let columns: Vec<String> = schema
        .columns
        .iter()
        .map(|(name, kind)| {
            let not_null = if name == MESSAGE_ID_COLUMN || name == MESSAGE_ROW_COLUMN {
                " NOT NULL"
            } else {
                ""
            };
            format!("{} {}{not_null}", quote(name), sql_type(*kind))
        })
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}, {}))",
        quote(&schema.table),
        columns.join(", "),
        quote(MESSAGE_ID_COLUMN),
        quote(MESSAGE_ROW_COLUMN)
    )
}

pub fn insert_sql(schema: &Schema) -> String {
    let names: Vec<String> = schema.columns.iter().map(|(name, _)| quote(name)).collect();
    let arrays: Vec<String> = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| format!("${}::{}", i + 1, array_type(*kind)))
        .collect();
    let aliases: Vec<String> = (0..schema.columns.len()).map(|i| format!("c{i}")).collect();
    let selected: Vec<String> = schema
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| match kind {
            ColumnType::Json => format!("c{i}::jsonb"),
            _ => format!("c{i}"),
        })
        .collect();
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM UNNEST({}) AS u({}) ON CONFLICT ({}, {}) DO NOTHING",
        quote(&schema.table),
        names.join(", "),
        selected.join(", "),
        arrays.join(", "),
        aliases.join(", "),
        quote(MESSAGE_ID_COLUMN),
        quote(MESSAGE_ROW_COLUMN)
    )
}

/// One column's values as a bind parameter.
fn column_parameter(
    rows: &TableRows,
    index: usize,
    kind: ColumnType,
) -> Box<dyn ToSql + Sync + Send> {
    let cells = rows.rows.iter().map(|row| &row[index]);
    match kind {
        ColumnType::String | ColumnType::Json => Box::new(
            cells
                .map(|cell| match cell {
                    Cell::Text(text) => Some(text.clone()),
                    _ => None,
                })
                .collect::<Vec<Option<String>>>(),
        ),
        ColumnType::Integer => Box::new(
            cells
                .map(|cell| match cell {
                    Cell::Int(value) => Some(*value),
                    _ => None,
                })
                .collect::<Vec<Option<i64>>>(),
        ),
        ColumnType::Float => Box::new(
            cells
                .map(|cell| match cell {
                    Cell::Float(value) => Some(*value),
                    _ => None,
                })
                .collect::<Vec<Option<f64>>>(),
        ),
        ColumnType::Boolean => Box::new(
            cells
                .map(|cell| match cell {
                    Cell::Bool(value) => Some(*value),
                    _ => None,
                })
                .collect::<Vec<Option<bool>>>(),
        ),
        ColumnType::Timestamp => Box::new(
            cells
                .map(|cell| match cell {
                    Cell::Timestamp(millis) => Some(to_system_time(*millis)),
                    _ => None,
                })
                .collect::<Vec<Option<SystemTime>>>(),
        ),
    }
}

fn to_system_time(millis: i64) -> SystemTime {
    if millis >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(millis as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_millis(millis.unsigned_abs())
    }
}

/// A PostgreSQL URL that cannot be used, found at cold start.
#[derive(Debug, thiserror::Error)]
pub enum PostgresSettingError {
    #[error("not a PostgreSQL URL: {}", error_chain(.0))]
    Url(#[source] tokio_postgres::Error),
    #[error(transparent)]
    Tls(#[from] TlsSettingError),
}

impl PostgresTables {
    /// `url` without its TLS settings, which `tls` holds (see
    /// [`TlsMode::split_from`]). Connections are made on first use and
    /// remade after a failure; the URL and the root certificates are read
    /// now, at cold start.
    pub fn new(url: &str, tls: &TlsMode) -> Result<Self, PostgresSettingError> {
        let mut config: Config = url.parse().map_err(PostgresSettingError::Url)?;
        config.ssl_mode(tls.ssl_mode());
        Ok(PostgresTables {
            config,
            tls: tls.connector()?,
            display: redact_url(url),
            client: Mutex::new(None),
            created: Mutex::new(HashSet::new()),
        })
    }

    /// As [`PostgresTables::new`], for a URL that still carries its TLS
    /// settings (`sslmode`, `sslrootcert`).
    pub fn from_url(url: &str) -> Result<Self, PostgresSettingError> {
        let (url, tls) = TlsMode::split_from(url)?;
        Self::new(&url, &tls)
    }

    async fn client(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, tokio_postgres::Error> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(|client| client.is_closed()) {
            let (client, connection) = self.config.connect(self.tls.clone()).await?;
            tokio::spawn(async move {
                if let Err(error) = connection.await {
                    tracing::warn!(%error, "PostgreSQL connection closed");
                }
            });
            *guard = Some(client);
            self.created.lock().await.clear();
        }
        Ok(guard)
    }
}

/// Whether a statement's error may pass. Transient: anything that is not
/// the server's answer (a lost connection, a timeout) and the SQLSTATE
/// classes of a server that is busy or going away (08 connection, 40
/// rollback such as deadlock or serialization failure, 53 insufficient
/// resources, 57 operator intervention, 58 system error). Permanent: the
/// rest (22 data exception such as a NUL byte, 23 constraints, 42 syntax,
/// privileges or an incompatible table), which fail the same way again.
fn failure_kind(error: &tokio_postgres::Error) -> FailureKind {
    let Some(db_error) = error.as_db_error() else {
        return FailureKind::Transient;
    };
    match db_error.code().code().get(..2) {
        Some("08" | "40" | "53" | "57" | "58") => FailureKind::Transient,
        _ => FailureKind::Permanent,
    }
}

/// Whether the server refused a value rather than the statement.
fn refuses_a_value(error: &tokio_postgres::Error) -> bool {
    error
        .as_db_error()
        .is_some_and(|db_error| matches!(db_error.code().code().get(..2), Some("22" | "23")))
}

/// Why PostgreSQL would refuse a row whatever else is in its statement.
fn refusal(schema: &Schema, row: &[Cell]) -> Option<String> {
    row.iter()
        .zip(&schema.columns)
        .find_map(|(cell, (column, _))| match cell {
            Cell::Text(text) if text.contains('\0') => Some(format!(
                "column {column} holds a NUL byte, which PostgreSQL text cannot store"
            )),
            _ => None,
        })
}

/// Inserts the rows at `indexes` in one statement. When the statement is
/// refused for a value (SQLSTATE classes 22, data, and 23, constraints),
/// the rows are split in halves and written again, down to the rows the
/// server refuses on their own, which go to `refused`: only they are
/// dead-lettered. A refusal of the statement itself (a table of another
/// shape, a missing privilege) refuses every row without splitting; a
/// transient failure is returned as it is.
async fn insert_rows(
    client: &Client,
    rows: &TableRows,
    indexes: &[usize],
    refused: &mut Vec<(usize, String)>,
) -> Result<u64, tokio_postgres::Error> {
    if indexes.is_empty() {
        return Ok(0);
    }
    let subset;
    let statement_rows = if indexes.len() == rows.rows.len() {
        rows
    } else {
        subset = TableRows {
            schema: rows.schema.clone(),
            rows: indexes
                .iter()
                .map(|&index| rows.rows[index].clone())
                .collect(),
            messages: indexes.iter().map(|&index| rows.messages[index]).collect(),
        };
        &subset
    };
    let parameters: Vec<Box<dyn ToSql + Sync + Send>> = statement_rows
        .schema
        .columns
        .iter()
        .enumerate()
        .map(|(index, (_, kind))| column_parameter(statement_rows, index, *kind))
        .collect();
    let references: Vec<&(dyn ToSql + Sync)> = parameters
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    match client.execute(&insert_sql(&rows.schema), &references).await {
        Ok(inserted) => Ok(inserted),
        Err(error) if failure_kind(&error) == FailureKind::Transient => Err(error),
        Err(error) if indexes.len() == 1 || !refuses_a_value(&error) => {
            let why = error_chain(&error);
            refused.extend(indexes.iter().map(|&index| (index, why.clone())));
            Ok(0)
        }
        Err(_) => {
            let (first, second) = indexes.split_at(indexes.len() / 2);
            let written = Box::pin(insert_rows(client, rows, first, refused)).await?;
            Ok(written + Box::pin(insert_rows(client, rows, second, refused)).await?)
        }
    }
}

#[async_trait]
impl TableWriter for PostgresTables {
    async fn write(
        &self,
        rows: &TableRows,
        _batch_id: &str,
        _now_ms: i64,
    ) -> Result<String, TableWriteError> {
        let fail =
            |reason: String, kind| TableWriteError::all(rows, self.display.clone(), reason, kind);
        // A server that cannot be reached now may be reachable later.
        let guard = self.client().await.map_err(|error| {
            let reason = format!("cannot connect: {}", error_chain(&error));
            fail(reason, FailureKind::Transient)
        })?;
        let client = guard.as_ref().expect("connected above");
        {
            let mut created = self.created.lock().await;
            if !created.contains(&rows.schema.table) {
                client
                    .batch_execute(&create_table_sql(&rows.schema))
                    .await
                    .map_err(|error| {
                        let reason = format!("cannot create table: {}", error_chain(&error));
                        fail(reason, failure_kind(&error))
                    })?;
                created.insert(rows.schema.table.clone());
            }
        }
        // Text PostgreSQL refuses (a NUL byte) is found before the insert,
        // so one such row cannot hold back the rest of its batch.
        let mut refused: Vec<(usize, String)> = rows
            .rows
            .iter()
            .enumerate()
            .filter_map(|(index, row)| refusal(&rows.schema, row).map(|why| (index, why)))
            .collect();
        let all: Vec<usize> = (0..rows.rows.len())
            .filter(|index| !refused.iter().any(|(r, _)| r == index))
            .collect();
        let inserted = match insert_rows(client, rows, &all, &mut refused).await {
            Ok(inserted) => inserted,
            Err(error) => {
                let reason = format!("insert failed: {}", error_chain(&error));
                return Err(fail(reason, FailureKind::Transient));
            }
        };
        if !refused.is_empty() {
            return Err(TableWriteError::refused(
                rows,
                self.display.clone(),
                refused,
                inserted,
            ));
        }
        Ok(format!(
            "{} table {} ({inserted} new of {} rows)",
            self.display,
            rows.schema.table,
            rows.rows.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_quote_identifiers_and_bind_values() {
        let schema = Schema::readings();
        let create = create_table_sql(&schema);
        assert!(create
            .starts_with("CREATE TABLE IF NOT EXISTS \"readings\" (\"timestamp\" timestamptz"));
        assert!(create.ends_with("PRIMARY KEY (\"message_id\", \"message_row\"))"));
        let insert = insert_sql(&schema);
        assert!(insert.contains("UNNEST($1::timestamptz[], $2::text[]"));
        assert!(insert.contains("c5::jsonb"));
        assert!(insert.ends_with("ON CONFLICT (\"message_id\", \"message_row\") DO NOTHING"));
        assert_eq!(quote("a\"b"), "\"a\"\"b\"");
    }
}
