"""`tarn query` end to end: the 22 TPC-H queries against DuckDB, output formats,
and a cached query that must see a new ingest.

TPC-H data comes from `tpchgen-cli` (PyPI) at a small scale factor, is
ingested with `tarn ingest file` as Delta tables in the raw zone, and every
query's answer is compared with DuckDB's over the same Parquet files.

Run:  TARN_BIN=…/debug/tarn python3 -m pytest tests/python/test_query.py -q
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import math
import os
import shutil
import subprocess
import sysconfig
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

TARN_BIN = os.environ.get("TARN_BIN", "/work/target/debug/tarn")
TPCH_QUERIES = Path(__file__).resolve().parents[2] / "bench" / "tpch" / "queries"
TPCH_SCALE = os.environ.get("TARN_TPCH_TEST_SCALE", "0.01")
TABLES = ["nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem"]

if not (os.path.isfile(TARN_BIN) and os.access(TARN_BIN, os.X_OK)):
    if os.environ.get("TARN_REQUIRE_BIN") == "1":
        raise RuntimeError(f"TARN_BIN={TARN_BIN} is not an executable file")
    pytest.skip(f"tarn binary not found at {TARN_BIN} (set TARN_BIN)", allow_module_level=True)


def tpchgen() -> str:
    """The tpchgen-cli executable: on PATH, or next to this Python's scripts
    (pip puts it there; a pyenv shim may not exist until `pyenv rehash`)."""
    found = shutil.which("tpchgen-cli")
    if found:
        return found
    return str(Path(sysconfig.get_path("scripts")) / "tpchgen-cli")


def tarn(args: list, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([TARN_BIN, *map(str, args)], cwd=cwd, capture_output=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"tarn {args} failed ({p.returncode}):\n{p.stderr.decode()}")
    return p


@pytest.fixture(scope="module")
def tpch(tmp_path_factory):
    """A lake holding the TPC-H tables, and the Parquet files they came from."""
    root = tmp_path_factory.mktemp("tpch")
    data = root / "data"
    subprocess.run(
        [tpchgen(), "parquet", "-s", TPCH_SCALE, f"--output-dir={data}"],
        check=True, capture_output=True,
    )
    lake = root / "lake"
    tarn(["init", lake], cwd=root)
    for t in TABLES:
        tarn(["ingest", "file", "--dataset", t, "--path", data / f"{t}.parquet"], cwd=lake)
    return lake, data


def normalize(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, str):
        return v.rstrip()
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None)
    return v


def same(a, b) -> bool:
    a, b = normalize(a), normalize(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-4)
    return a == b


def rows(table: pa.Table) -> list[tuple]:
    cols = [c.to_pylist() for c in table.columns]
    return list(zip(*cols))


@pytest.mark.parametrize("n", range(1, 23))
def test_tpch_query_matches_duckdb(tpch, n):
    lake, data = tpch
    sql = (TPCH_QUERIES / f"q{n:02}.sql").read_text()
    out = lake / f"q{n:02}.arrow"
    tarn(["query", sql, "--format", "arrow", "--output", out], cwd=lake)
    with ipc.open_stream(out.read_bytes()) as r:
        got = r.read_all()

    con = duckdb.connect()
    for t in TABLES:
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data / (t + '.parquet')}')")
    want = con.sql(sql).to_arrow_table()

    assert got.num_columns == want.num_columns, (got.schema, want.schema)
    g, w = rows(got), rows(want)
    assert len(g) == len(w), f"q{n:02}: {len(g)} rows, DuckDB {len(w)}"
    for i, (rg, rw) in enumerate(zip(g, w)):
        assert all(same(x, y) for x, y in zip(rg, rw)), f"q{n:02} row {i}: tarn {rg} != DuckDB {rw}"


def test_output_formats_agree(tpch):
    lake, _ = tpch
    sql = "SELECT n_nationkey, n_name, n_regionkey FROM nation ORDER BY n_nationkey"
    csv = tarn(["query", sql, "--format", "csv"], cwd=lake).stdout
    assert csv.splitlines()[0] == b"n_nationkey,n_name,n_regionkey"
    from_csv = pacsv.read_csv(io.BytesIO(csv))
    lines = tarn(["query", sql, "--format", "json"], cwd=lake).stdout.decode().splitlines()
    from_json = [json.loads(line) for line in lines]
    tarn(["query", sql, "--output", lake / "n.parquet"], cwd=lake)
    from_parquet = pq.read_table(lake / "n.parquet")
    arrow = tarn(["query", sql, "--format", "arrow"], cwd=lake).stdout
    from_arrow = ipc.open_stream(arrow).read_all()

    names = from_parquet.column("n_name").to_pylist()
    assert len(names) == 25 and names[0] == "ALGERIA"
    assert from_csv.column("n_name").to_pylist() == names
    assert [r["n_name"] for r in from_json] == names
    assert from_arrow.column("n_name").to_pylist() == names
    table = tarn(["query", sql, "--format", "table"], cwd=lake).stdout.decode()
    assert "| ALGERIA" in table and table.startswith("+")

    structured = tarn(
        ["query", "--from", "raw/nation", "--select", "n_name", "--where", "n_regionkey=1",
         "--order-by", "n_name desc", "--limit", "2", "--format", "json"],
        cwd=lake,
    ).stdout.decode().splitlines()
    assert [json.loads(x)["n_name"] for x in structured] == ["UNITED STATES", "PERU"]


def test_explain_and_errors(tpch):
    lake, _ = tpch
    out = tarn(
        ["query", "--explain", "SELECT count(*) FROM lineitem WHERE l_orderkey < 0"], cwd=lake
    ).stdout.decode()
    assert "== Physical plan ==" in out and "raw.lineitem@v1: files" in out
    assert "Estimated cost:" in out
    js = json.loads(tarn(["query", "--explain", "--json", "SELECT * FROM region"], cwd=lake).stdout)
    assert js["scans"][0]["before"]["rows"] == 5

    bad = tarn(["query", "--from", "raw/nation", "--select", "nope"], cwd=lake, check=False)
    assert bad.returncode != 0
    assert b"unknown column `nope` in raw/nation" in bad.stderr
    bad = tarn(["query", "SELECT * FROM raw.missing"], cwd=lake, check=False)
    assert bad.returncode != 0 and b"missing" in bad.stderr


def test_a_cached_query_sees_a_new_ingest(tmp_path):
    lake = tmp_path / "lake"
    tarn(["init", lake], cwd=tmp_path)
    (tmp_path / "a.csv").write_text("id,v\n1,a\n2,b\n")
    (tmp_path / "b.csv").write_text("id,v\n3,c\n")
    tarn(["ingest", "file", "-d", "t", "-p", tmp_path / "a.csv"], cwd=lake)
    q = ["query", "SELECT count(*) AS n FROM raw.t", "--format", "csv", "--stats"]
    first = tarn(q, cwd=lake)
    assert first.stdout.decode().splitlines() == ["n", "2"]
    tarn(["ingest", "file", "-d", "t", "-p", tmp_path / "b.csv"], cwd=lake)
    second = tarn(q, cwd=lake)
    assert second.stdout.decode().splitlines() == ["n", "3"]
    assert b"cache miss" in second.stderr
