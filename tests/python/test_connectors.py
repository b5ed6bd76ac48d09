"""End-to-end tests of `tarn ingest database` and `tarn ingest rest`.

Databases: the real PostgreSQL and MariaDB servers of this machine (and a
SQLite file). A full load, then inserts and updates, then an incremental run:
the raw zone must hold exactly the new and changed rows, once, and the
watermark must be the one committed in the Delta log (`txn`).

REST: a local HTTP server (started here) with cursor pagination, bearer auth,
a 429 with Retry-After and a 503 on the way, and records that grow between
runs: the second run must take only the records above the committed cursor.

Run:  TARN_BIN=$CARGO_TARGET_DIR/debug/tarn python3 -m pytest tests/python/test_connectors.py -q
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from deltalake import DeltaTable

TARN_BIN = os.environ.get("TARN_BIN", "/work/target/debug/tarn")
PG_URL = os.environ.get("TARN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TARN_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")

if not (os.path.isfile(TARN_BIN) and os.access(TARN_BIN, os.X_OK)):
    if os.environ.get("TARN_REQUIRE_BIN") == "1":
        raise RuntimeError(f"TARN_BIN={TARN_BIN} is not an executable file")
    pytest.skip(f"tarn binary not found at {TARN_BIN} (set TARN_BIN)", allow_module_level=True)


def tarn(lake: Path, *args: str, env: dict | None = None) -> dict:
    """Runs `tarn --json …` in `lake`; returns the IngestionResult."""
    full_env = dict(os.environ, NO_COLOR="1", **(env or {}))
    proc = subprocess.run(
        [TARN_BIN, *args, "--json"], cwd=lake, capture_output=True, text=True,
        timeout=300, env=full_env,
    )
    assert proc.returncode == 0, f"{args}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout)


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    subprocess.run([TARN_BIN, "init", str(tmp_path / "lake")], check=True, capture_output=True)
    return tmp_path / "lake"


def raw_rows(lake: Path, dataset: str) -> list[dict]:
    return DeltaTable(str(lake / "lake" / "raw" / dataset)).to_pyarrow_table().to_pylist()


def txn_versions(table: Path) -> dict[str, int]:
    """The latest `txn` version per app id, from the Delta log's JSON commits."""
    out: dict[str, int] = {}
    for f in sorted((table / "_delta_log").glob("*.json")):
        for line in f.read_text().splitlines():
            action = json.loads(line)
            if "txn" in action:
                out[action["txn"]["appId"]] = action["txn"]["version"]
    return out


# --------------------------------------------------------------------------- #
# Databases
# --------------------------------------------------------------------------- #

