//! MySQL and MariaDB tables (`WAREHOUSE_URL=mysql://user:password@host:3306/db`),
//! so a pipeline such as reference 002's (`co2_emissions` in MySQL, charted
//! by Grafana) keeps its database and its dashboards.
//!
//! Tables are created if missing with MySQL types that match the declared
//! columns (`DATETIME`, `DOUBLE`, ...), or used as they are when they exist
//! with compatible columns and the unique key on (`message_id`,
//! `message_row`) that makes a redelivered batch add nothing. Rows go out in
//! multi-row `INSERT ... ON DUPLICATE KEY UPDATE` statements with bound
//! parameters, chunked under the server's `max_allowed_packet`. TLS is asked
//! for as MySQL's own clients do: `ssl-mode` (`DISABLED`, `PREFERRED` (the
//! default), `REQUIRED`, `VERIFY_CA`, `VERIFY_IDENTITY`) and `ssl-ca`.

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Params, SslOpts, Value};
use telemetry_core::outcome::{error_chain, FailureKind};
use telemetry_core::warehouse::tables::{
    Cell, ColumnType, Schema, TableRows, MESSAGE_ID_COLUMN, MESSAGE_ROW_COLUMN,
};
use telemetry_core::warehouse::{TableWriteError, TableWriter};
use tokio::sync::Mutex;

use crate::redact_url;

/// MySQL's limit on the placeholders of one prepared statement.
const MAX_PARAMETERS: usize = 65_535;

/// How the connection is protected, as `ssl-mode` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SslMode {
    Disabled,
    /// TLS when the server offers it, certificate unchecked.
    Preferred,
    /// TLS or no connection, certificate unchecked.
    Required,
    /// TLS with the certificate chain checked against `ssl-ca` (or the
    /// built-in roots), not the server's name.
    VerifyCa(Option<PathBuf>),
    /// TLS with the chain and the server's name checked.
    VerifyIdentity(Option<PathBuf>),
}

/// A `mysql://` URL that cannot be used; says what to write.
#[derive(Debug, thiserror::Error)]
pub enum MysqlSettingError {
    #[error(
        "ssl-mode {0:?} is not one of DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY"
    )]
    UnknownSslMode(String),
    #[error("ssl-ca is empty; write the path of a PEM file of the server's CA")]
    EmptySslCa,
    #[error("ssl-ca {0:?} cannot be read; package the CA's PEM file with the function")]
    UnreadableSslCa(PathBuf),
    #[error("not a MySQL URL (mysql://user:password@host:3306/database): {0}")]
    Url(#[source] mysql_async::UrlError),
}

impl SslMode {
    /// Takes `ssl-mode` and `ssl-ca` out of `url`; returns the rest (for
    /// mysql_async, which knows neither) and the mode.
    pub fn split_from(url: &str) -> Result<(String, SslMode), MysqlSettingError> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let (mut mode, mut ca) = (None, None);
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .into_owned();
            match key.replace('_', "-").to_ascii_lowercase().as_str() {
                "ssl-mode" => mode = Some(value.to_ascii_uppercase()),
                "ssl-ca" if value.is_empty() => return Err(MysqlSettingError::EmptySslCa),
                "ssl-ca" => ca = Some(PathBuf::from(value)),
                _ => kept.push(pair),
            }
        }
        let mode = match mode.as_deref() {
            None | Some("PREFERRED") => SslMode::Preferred,
            Some("DISABLED") => SslMode::Disabled,
            Some("REQUIRED") => SslMode::Required,
            Some("VERIFY_CA") => SslMode::VerifyCa(ca),
            Some("VERIFY_IDENTITY") => SslMode::VerifyIdentity(ca),
            Some(other) => return Err(MysqlSettingError::UnknownSslMode(other.to_owned())),
        };
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        Ok((rest, mode))
    }

    /// What mysql_async is told; `None` is no TLS.
    fn ssl_opts(&self) -> Option<SslOpts> {
        let unchecked = || {
            SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true)
        };
        let roots = |ca: &Option<PathBuf>| match ca {
            Some(path) => SslOpts::default()
                .with_root_certs(vec![path.clone().into()])
                .with_disable_built_in_roots(true),
            None => SslOpts::default(),
        };
        match self {
            SslMode::Disabled => None,
            SslMode::Preferred | SslMode::Required => Some(unchecked()),
            SslMode::VerifyCa(ca) => Some(roots(ca).with_danger_skip_domain_validation(true)),
            SslMode::VerifyIdentity(ca) => Some(roots(ca)),
        }
    }
}

