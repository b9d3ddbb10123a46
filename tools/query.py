#!/usr/bin/env python3
"""Runs SQL over the local Parquet warehouse with DuckDB: every table
directory under the warehouse (default ./warehouse, or WAREHOUSE_URL when it
is a local path) becomes a view of the same name.

    python tools/query.py "SELECT timestamp, device, temperature FROM sensordata ORDER BY timestamp DESC LIMIT 100"
"""
import os
import sys

import duckdb

DEFAULT_QUERY = "SELECT timestamp, device, temperature FROM sensordata ORDER BY timestamp DESC LIMIT 100"


def warehouse_dir():
    url = os.environ.get("WAREHOUSE_URL", "./warehouse")
    if url.startswith("file://"):
        url = url[len("file://"):]
    if "://" in url:
        sys.exit(f"tools/query.py reads a local warehouse; WAREHOUSE_URL={url!r} is not one")
    return url


def main():
    sql = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_QUERY
    root = warehouse_dir()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    tables = sorted(t for t in os.listdir(root) if os.path.isdir(os.path.join(root, t))) if os.path.isdir(root) else []
    if not tables:
        sys.exit(f"no tables in {root!r} yet: run `make run` (or the warehouse function) first")
    for table in tables:
        pattern = os.path.join(root, table, "**", "*.parquet").replace("'", "''")
        con.execute(f"CREATE VIEW \"{table}\" AS SELECT * FROM read_parquet('{pattern}', hive_partitioning = true)")
    print(f"-- {root}: {', '.join(tables)}")
    print(con.sql(sql))


if __name__ == "__main__":
    main()
