#!/usr/bin/env python3
"""Query benchmark: TPC-H through tarn against DuckDB, side by side in one run,
plus partition pruning on a table with 365 daily partitions.

TPC-H (bench/tpch/queries, the 22 queries with the spec's validation parameters):
  * data: `tpchgen-cli parquet -s SF`, ingested with `tarn ingest file` into a
    lake's raw zone (Delta tables);
  * tarn: `examples/query_bench.rs` (release), one process for all queries:
    cold = first run in a fresh engine, warm = median of 3 more runs with the
    result cache off, hit = median of 50 runs answered from the result cache;
  * DuckDB: the same Parquet files the Delta tables hold (read_parquet over
    each table's data files), cold = first run on a fresh connection, warm =
    median of 3 more runs;
  * both engines use every core of the machine; ratio = tarn warm / DuckDB warm
    (< 1 means tarn is faster); the geometric mean is over the 22 ratios.

Pruning: 365 days x ROWS_PER_DAY events ingested with partition_key, then
`tarn query --from raw/events --partition-date D` against the same query over
every day, timed as whole `tarn` processes (best of 3), with the files and
bytes `--explain` reports.

Usage:
  python3 bench/tpch_bench.py --scale 1            # the BENCHMARKS.md run
  python3 bench/tpch_bench.py --scale 0.1 --json   # quicker, raw numbers
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
QUERIES = HERE / "tpch" / "queries"
TABLES = ["nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/tarn/target"))


def tpchgen() -> str:
    """The tpchgen-cli executable: on PATH, or next to this Python's scripts
    (pip puts it there; a pyenv shim may not exist until `pyenv rehash`)."""
    found = shutil.which("tpchgen-cli")
    if found:
        return found
    return str(Path(sysconfig.get_path("scripts")) / "tpchgen-cli")


def sh(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, **kw)


def build() -> tuple[Path, Path]:
    sh(["cargo", "build", "--release", "-p", "tarn-cli", "-p", "tarn", "--bins",
        "--example", "query_bench"],
       cwd=REPO, env={**os.environ, "CARGO_TARGET_DIR": str(TARGET)})
    return TARGET / "release" / "tarn", TARGET / "release" / "examples" / "query_bench"


def tpch_lake(tarn: Path, scale: str) -> tuple[Path, Path]:
    root = HERE / "data" / f"tpch-sf{scale}"
    data, lake = root / "parquet", root / "lake"
    if not (data / "lineitem.parquet").exists():
        sh([tpchgen(), "parquet", "-s", scale, f"--output-dir={data}"])
    if not (lake / "lake" / "raw" / "lineitem" / "_delta_log").exists():
        sh([tarn, "init", lake])
        for t in TABLES:
            sh([tarn, "ingest", "file", "-d", t, "-p", data / f"{t}.parquet"], cwd=lake)
    return lake, data


def duckdb_times(lake: Path, sql: str, runs: int = 3) -> tuple[float, float, int]:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count()}")
    for t in TABLES:
        files = lake / "lake" / "raw" / t / "*.parquet"
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{files}')")
    t0 = time.perf_counter()
    rows = len(con.execute(sql).fetchall())
    cold = (time.perf_counter() - t0) * 1e3
    warm = []
    for _ in range(runs):
        t0 = time.perf_counter()
        con.execute(sql).fetchall()
        warm.append((time.perf_counter() - t0) * 1e3)
    return cold, statistics.median(warm), rows


def tpch(tarn: Path, bench: Path, scale: str) -> list[dict]:
    lake, _ = tpch_lake(tarn, scale)
    files = [QUERIES / f"q{n:02}.sql" for n in range(1, 23)]
    out = sh([bench, lake / "tarn.yaml", *files]).stdout.decode().splitlines()
    results = []
    for line, f in zip(out, files):
        r = json.loads(line)
        d_cold, d_warm, d_rows = duckdb_times(lake, f.read_text())
        assert d_rows == r["rows"], f"{f.name}: tarn {r['rows']} rows, DuckDB {d_rows}"
        r.update(query=f.stem, duckdb_cold_ms=d_cold, duckdb_warm_ms=d_warm,
                 ratio=r["warm_ms"] / d_warm)
        results.append(r)
    return results


def pruning(tarn: Path, rows_per_day: int) -> dict:
    root = HERE / "data" / f"pruning-{rows_per_day}"
    lake = root / "lake"
    if not (lake / "lake" / "raw" / "events" / "_delta_log").exists():
        root.mkdir(parents=True, exist_ok=True)
        rnd = random.Random(42)
        csv = root / "events.csv"
        with csv.open("w") as f:
            f.write("id,ts,kind,amount\n")
            i = 0
            for day in range(365):
                d = dt.date(2024, 1, 1) + dt.timedelta(days=day)
                for _ in range(rows_per_day):
                    i += 1
                    s = rnd.randrange(86400)
                    f.write(f"{i},{d}T{s // 3600:02}:{s // 60 % 60:02}:{s % 60:02}Z,"
                            f"{rnd.choice(['view', 'click', 'purchase'])},{rnd.random() * 100:.2f}\n")
        avsc = root / "events.avsc"
        avsc.write_text(json.dumps({"type": "record", "name": "events", "fields": [
            {"name": "id", "type": "long"},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "kind", "type": "string"},
            {"name": "amount", "type": "double"}]}))
        sh([tarn, "init", lake])
        sh([tarn, "ingest", "file", "-d", "events", "-p", csv, "-s", avsc,
            "--partition-key", "ts"], cwd=lake)

    def best(args):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            sh([tarn, *args, "--format", "csv"], cwd=lake)
            times.append((time.perf_counter() - t0) * 1e3)
        return min(times)

    one_day = ["query", "--from", "raw/events", "--partition-date", "2024-07-01"]
    all_days = ["query", "SELECT * FROM raw.events WHERE kind = 'nothing'"]
    explain = json.loads(sh([tarn, *one_day[:1], "--explain", "--json", *one_day[1:]],
                            cwd=lake).stdout)["scans"][0]
    return {"rows_per_day": rows_per_day, "explain": explain,
            "one_day_ms": best(one_day), "all_days_ms": best(all_days)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="1", help="TPC-H scale factor (default 1)")
    ap.add_argument("--rows-per-day", type=int, default=10_000)
    ap.add_argument("--json", action="store_true", help="print raw numbers")
    args = ap.parse_args()
    tarn, bench = build()
    results = tpch(tarn, bench, args.scale)
    prune = pruning(tarn, args.rows_per_day)
    if args.json:
        print(json.dumps({"tpch": results, "pruning": prune}, indent=2))
        return
    print(f"TPC-H SF{args.scale}, {os.cpu_count()} cores; times in ms\n")
    print("| query | tarn cold | tarn warm | tarn cache hit (p50) | DuckDB cold | DuckDB warm "
          "| tarn warm / DuckDB warm |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['query']} | {r['cold_ms']:.0f} | {r['warm_ms']:.0f} | {r['hit_p50_ms']:.2f} "
              f"| {r['duckdb_cold_ms']:.0f} | {r['duckdb_warm_ms']:.0f} | {r['ratio']:.2f} |")
    geo = math.exp(sum(math.log(r["ratio"]) for r in results) / len(results))
    worst = max(results, key=lambda r: r["ratio"])
    hit = statistics.median(r["hit_p50_ms"] for r in results)
    print(f"\ngeometric mean of ratios: {geo:.2f}; worst: {worst['query']} {worst['ratio']:.2f}; "
          f"cache hit p50 over queries: {hit:.2f} ms")
    e = prune["explain"]
    print(f"\nPruning, 365 daily partitions x {prune['rows_per_day']} rows: one day reads "
          f"{e['after']['files']} of {e['before']['files']} files, {e['after']['bytes']} of "
          f"{e['before']['bytes']} bytes; `tarn query --partition-date` {prune['one_day_ms']:.0f} ms "
          f"vs a scan of all days {prune['all_days_ms']:.0f} ms (whole processes, best of 3)")


if __name__ == "__main__":
    sys.exit(main())