/// Writes each table's rows of an invocation in as few statements as the
/// server's packet limit allows, on one connection kept between invocations.
pub struct MysqlTables {
    opts: Opts,
    mode: SslMode,
    display: String,
    connection: Mutex<Option<Connection>>,
}

struct Connection {
    conn: Conn,
    max_packet: usize,
    /// Tables created or checked on this connection.
    ready: HashSet<String>,
}

/// A statement failed; why, and whether it may pass.
struct Failure {
    reason: String,
    kind: FailureKind,
}

impl Failure {
    fn of(context: &str, error: &mysql_async::Error) -> Self {
        Failure {
            reason: format!("{context}: {}", error_chain(error)),
            kind: failure_kind(error),
        }
    }

    fn permanent(reason: String) -> Self {
        Failure {
            reason,
            kind: FailureKind::Permanent,
        }
    }
}

impl MysqlTables {
    /// Reads the URL and its TLS settings now, at cold start; connects on
    /// first use and again after a failure.
    pub fn from_url(url: &str) -> Result<Self, MysqlSettingError> {
        let (rest, mode) = SslMode::split_from(url)?;
        if let SslMode::VerifyCa(Some(ca)) | SslMode::VerifyIdentity(Some(ca)) = &mode {
            if std::fs::metadata(ca).is_err() {
                return Err(MysqlSettingError::UnreadableSslCa(ca.clone()));
            }
        }
        let opts = Opts::from_url(&rest).map_err(MysqlSettingError::Url)?;
        Ok(MysqlTables {
            opts,
            mode,
            display: redact_url(url),
            connection: Mutex::new(None),
        })
    }

    async fn connect(&self) -> Result<Connection, Failure> {
        let builder = OptsBuilder::from_opts(self.opts.clone())
            // DATETIME holds no zone: rows are UTC, whatever the server's is.
            .init(vec!["SET time_zone = '+00:00'"]);
        let connected = Conn::new(builder.clone().ssl_opts(self.mode.ssl_opts())).await;
        let mut conn = match connected {
            Err(mysql_async::Error::Driver(
                mysql_async::DriverError::NoClientSslFlagFromServer,
            )) if self.mode == SslMode::Preferred => {
                Conn::new(builder.ssl_opts(None::<SslOpts>)).await
            }
            other => other,
        }
        .map_err(|error| Failure::of("cannot connect", &error))?;
        let max_packet: Option<u64> = conn
            .query_first("SELECT @@max_allowed_packet")
            .await
            .map_err(|error| Failure::of("cannot read max_allowed_packet", &error))?;
        Ok(Connection {
            conn,
            max_packet: max_packet.unwrap_or(4 << 20) as usize,
            ready: HashSet::new(),
        })
    }

    async fn write_rows(
        &self,
        slot: &mut Option<Connection>,
        rows: &TableRows,
        refused: &mut Vec<(usize, String)>,
    ) -> Result<u64, Failure> {
        if slot.is_none() {
            *slot = Some(self.connect().await?);
        }
        let connection = slot.as_mut().expect("connected above");
        let schema = &rows.schema;
        if !connection.ready.contains(&schema.table) {
            prepare_table(&mut connection.conn, schema).await?;
            connection.ready.insert(schema.table.clone());
        }
        let mut written = 0;
        for chunk in chunks(rows, connection.max_packet) {
            written += insert_rows(&mut connection.conn, rows, chunk, refused).await?;
        }
        Ok(written)
    }
}

