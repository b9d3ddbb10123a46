//! DuckDB as an independent reader of the Parquet the warehouse writes.

use std::process::Command;

use serde_json::Value;

use crate::repo_root;

/// Runs SQL with DuckDB (PyPI `duckdb` in the project's virtualenv: an
/// independent Parquet reader) and returns the rows as JSON objects.
pub fn duckdb_query(sql: &str) -> Vec<Value> {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run `make test` (it installs duckdb)",
        python.display()
    );
    let script = r#"
import datetime, decimal, json, sys, duckdb
def plain(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return int(v.timestamp() * 1000)
    if isinstance(v, decimal.Decimal):
        return float(v)
    return v
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
cur = con.execute(sys.argv[1])
names = [d[0] for d in cur.description]
print(json.dumps([{n: plain(v) for n, v in zip(names, row)} for row in cur.fetchall()]))
"#;
    let output = Command::new(python)
        .args(["-c", script, sql])
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "DuckDB failed on {sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON rows")
}