def psql(sql: str) -> None:
    subprocess.run(["psql", PG_URL, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True,
                   capture_output=True)


def mariadb(sql: str) -> None:
    u = urlparse(MYSQL_URL)
    subprocess.run(
        ["mariadb", "-h", u.hostname or "127.0.0.1", "-P", str(u.port or 3306),
         "-u", u.username or "root", u.path.lstrip("/") or "test", "-e", sql],
        check=True, capture_output=True,
    )


class Sqlite:
    def __init__(self, path: Path):
        self.path = path

    def __call__(self, sql: str) -> None:
        with sqlite3.connect(self.path) as c:
            c.executescript(sql)


def backends(tmp: Path):
    """(name, url, exec, DDL for an orders table with a timestamp watermark)."""
    sq = Sqlite(tmp / "shop.db")
    return [
        ("postgresql", PG_URL, psql,
         "CREATE TABLE {t} (id integer PRIMARY KEY, total numeric(10,2), status text, "
         "meta jsonb, ref uuid, updated_at timestamptz NOT NULL)"),
        ("mariadb", MYSQL_URL, mariadb,
         "CREATE TABLE {t} (id int PRIMARY KEY, total decimal(10,2), status varchar(20), "
         "meta json, ref char(36), updated_at datetime(6) NOT NULL)"),
        ("sqlite", f"sqlite://{sq.path}", sq,
         "CREATE TABLE {t} (id INTEGER PRIMARY KEY, total NUMERIC(10,2), status TEXT, "
         "meta TEXT, ref TEXT, updated_at DATETIME NOT NULL)"),
    ]


def insert(run, table: str, rows: list[tuple]) -> None:
    values = ", ".join(
        f"({i}, {total}, '{status}', '{{\"n\": {i}}}', '{uuid.UUID(int=i)}', '{ts}')"
        for i, total, status, ts in rows
    )
    run(f"INSERT INTO {table} (id, total, status, meta, ref, updated_at) VALUES {values}")


@pytest.mark.parametrize("backend", ["postgresql", "mariadb", "sqlite"])
def test_database_full_then_incremental(lake: Path, tmp_path: Path, backend: str):
    name, url, run, ddl = next(b for b in backends(tmp_path) if b[0] == backend)
    table = f"orders_{uuid.uuid4().hex[:8]}"
    run(ddl.format(t=table))
    try:
        insert(run, table, [
            (1, "10.50", "new", "2024-03-01 10:00:00"),
            (2, "20.00", "new", "2024-03-01 11:00:00"),
            (3, "30.25", "paid", "2024-03-01 12:00:00"),
            (4, "40.00", "new", "2024-03-01 13:00:00"),
        ])
        args = ["ingest", "database", "-d", "orders", "--url", url, "--table", table,
                "--watermark", "updated_at"]
        first = tarn(lake, *args)
        m = first["metadata"]
        assert (m["rows_read"], m["rows_written"], m["rows_quarantined"]) == (4, 4, 0)
        rows = raw_rows(lake, "orders")
        assert sorted(r["id"] for r in rows) == [1, 2, 3, 4]
        by_id = {r["id"]: r for r in rows}
        assert str(by_id[3]["total"]) == "30.25"
        assert json.loads(by_id[2]["meta"]) == {"n": 2}
        assert by_id[1]["ref"] == str(uuid.UUID(int=1))

        # Inserts and updates; the incremental run takes exactly those.
        insert(run, table, [(5, "50.00", "new", "2024-03-02 09:00:00"),
                            (6, "60.00", "new", "2024-03-02 09:30:00")])
        run(f"UPDATE {table} SET status = 'shipped', updated_at = '2024-03-02 10:00:00' "
            f"WHERE id = 2")
        second = tarn(lake, *args)
        assert second["metadata"]["rows_written"] == 3
        run_id = second["metadata"]["run_id"]
        rows = raw_rows(lake, "orders")
        new = sorted((r["id"], r["status"]) for r in rows if r["_ingest_run_id"] == run_id)
        assert new == [(2, "shipped"), (5, "new"), (6, "new")]
        assert len(rows) == 7

        # The watermark committed with the rows is the newest updated_at.
        txns = txn_versions(lake / "lake" / "raw" / "orders")
        [(app, version)] = [(a, v) for a, v in txns.items() if a.startswith("tarn-database-")]
        assert version == 1709373600 * 1_000_000, (app, version)  # 2024-03-02T10:00:00Z

        third = tarn(lake, *args)
        assert third["status"] == "skipped"
        assert len(raw_rows(lake, "orders")) == 7
    finally:
        run(f"DROP TABLE {table}")


def test_database_query_mode_and_full_reads(lake: Path, tmp_path: Path):
    _, url, run, ddl = backends(tmp_path)[0]
    table = f"orders_{uuid.uuid4().hex[:8]}"
    run(ddl.format(t=table))
    try:
        insert(run, table, [(1, "5.00", "new", "2024-03-01 10:00:00"),
                            (2, "500.00", "new", "2024-03-01 11:00:00")])
        query = f"SELECT id, total FROM {table} WHERE total > 100"
        r = tarn(lake, "ingest", "database", "-d", "big", "--url", url, "--query", query)
        assert r["metadata"]["rows_written"] == 1
        # Without a watermark every run reads the whole result again.
        r = tarn(lake, "ingest", "database", "-d", "big", "--url", url, "--query", query)
        assert r["metadata"]["rows_written"] == 1
        assert sorted(x["id"] for x in raw_rows(lake, "big")) == [2, 2]
    finally:
        run(f"DROP TABLE {table}")


def test_database_errors_are_clear(lake: Path):
    proc = subprocess.run(
        [TARN_BIN, "ingest", "database", "-d", "x", "--url", PG_URL, "--table", "no_such_table_xyz"],
        cwd=lake, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "no_such_table_xyz" in proc.stderr, proc.stderr


# --------------------------------------------------------------------------- #
# REST
# --------------------------------------------------------------------------- #

class TicketApi:
    """Tickets with cursor pagination (`next_cursor` in, `cursor` out),
    bearer auth, `since` filtering, and injected 429/503 responses."""

    def __init__(self):
        self.tickets: list[dict] = []
        self.failures: list[tuple[int, dict]] = []
        self.requests: list[tuple[str, float]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                api.requests.append((self.path, time.monotonic()))
                if self.headers.get("Authorization") != "Bearer t0ken":
                    return self.reply(401, {"error": "unauthorized"})
                if api.failures:
                    status, headers = api.failures.pop(0)
                    return self.reply(status, {"error": "try later"}, headers)
                q = parse_qs(urlparse(self.path).query)
                since = q.get("since", [""])[0]
                items = [t for t in api.tickets if t["updated_at"] > since]
                start = int(q.get("cursor", ["0"])[0])
                page = items[start:start + 7]
                nxt = str(start + 7) if start + 7 < len(items) else None
                self.reply(200, {"data": page, "next_cursor": nxt})

            def reply(self, status, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/tickets"

    def add(self, ids, day: int):
        for i in ids:
            self.tickets.append({"id": i, "title": f"ticket {i}",
                                 "updated_at": f"2024-05-{day:02d}T{i % 24:02d}:00:00Z"})
        self.tickets.sort(key=lambda t: t["updated_at"])


@pytest.fixture
def api():
    a = TicketApi()
    yield a
    a.server.shutdown()


def test_rest_cursor_pages_retries_and_incremental(lake: Path, api: TicketApi):
    api.add(range(1, 31), day=1)
    api.failures = [(429, {"Retry-After": "1"}), (503, {})]
    args = ["ingest", "rest", "-d", "tickets", "--url", api.url, "--records-path", "data",
            "--paginate", "cursor:next_cursor", "--auth", "bearer:env:TICKETS_TOKEN",
            "--cursor-field", "updated_at", "--cursor-param", "since"]
    env = {"TICKETS_TOKEN": "t0ken"}
    first = tarn(lake, *args, env=env)
    assert first["metadata"]["rows_written"] == 30
    # 5 pages of 7 + the 429 and the 503; the retry after the 429 waited ≥ 1 s.
    assert len(api.requests) == 7
    assert api.requests[1][1] - api.requests[0][1] >= 0.95
    assert sorted(r["id"] for r in raw_rows(lake, "tickets")) == list(range(1, 31))
    assert all("since=" not in path for path, _ in api.requests)

    # New and changed tickets: only those land, and the cursor goes to the API.
    api.requests.clear()
    api.add(range(31, 41), day=2)
    second = tarn(lake, *args, env=env)
    assert second["metadata"]["rows_written"] == 10
    assert "since=2024-05-01T23%3A00%3A00Z" in api.requests[0][0] or \
        "since=2024-05-01T23:00:00Z" in api.requests[0][0], api.requests[0][0]
    rows = raw_rows(lake, "tickets")
    assert sorted(r["id"] for r in rows) == list(range(1, 41))

    third = tarn(lake, *args, env=env)
    assert third["status"] == "skipped"


def test_rest_auth_failure_is_clear_and_commits_nothing(lake: Path, api: TicketApi):
    api.add(range(1, 5), day=1)
    proc = subprocess.run(
        [TARN_BIN, "ingest", "rest", "-d", "tickets", "--url", api.url, "--records-path", "data",
         "--auth", "bearer:env:TICKETS_TOKEN"],
        cwd=lake, capture_output=True, text=True, timeout=60,
        env=dict(os.environ, TICKETS_TOKEN="wrong"),
    )
    assert proc.returncode != 0
    assert "401" in proc.stderr and "wrong" not in proc.stderr, proc.stderr
    assert not (lake / "lake" / "raw" / "tickets").exists()


def test_database_crash_between_quarantine_and_raw_commits(lake: Path, tmp_path: Path):
    """A run that dies after committing its quarantine and before its raw
    commit: the next run lands the valid rows once and does not quarantine
    the rejects again."""
    db = Sqlite(tmp_path / "crash.db")
    db("CREATE TABLE t (id INTEGER PRIMARY KEY, total NUMERIC(4,2), updated_at INTEGER NOT NULL)")
    # 123456.78 does not fit NUMERIC(4,2): rejected with a reason.
    db("INSERT INTO t VALUES (1, 1.5, 10), (2, 123456.78, 20), (3, 3.25, 30)")
    args = ["ingest", "database", "-d", "t", "--url", f"sqlite://{db.path}", "--table", "t",
            "--watermark", "updated_at"]
    proc = subprocess.run([TARN_BIN, *args], cwd=lake, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, TARN_FAILPOINT="ingest:after-quarantine"))
    assert proc.returncode != 0 and "TARN_FAILPOINT" in proc.stderr, proc.stderr
    q = lake / "lake" / "raw" / "_quarantine" / "t"
    assert DeltaTable(str(q)).to_pyarrow_table().num_rows == 1
    assert not (lake / "lake" / "raw" / "t" / "_delta_log").exists() or \
        DeltaTable(str(lake / "lake" / "raw" / "t")).to_pyarrow_table().num_rows == 0

    db("INSERT INTO t VALUES (4, 4.75, 40), (5, 99999.0, 50)")
    r = tarn(lake, *args)
    m = r["metadata"]
    assert sorted(x["id"] for x in raw_rows(lake, "t")) == [1, 3, 4]
    quarantined = DeltaTable(str(q)).to_pyarrow_table().to_pylist()
    payloads = sorted(json.loads(x["payload"])["id"] for x in quarantined)
    assert payloads == [2, 5], quarantined
    assert m["rows_read"] == m["rows_written"] + m["rows_quarantined"]


def test_a_landing_failure_stops_the_reader_and_commits_nothing(lake: Path, tmp_path: Path):
    """The reader streams more chunks than the channel holds; when landing
    fails on the first one the run must end with the error, not hang."""
    db = Sqlite(tmp_path / "many.db")
    db("CREATE TABLE t (id INTEGER PRIMARY KEY, status TEXT)")
    with sqlite3.connect(db.path) as c:
        c.executemany("INSERT INTO t VALUES (?, ?)", ((i, "s") for i in range(60_000)))
    proc = subprocess.run(
        [TARN_BIN, "ingest", "database", "-d", "t", "--url", f"sqlite://{db.path}",
         "--table", "t", "--partition-key", "status"],
        cwd=lake, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "partition key `status` must be a timestamp or date" in proc.stderr, proc.stderr
    assert not (lake / "lake" / "raw" / "t" / "_delta_log").exists()