/// Inserts `rows.rows[range]` in one statement. When the server refuses a
/// value (strict mode's out of range, truncated, incorrect value, too long,
/// a NULL, a CHECK), the rows are split in halves down to the rows it
/// refuses on their own, which go to `refused` and alone are dead-lettered.
/// Other failures are returned as they are.
async fn insert_rows(
    conn: &mut Conn,
    rows: &TableRows,
    range: Range<usize>,
    refused: &mut Vec<(usize, String)>,
) -> Result<u64, Failure> {
    let statement = insert_sql(&rows.schema, range.len());
    let mut values = Vec::with_capacity(range.len() * rows.schema.columns.len());
    for row in &rows.rows[range.clone()] {
        values.extend(row.iter().map(to_value));
    }
    match conn.exec_drop(statement, Params::Positional(values)).await {
        Ok(()) => Ok(conn.affected_rows()),
        Err(error) if refuses_a_value(&error) && range.len() == 1 => {
            refused.push((range.start, error_chain(&error)));
            Ok(0)
        }
        Err(error) if refuses_a_value(&error) => {
            let middle = range.start + range.len() / 2;
            let first = Box::pin(insert_rows(conn, rows, range.start..middle, refused)).await?;
            Ok(first + Box::pin(insert_rows(conn, rows, middle..range.end, refused)).await?)
        }
        Err(error) => Err(Failure::of("insert failed", &error)),
    }
}

/// Whether the server refused a value of a row rather than the statement.
fn refuses_a_value(error: &mysql_async::Error) -> bool {
    matches!(
        error,
        mysql_async::Error::Server(server)
            if matches!(server.code, 1048 | 1264 | 1265 | 1292 | 1366 | 1406 | 1452 | 3819 | 4025)
    )
}

#[async_trait]
impl TableWriter for MysqlTables {
    async fn write(
        &self,
        rows: &TableRows,
        _batch_id: &str,
        _now_ms: i64,
    ) -> Result<String, TableWriteError> {
        let mut slot = self.connection.lock().await;
        let mut refused = Vec::new();
        match self.write_rows(&mut slot, rows, &mut refused).await {
            Ok(written) if !refused.is_empty() => Err(TableWriteError::refused(
                rows,
                self.display.clone(),
                refused,
                written,
            )),
            Ok(written) => Ok(format!(
                "{} table {} ({} rows; {written} affected)",
                self.display,
                rows.schema.table,
                rows.rows.len()
            )),
            Err(failure) => {
                if failure.kind == FailureKind::Transient {
                    // The connection may be what failed: make a new one next time.
                    *slot = None;
                }
                Err(TableWriteError::all(
                    rows,
                    self.display.clone(),
                    failure.reason,
                    failure.kind,
                ))
            }
        }
    }
}

/// Transient: no answer from the server (I/O, a closed connection) and
/// the server's "try again" errors (too many connections, shutdown, lock
/// wait timeout, deadlock, a query or connection killed, lost packets).
/// Permanent: the rest (unknown column, data too long, a bad value, a
/// missing privilege), which fail the same way again.
fn failure_kind(error: &mysql_async::Error) -> FailureKind {
    use mysql_async::{DriverError, Error};
    match error {
        Error::Io(_) => FailureKind::Transient,
        Error::Driver(DriverError::ConnectionClosed | DriverError::PoolDisconnected) => {
            FailureKind::Transient
        }
        Error::Server(server) => match server.code {
            1040 | 1053 | 1158..=1161 | 1205 | 1213 | 1317 | 1927 | 2006 | 2013 => {
                FailureKind::Transient
            }
            _ => FailureKind::Permanent,
        },
        _ => FailureKind::Permanent,
    }
}

fn quote(identifier: &str) -> String {
    format!("`{}`", identifier.replace('`', "``"))
}

/// The MySQL type a declared column is created with.
fn sql_type(name: &str, kind: ColumnType) -> &'static str {
    match kind {
        // The key column must have a length; ids are at most ~100 bytes.
        ColumnType::String if name == MESSAGE_ID_COLUMN => "VARCHAR(255)",
        ColumnType::String => "TEXT",
        ColumnType::Integer => "BIGINT",
        ColumnType::Float => "DOUBLE",
        ColumnType::Boolean => "BOOLEAN",
        ColumnType::Timestamp => "DATETIME(3)",
        ColumnType::Json => "JSON",
    }
}

/// The `DATA_TYPE`s (information_schema) a column of `kind` may have in a
/// table that already exists.
fn compatible_types(kind: ColumnType) -> &'static [&'static str] {
    const TEXT: &[&str] = &[
        "varchar",
        "char",
        "text",
        "tinytext",
        "mediumtext",
        "longtext",
    ];
    match kind {
        ColumnType::String => TEXT,
        ColumnType::Json => &["json", "longtext", "text", "mediumtext", "varchar"],
        ColumnType::Integer => &[
            "bigint",
            "int",
            "mediumint",
            "smallint",
            "tinyint",
            "decimal",
        ],
        ColumnType::Float => &["double", "float", "decimal"],
        ColumnType::Boolean => &["tinyint", "bit", "smallint", "int", "bigint"],
        ColumnType::Timestamp => &["datetime", "timestamp"],
    }
}

