//! Rows of the local Parquet warehouse read back for the report: the
//! warehouse function's `dead_letter` table (to account for every message)
//! and the windows function's `window_aggregates` (for the chart).

use std::collections::BTreeMap;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::Value;

/// Every row of `<warehouse>/<table>/**/*.parquet`, as JSON values (times
/// in milliseconds).
pub fn read_table(warehouse: &Path, table: &str) -> Result<Vec<BTreeMap<String, Value>>, String> {
    let mut files = Vec::new();
    collect_parquet(&warehouse.join(table), &mut files);
    files.sort();
    let mut rows = Vec::new();
    for path in files {
        let file =
            std::fs::File::open(&path).map_err(|error| format!("{}: {error}", path.display()))?;
        let reader = SerializedFileReader::new(file)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        let iterator = reader
            .get_row_iter(None)
            .map_err(|error| format!("{}: {error}", path.display()))?;
        for row in iterator {
            let row = row.map_err(|error| format!("{}: {error}", path.display()))?;
            rows.push(
                row.get_column_iter()
                    .map(|(name, field)| (name.clone(), value_of(field)))
                    .collect(),
            );
        }
    }
    Ok(rows)
}

fn collect_parquet(directory: &Path, files: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_parquet(&path, files);
        } else if path
            .extension()
            .is_some_and(|extension| extension == "parquet")
        {
            files.push(path);
        }
    }
}

fn value_of(field: &Field) -> Value {
    match field {
        Field::Null => Value::Null,
        Field::Bool(boolean) => Value::Bool(*boolean),
        Field::Int(integer) => Value::from(*integer),
        Field::Long(integer) => Value::from(*integer),
        Field::Float(float) => Value::from(f64::from(*float)),
        Field::Double(double) => Value::from(*double),
        Field::Str(text) => Value::from(text.clone()),
        Field::TimestampMillis(ms) => Value::from(*ms),
        Field::TimestampMicros(us) => Value::from(*us / 1000),
        other => Value::from(other.to_string()),
    }
}