fn create_table_sql(schema: &Schema) -> String {
    let columns: Vec<String> = schema
        .columns
        .iter()
        .map(|(name, kind)| format!("{} {}", quote(name), sql_type(name, *kind)))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, UNIQUE KEY {} ({}, {})) DEFAULT CHARSET = utf8mb4",
        quote(&schema.table),
        columns.join(", "),
        quote("iotpipe_message"),
        quote(MESSAGE_ID_COLUMN),
        quote(MESSAGE_ROW_COLUMN)
    )
}

/// Creates the table if missing, then checks that the table (new or a
/// user's own) has every column with a compatible type and the unique key
/// that keeps redelivered rows out.
async fn prepare_table(conn: &mut Conn, schema: &Schema) -> Result<(), Failure> {
    conn.query_drop(create_table_sql(schema))
        .await
        .map_err(|error| Failure::of("cannot create table", &error))?;
    let found: Vec<(String, String)> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
            (schema.table.as_str(),),
        )
        .await
        .map_err(|error| Failure::of("cannot read the table's columns", &error))?;
    let table = &schema.table;
    for (name, kind) in &schema.columns {
        let Some((_, data_type)) = found.iter().find(|(column, _)| column == name) else {
            return Err(Failure::permanent(format!(
                "table {table} exists without column {name}: add it ({} {}) or drop the table",
                quote(name),
                sql_type(name, *kind)
            )));
        };
        if !compatible_types(*kind).contains(&data_type.to_ascii_lowercase().as_str()) {
            return Err(Failure::permanent(format!(
                "table {table}: column {name} is {data_type}, which cannot hold {} values ({} would)",
                kind.name(),
                sql_type(name, *kind)
            )));
        }
    }
    let keyed: Vec<(String, String)> = conn
        .exec(
            "SELECT INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) \
             FROM information_schema.STATISTICS \
             WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
             GROUP BY INDEX_NAME",
            (table.as_str(),),
        )
        .await
        .map_err(|error| Failure::of("cannot read the table's keys", &error))?;
    let wanted = format!("{MESSAGE_ID_COLUMN},{MESSAGE_ROW_COLUMN}");
    if !keyed.iter().any(|(_, columns)| *columns == wanted) {
        return Err(Failure::permanent(format!(
            "table {table} has no UNIQUE KEY ({MESSAGE_ID_COLUMN}, {MESSAGE_ROW_COLUMN}), so a \
             redelivered message would be written twice: ALTER TABLE {} ADD UNIQUE KEY ({}, {})",
            quote(table),
            quote(MESSAGE_ID_COLUMN),
            quote(MESSAGE_ROW_COLUMN)
        )));
    }
    Ok(())
}

/// `INSERT INTO t (...) VALUES (?, ...), ... ON DUPLICATE KEY UPDATE` a
/// no-op: a row already there (a redelivery) is left as it is, and any
/// other error is still an error (`INSERT IGNORE` would turn a bad value
/// into a warning and a changed row).
fn insert_sql(schema: &Schema, rows: usize) -> String {
    let columns: Vec<String> = schema.columns.iter().map(|(name, _)| quote(name)).collect();
    let row = format!("({})", vec!["?"; schema.columns.len()].join(", "));
    format!(
        "INSERT INTO {} ({}) VALUES {} ON DUPLICATE KEY UPDATE {id} = {id}",
        quote(&schema.table),
        columns.join(", "),
        vec![row.as_str(); rows].join(", "),
        id = quote(MESSAGE_ID_COLUMN)
    )
}

/// Rows in statements under the packet limit (with room for the protocol)
/// and MySQL's placeholder limit, as ranges of `rows.rows`.
fn chunks(rows: &TableRows, max_packet: usize) -> Vec<Range<usize>> {
    let budget = max_packet / 2;
    let per_statement = (MAX_PARAMETERS / rows.schema.columns.len().max(1)).max(1);
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, row) in rows.rows.iter().enumerate() {
        let size: usize = row.iter().map(cell_bytes).sum::<usize>() + 16;
        if index > start && (bytes + size > budget || index - start == per_statement) {
            chunks.push(start..index);
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < rows.rows.len() {
        chunks.push(start..rows.rows.len());
    }
    chunks
}

/// An upper bound of a cell's bytes on the wire.
fn cell_bytes(cell: &Cell) -> usize {
    match cell {
        Cell::Text(text) => text.len() + 9,
        _ => 12,
    }
}

fn to_value(cell: &Cell) -> Value {
    match cell {
        Cell::Null => Value::NULL,
        Cell::Text(text) => Value::Bytes(text.clone().into_bytes()),
        Cell::Int(integer) => Value::Int(*integer),
        Cell::Float(float) => Value::Double(*float),
        Cell::Bool(flag) => Value::Int(i64::from(*flag)),
        Cell::Timestamp(millis) => match chrono::DateTime::from_timestamp_millis(*millis) {
            Some(time) => {
                use chrono::{Datelike, Timelike};
                Value::Date(
                    time.year() as u16,
                    time.month() as u8,
                    time.day() as u8,
                    time.hour() as u8,
                    time.minute() as u8,
                    time.second() as u8,
                    time.timestamp_subsec_micros(),
                )
            }
            None => Value::NULL,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mysql_ssl_modes_and_leaves_the_rest_of_the_url() {
        let (rest, mode) = SslMode::split_from("mysql://u:p@db:3306/iot").unwrap();
        assert_eq!(
            (rest.as_str(), mode),
            ("mysql://u:p@db:3306/iot", SslMode::Preferred)
        );
        let (rest, mode) = SslMode::split_from(
            "mysql://u@db/iot?ssl-mode=verify_ca&ssl-ca=%2Fvar%2Ftask%2Fca.pem&stmt_cache_size=8",
        )
        .unwrap();
        assert_eq!(rest, "mysql://u@db/iot?stmt_cache_size=8");
        assert_eq!(mode, SslMode::VerifyCa(Some("/var/task/ca.pem".into())));
        for (query, mode) in [
            ("ssl-mode=DISABLED", SslMode::Disabled),
            ("ssl-mode=REQUIRED", SslMode::Required),
            ("ssl_mode=VERIFY_IDENTITY", SslMode::VerifyIdentity(None)),
        ] {
            let (_, parsed) = SslMode::split_from(&format!("mysql://db/x?{query}")).unwrap();
            assert_eq!(parsed, mode, "{query}");
        }
        let error = SslMode::split_from("mysql://db/x?ssl-mode=ON")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("\"ON\"") && error.contains("VERIFY_CA"),
            "{error}"
        );
    }

    #[test]
    fn statements_quote_names_and_bind_every_value() {
        let schema = Schema::readings();
        let create = create_table_sql(&schema);
        assert!(create.contains("`timestamp` DATETIME(3)"), "{create}");
        assert!(create.contains("`message_id` VARCHAR(255)"), "{create}");
        assert!(create.contains("UNIQUE KEY `iotpipe_message` (`message_id`, `message_row`)"));
        let insert = insert_sql(&schema, 2);
        assert_eq!(insert.matches('?').count(), 2 * schema.columns.len());
        assert!(insert.ends_with("ON DUPLICATE KEY UPDATE `message_id` = `message_id`"));
        assert_eq!(quote("a`b"), "`a``b`");
    }

    #[test]
    fn chunks_stay_under_the_packet_and_parameter_limits() {
        let mut rows = TableRows::new(Schema::readings());
        for index in 0..10_000 {
            let mut row = vec![Cell::Text("x".repeat(100)); rows.schema.columns.len()];
            row[0] = Cell::Timestamp(index);
            rows.rows.push(row);
            rows.messages.push(index as u32);
        }
        let chunks = chunks(&rows, 1 << 20);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 10_000);
        for chunk in &chunks {
            let bytes: usize = rows.rows[chunk.clone()]
                .iter()
                .flatten()
                .map(cell_bytes)
                .sum();
            assert!(bytes < 1 << 19, "{bytes}");
            assert!(chunk.len() * rows.schema.columns.len() <= MAX_PARAMETERS);
        }
        assert!(chunks.len() > 1);
    }
}
