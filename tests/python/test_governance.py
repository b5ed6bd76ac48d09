"""Governance end to end: access control, tokens, the audit log, lineage,
OpenLineage events, compliance rules, PII classification and erasure, driven
through the `tarn` binary and checked against expectations computed here.

Each test builds its own lake in a temporary directory (`tarn init` plus a
small CSV written here, or a copy of examples/user_events as
test_process.py makes it). Expected rows come from the CSV files (and from
test_process.py's independent model of the example's rules); tables are read
back with the Python `deltalake` package, the metadata store with `sqlite3`,
and OpenLineage events are validated with openlineage_check.py.

Run:  TARN_BIN=…/debug/tarn python3 -m pytest tests/python/test_governance.py -q

If the binary named by TARN_BIN does not exist the module is skipped
(TARN_REQUIRE_BIN=1 makes that an error), as in test_process.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import http.server
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from deltalake import DeltaTable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_process as tp  # noqa: E402  (the example's model and its paths)
from openlineage_check import validate_event  # noqa: E402

EXAMPLE = tp.EXAMPLE
TARN_BIN = tp.TARN_BIN
TIMEOUT = tp.TIMEOUT
DAY1, DAY2 = tp.DAY1, tp.DAY2
RAW, RAW_Q = tp.RAW, tp.RAW_Q
CLEANSED, CLEANSED_Q = tp.CLEANSED, tp.CLEANSED_Q
CURATED, CURATED_Q = tp.CURATED, tp.CURATED_Q


# --------------------------------------------------------------------------- #
# Running the binary
# --------------------------------------------------------------------------- #

def tarn_env(extra: dict | None = None) -> dict:
    """The environment of a run: no identity, config or lineage sink leaks in
    from the caller's environment."""
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    for k in ("TARN_MASKING_SALT", "TARN_CONFIG", "TARN_PRINCIPAL", "TARN_TOKEN",
              "OPENLINEAGE_URL", "OPENLINEAGE_API_KEY", "OPENLINEAGE_ENDPOINT"):
        env.pop(k, None)
    env.update(extra or {})
    return env


def wait_for_binary(limit: float = 180.0) -> None:
    """The binary may be relinked while the suite runs: wait until it is back."""
    deadline = time.monotonic() + limit
    while not (os.path.isfile(TARN_BIN) and os.access(TARN_BIN, os.X_OK)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{TARN_BIN} missing for {limit}s")
        time.sleep(1)


def run_tarn(args: list[Any], cwd: Path, env: dict | None = None,
             timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Runs the binary; never raises on a non-zero exit. Retries only when the
    binary itself could not be started (being rebuilt)."""
    for attempt in range(60):
        wait_for_binary()
        try:
            return subprocess.run([TARN_BIN, *map(str, args)], cwd=cwd, capture_output=True,
                                  text=True, timeout=timeout, env=tarn_env(env))
        except OSError:  # ENOENT / ETXTBSY while the linker writes it
            if attempt == 59:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


describe = tp.describe


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class Lake:
    """A lake directory; commands run as `tarn -c CONFIG …` inside it."""
    root: Path
    config: str = "tarn.yaml"

    def run(self, *args: Any, as_: str | None = None, token: str | None = None,
            config: str | None = None, env: dict | None = None,
            ok: bool | None = True) -> subprocess.CompletedProcess:
        pre: list[Any] = ["-c", config or self.config]
        if as_ is not None:
            pre += ["--as", as_]
        if token is not None:
            pre += ["--token", token]
        p = run_tarn([*pre, *args], cwd=self.root, env=env)
        if ok is True:
            assert p.returncode == 0, describe(p)
        elif ok is False:
            assert p.returncode != 0, describe(p)
        return p

    def query(self, sql: str, as_: str | None = None, token: str | None = None,
              env: dict | None = None) -> list[dict]:
        """An allowed query's rows (JSON lines)."""
        p = self.run("query", sql, "--format", "json", as_=as_, token=token, env=env)
        return json_lines(p.stdout)

    def denied(self, args: list[Any], as_: str | None, *needles: str,
               token: str | None = None) -> str:
        """A refused command: exit 1, `permission denied` and each needle in
        stderr, nothing on stdout (never an empty result)."""
        p = self.run(*args, as_=as_, token=token, ok=None)
        assert p.returncode == 1, describe(p)
        assert "permission denied" in p.stderr, describe(p)
        for n in needles:
            assert n in p.stderr, f"{n!r} not in the error\n{describe(p)}"
        assert p.stdout.strip() == "", f"a denied command printed rows\n{describe(p)}"
        return p.stderr

    def denied_query(self, sql: str, as_: str, *needles: str) -> str:
        return self.denied(["query", sql, "--format", "json"], as_, *needles)

    def path(self, rel: str) -> Path:
        return self.root / "lake" / rel

    def exists(self, rel: str) -> bool:
        return tp.delta_path_exists(self.path(rel))

    def rows(self, rel: str) -> list[dict]:
        return DeltaTable(str(self.path(rel))).to_pyarrow_table().to_pylist() if self.exists(rel) else []

    def columns(self, rel: str) -> list[str]:
        return DeltaTable(str(self.path(rel))).to_pyarrow_table().column_names

    def version(self, rel: str) -> int | None:
        return DeltaTable(str(self.path(rel))).version() if self.exists(rel) else None

    def audit(self, *args: Any, limit: int = 100000) -> list[dict]:
        return json_lines(self.run("audit", "--json", "--limit", limit, *args).stdout)

    def write_yaml(self, name: str, data: Any) -> None:
        (self.root / name).write_text(yaml.safe_dump(data, sort_keys=False))

    def config_data(self, name: str = "tarn.yaml") -> dict:
        return yaml.safe_load((self.root / name).read_text())


def init_lake(dest: Path) -> Lake:
    p = run_tarn(["init", dest], cwd=dest.parent)
    assert p.returncode == 0, describe(p)
    return Lake(dest)


def example_lake(dest: Path, openlineage_file: str | None = None) -> Lake:
    """A copy of examples/user_events (with the OpenLineage file sink if asked)."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("lake", "__pycache__"))
    lake = Lake(dest)
    if openlineage_file:
        cfg = lake.config_data()
        cfg["governance"]["openlineage"] = {"file": openlineage_file}
        lake.write_yaml("tarn.yaml", cfg)
    return lake


def ingest_day1_and_process(lake: Lake, env: dict | None = None) -> None:
    lake.run("ingest", "file", "--dataset", "countries", env=env)
    lake.run("ingest", "file", "--dataset", "user_events", "--path", "data/day1/user_events.csv", env=env)
    lake.run("process", "user_events", env=env)


def mart_name() -> str:
    marts = yaml.safe_load((EXAMPLE / "tarn.yaml").read_text())["datasets"]["user_events"]["consume"]["marts"]
    assert len(marts) == 1, marts
    return next(iter(marts))


MART_NAME = mart_name()
MART = f"consumption/{MART_NAME}"


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(["" if v is None else v for v in r])


# --------------------------------------------------------------------------- #
# A customers table with principals, grants, a mask and a row filter
# --------------------------------------------------------------------------- #

CUSTOMER_COLUMNS = ["id", "name", "email", "region", "ssn"]
CUSTOMERS_V1 = [
    (1, "Anna Schmidt", "anna.schmidt@example.de", "eu", "123-45-6781"),
    (2, "Bob Jones", "bob.jones@example.com", "us", "234-56-7892"),
    (3, "Claire Dubois", "claire.dubois@example.fr", "eu", "345-67-8903"),
    (4, "Dan Smith", "dan.smith@example.com", "us", "456-78-9014"),
    (5, "Eva Rossi", "eva.rossi@example.it", "eu", "567-89-0125"),
    (6, "Frank Miller", None, "us", "678-90-1236"),
    (7, "Greta Berg", None, "eu", "789-01-2347"),       # a null email stays null when redacted
    (8, "Hugo Lind", "hugo.lind@example.se", "eu", "890-12-3458"),
]
CUSTOMERS_V2 = [
    (9, "Ines Costa", "ines.costa@example.pt", "eu", "901-23-4569"),
    (10, "Jack Brown", "jack.brown@example.com", "us", "012-34-5670"),
]
REDACTED = "***"


def as_dicts(rows: list[tuple]) -> list[dict]:
    return [dict(zip(CUSTOMER_COLUMNS, r)) for r in rows]


def redact(v: str | None) -> str | None:
    return None if v is None else REDACTED


def seen_by_filtered(rows: list[dict], region: str, columns: list[str]) -> list[dict]:
    """What a principal with `region` sees: its region's rows, email redacted."""
    out = []
    for r in rows:
        if r["region"] != region:
            continue
        out.append({c: (redact(r[c]) if c == "email" else r[c]) for c in columns})
    return sorted(out, key=lambda r: r["id"])


def by_id(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: r["id"])


def pick(rows: list[dict], columns: list[str]) -> list[dict]:
    """`columns` of each row, by id (JSON lines leave null fields out)."""
    return by_id([{c: r.get(c) for c in columns} for r in rows])


def customers_lake(dest: Path) -> Lake:
    """`tarn init`, customers v1 ingested, and:
    alice (region=eu), bob (region=us): SELECT on raw/customers;
    carol: member of pii_reader (SELECT on raw/customers through the role);
    email redacted except for pii_reader; rows filtered to the reader's region
    except for pii_reader; dave (region=us): SELECT on id, region only;
    nobody: no grant at all."""
    lake = init_lake(dest)
    write_csv(lake.root / "customers.csv", CUSTOMER_COLUMNS, CUSTOMERS_V1)
    lake.run("ingest", "file", "--dataset", "customers", "--path", "customers.csv")
    lake.run("principal", "add", "alice", "--attr", "region=eu")
    lake.run("principal", "add", "bob", "--attr", "region=us")
    lake.run("principal", "add", "carol")
    lake.run("principal", "add", "dave", "--attr", "region=us")
    lake.run("principal", "add", "nobody", "--kind", "service")
    lake.run("role", "add", "pii_reader", "--description", "reads PII in clear")
    lake.run("role", "assign", "pii_reader", "--to", "carol")
    lake.run("grant", "select", "raw/customers", "--to", "alice")
    lake.run("grant", "select", "raw/customers", "--to", "bob")
    lake.run("grant", "select", "raw/customers", "--to-role", "pii_reader")
    lake.run("grant", "select", "raw/customers", "--columns", "id,region", "--to", "dave")
    lake.run("mask", "raw/customers", "email", "--with", "redact", "--except-role", "pii_reader")
    lake.run("row-filter", "raw/customers", "region = principal_attr('region')",
             "--except-role", "pii_reader")
    return lake


# --------------------------------------------------------------------------- #
# 1. Access control on every query path
# --------------------------------------------------------------------------- #

def test_access_control_paths(tmp_path: Path):
    lake = customers_lake(tmp_path / "lake")
    v1 = as_dicts(CUSTOMERS_V1)
    real_emails = {r["email"] for r in v1 if r["email"]}
    eu_ids = [r["id"] for r in v1 if r["region"] == "eu"]
    us_ids = [r["id"] for r in v1 if r["region"] == "us"]

    # The policy as tarn reports it.
    shown = json.loads(lake.run("principal", "show", "alice", "--json").stdout)
    assert shown["name"] == "alice" and shown["attributes"] == {"region": "eu"}, shown
    assert shown["admin"] is False and shown["roles"] == [], shown
    masks = json.loads(lake.run("mask", "--list", "--json").stdout)
    assert [(m["zone"], m["dataset"], m["column"], m["mask"], m["except_roles"]) for m in masks] == \
        [("raw", "customers", "email", "redact", ["pii_reader"])], masks
    filters = json.loads(lake.run("row-filter", "--list", "--json").stdout)
    assert len(filters) == 1 and filters[0]["predicate"] == "region = principal_attr('region')", filters
    principals = {p["name"]: p for p in json.loads(lake.run("principal", "list", "--json").stdout)}
    assert {"admin", "alice", "bob", "carol", "dave", "nobody"} <= set(principals), principals
    assert "admin" in principals["admin"]["roles"] and "pii_reader" in principals["carol"]["roles"]
    assert principals["nobody"]["kind"] == "service"

    # SELECT * with a table grant: the eu rows only, email redacted (null stays null), ssn in clear.
    got = lake.query("SELECT * FROM raw.customers", as_="alice")
    assert pick(got, CUSTOMER_COLUMNS) == seen_by_filtered(v1, "eu", CUSTOMER_COLUMNS)
    assert any(r.get("email") is None for r in got), "the null email of an eu row"
    # bob: the us rows
    got = lake.query("SELECT id, email FROM raw.customers", as_="bob")
    assert pick(got, ["id", "email"]) == seen_by_filtered(v1, "us", ["id", "email"])

    # Self-join: both sides masked and filtered.
    got = lake.query("SELECT a.id AS id, a.email AS e1, b.email AS e2 FROM raw.customers a "
                     "JOIN raw.customers b ON a.id = b.id", as_="alice")
    want = [{"id": r["id"], "e1": r["email"], "e2": r["email"]} for r in seen_by_filtered(v1, "eu", ["id", "email"])]
    assert pick(got, ["id", "e1", "e2"]) == want
    # A join on the masked column matches masked values only: no real email in the result.
    got = lake.query("SELECT a.id AS a, b.id AS b, a.email AS e FROM raw.customers a "
                     "JOIN raw.customers b ON a.email = b.email", as_="alice")
    assert {r.get("e") for r in got} <= {REDACTED} and {r["a"] for r in got} <= set(eu_ids), got

    # Subquery
    got = lake.query("SELECT id, email FROM raw.customers WHERE id IN (SELECT id FROM raw.customers)",
                     as_="alice")
    assert pick(got, ["id", "email"]) == seen_by_filtered(v1, "eu", ["id", "email"])
    # ... a subquery cannot probe the masked value or reach filtered rows
    anna = v1[0]["email"]
    # (a masked email is '***' or null: it never equals a real address)
    probe = lake.query(f"SELECT id FROM raw.customers WHERE id IN "
                       f"(SELECT id FROM raw.customers WHERE email = '{anna}')", as_="alice")
    assert probe == [], f"`email = '{anna}'` over the masked column matched {probe}"
    assert lake.query("SELECT id FROM raw.customers WHERE id IN "
                      "(SELECT id FROM raw.customers WHERE region = 'us')", as_="alice") == []
    probe = lake.query(f"SELECT id FROM raw.customers WHERE email LIKE '{anna[:4]}%'", as_="alice")
    assert probe == [], f"`email LIKE '{anna[:4]}%'` over the masked column matched {probe}"
    assert lake.query("SELECT id FROM raw.customers WHERE region = 'us'", as_="alice") == []

    # CTE
    got = lake.query("WITH c AS (SELECT * FROM raw.customers) SELECT id, email, region FROM c",
                     as_="alice")
    assert pick(got, ["id", "email", "region"]) == seen_by_filtered(v1, "eu", ["id", "email", "region"])

    # Aggregates see the masked, filtered rows only.
    got = lake.query("SELECT count(*) AS n, count(DISTINCT email) AS d, max(email) AS mx, "
                     "min(email) AS mn, count(email) AS ne FROM raw.customers", as_="alice")
    eu = [r for r in v1 if r["region"] == "eu"]
    assert got == [{"n": len(eu), "d": 1, "mx": REDACTED, "mn": REDACTED,
                    "ne": sum(1 for r in eu if r["email"])}], got
    assert not ({got[0]["mx"], got[0]["mn"]} & real_emails)
    got = lake.query("SELECT region, count(*) AS n FROM raw.customers GROUP BY region", as_="alice")
    assert got == [{"region": "eu", "n": len(eu)}], got

    # UNION: each branch filtered and masked.
    got = lake.query("SELECT id, email FROM raw.customers WHERE region = 'eu' UNION "
                     "SELECT id, email FROM raw.customers WHERE region = 'us'", as_="alice")
    assert pick(got, ["id", "email"]) == seen_by_filtered(v1, "eu", ["id", "email"])

    # Structured query
    p = lake.run("query", "--from", "raw/customers", "--select", "id,email,region", "--format", "json",
                 as_="alice")
    assert pick(json_lines(p.stdout), ["id", "email", "region"]) == seen_by_filtered(v1, "eu", ["id", "email", "region"])
    p = lake.run("query", "--from", "raw/customers", "--select", "id", "--where", "region=us",
                 "--format", "json", as_="alice")
    assert json_lines(p.stdout) == []

    # EXPLAIN: works for an allowed query, is refused for a denied column.
    p = lake.run("query", "--explain", "SELECT id, email FROM raw.customers", as_="alice")
    assert p.stdout.strip() and not any(e in p.stdout for e in real_emails), describe(p)
    lake.denied(["query", "--explain", "SELECT email FROM raw.customers"], "dave",
                "`dave`", "raw/customers.email")
    lake.denied(["query", "--explain", "SELECT * FROM raw.customers"], "nobody",
                "`nobody` lacks SELECT on raw/customers")

    # The result cache does not leak between principals (same text, in turns).
    sql = "SELECT id, email FROM raw.customers ORDER BY id"
    everything = [{"id": r["id"], "email": r["email"]} for r in v1]
    for _ in range(2):
        assert pick(lake.query(sql, as_="alice"), ["id", "email"]) == seen_by_filtered(v1, "eu", ["id", "email"])
        assert pick(lake.query(sql, as_="carol"), ["id", "email"]) == everything

    # Time travel: a second file makes version v1+1; the old version is masked and filtered too.
    first = lake.version("raw/customers")
    write_csv(lake.root / "customers2.csv", CUSTOMER_COLUMNS, CUSTOMERS_V2)
    lake.run("ingest", "file", "--dataset", "customers", "--path", "customers2.csv")
    assert lake.version("raw/customers") > first
    v2 = v1 + as_dicts(CUSTOMERS_V2)
    got = lake.query(f'SELECT id, email, region FROM raw."customers@v{first}"', as_="alice")
    assert pick(got, ["id", "email", "region"]) == seen_by_filtered(v1, "eu", ["id", "email", "region"])
    got = lake.query("SELECT id, email, region FROM raw.customers", as_="alice")
    assert pick(got, ["id", "email", "region"]) == seen_by_filtered(v2, "eu", ["id", "email", "region"])
    got = lake.query(f'SELECT id, email FROM raw."customers@v{first}" ORDER BY id', as_="carol")
    assert pick(got, ["id", "email"]) == everything

    # information_schema works for alice; the system tables do not.
    got = lake.query("SELECT table_schema, table_name FROM information_schema.tables "
                     "WHERE table_schema = 'raw'", as_="alice")
    assert {"table_schema": "raw", "table_name": "customers"} in got, got
    lake.denied_query("SELECT * FROM system.runs", "alice", "system tables are for members of the admin role")
    lake.denied_query("SELECT * FROM system.audit", "alice", "system tables are for members of the admin role")
    assert lake.query("SELECT * FROM system.runs"), "admin reads system.runs"

    # No grant: denied, never empty.
    lake.denied_query("SELECT * FROM raw.customers", "nobody", "`nobody` lacks SELECT on raw/customers")
    lake.denied_query("SELECT count(*) FROM raw.customers", "nobody", "`nobody` lacks SELECT on raw/customers")
    lake.denied(["query", "--from", "raw/customers", "--format", "json"], "nobody",
                "`nobody` lacks SELECT on raw/customers")

    # Column grants (dave: id, region; row filter region=us applies).
    got = lake.query("SELECT id, region FROM raw.customers", as_="dave")
    v2_us = [r for r in v2 if r["region"] == "us"]
    assert by_id(got) == [{"id": r["id"], "region": "us"} for r in by_id(v2_us)]
    err = lake.denied_query("SELECT * FROM raw.customers", "dave", "`dave` lacks SELECT on column raw/customers.")
    named = re.search(r"raw/customers\.(\w+)", err).group(1)
    assert named not in ("id", "region") and named in lake.columns("raw/customers"), err
    lake.denied_query("SELECT email FROM raw.customers", "dave", "`dave` lacks SELECT on column raw/customers.email")
    lake.denied_query("SELECT id FROM raw.customers WHERE email LIKE 'a%'", "dave", "raw/customers.email")
    lake.denied_query("SELECT id FROM raw.customers ORDER BY ssn", "dave", "raw/customers.ssn")
    lake.denied_query("SELECT count(DISTINCT email) FROM raw.customers", "dave", "raw/customers.email")
    lake.denied(["query", "--from", "raw/customers", "--select", "id,email", "--format", "json"], "dave",
                "raw/customers.email")
    assert lake.query("SELECT count(*) AS n FROM raw.customers", as_="dave") == [{"n": len(v2_us)}]

    # SELECT * is refused for want of exactly the one column not granted (ssn).
    lake.run("principal", "add", "erin", "--attr", "region=eu")
    all_but_ssn = [c for c in lake.columns("raw/customers") if c != "ssn"]
    assert "email" in all_but_ssn and len(all_but_ssn) == len(lake.columns("raw/customers")) - 1
    lake.run("grant", "select", "raw/customers", "--columns", ",".join(all_but_ssn), "--to", "erin")
    lake.denied_query("SELECT * FROM raw.customers", "erin", "`erin` lacks SELECT on column raw/customers.ssn")
    got = lake.query("SELECT id, name, email, region FROM raw.customers", as_="erin")
    assert pick(got, ["id", "name", "email", "region"]) == seen_by_filtered(v2, "eu", ["id", "name", "email", "region"])

    # USAGE on the zone is needed besides SELECT; revoking SELECT denies again.
    lake.run("principal", "add", "frank", "--attr", "region=eu")
    lake.run("grant", "select", "raw/customers", "--to", "frank")
    assert lake.query("SELECT count(*) AS n FROM raw.customers", as_="frank") == \
        [{"n": sum(1 for r in v2 if r["region"] == "eu")}]
    lake.run("revoke", "usage", "raw", "--to", "frank")
    lake.denied_query("SELECT id FROM raw.customers", "frank", "`frank` lacks USAGE on zone raw")
    lake.run("grant", "usage", "raw", "--to", "frank")
    lake.run("revoke", "select", "raw/customers", "--to", "frank")
    lake.denied_query("SELECT id FROM raw.customers", "frank", "`frank` lacks SELECT on raw/customers")

    # Role membership drives the exemptions: out of pii_reader, carol has no grant at all.
    lake.run("role", "unassign", "pii_reader", "--from", "carol")
    lake.denied_query("SELECT id FROM raw.customers", "carol", "`carol` lacks SELECT on raw/customers")


# --------------------------------------------------------------------------- #
# 2. API tokens
# --------------------------------------------------------------------------- #

def parse_time(text: str) -> dt.datetime:
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text)


def test_tokens(tmp_path: Path):
    lake = customers_lake(tmp_path / "lake")
    v1 = as_dicts(CUSTOMERS_V1)
    sql = "SELECT id, email FROM raw.customers"
    alice_sees = seen_by_filtered(v1, "eu", ["id", "email"])

    before = dt.datetime.now(dt.timezone.utc)
    p = lake.run("token", "create", "alice", "--json")
    created = json.loads(p.stdout)
    assert set(created) >= {"id", "token", "principal", "expires_at"}, created
    assert created["principal"] == "alice", created
    secret = created["token"]
    assert isinstance(secret, str) and len(secret) >= 32, created
    expires = parse_time(created["expires_at"])
    assert before + dt.timedelta(days=89) < expires < before + dt.timedelta(days=91), created  # default 90d

    # The token acts as alice: masked and filtered, by flag and by env.
    got = json_lines(lake.run("query", sql, "--format", "json", token=secret).stdout)
    assert pick(got, ["id", "email"]) == alice_sees
    got = json_lines(lake.run("query", sql, "--format", "json", env={"TARN_TOKEN": secret}).stdout)
    assert pick(got, ["id", "email"]) == alice_sees
    # alice's token does not give alice's denials away either
    p = lake.run("query", "SELECT * FROM system.runs", token=secret, ok=None)
    assert p.returncode == 1 and "permission denied" in p.stderr and "`alice`" in p.stderr, describe(p)
    queries = lake.audit("--action", "query")
    assert queries and queries[0]["principal"] == "alice", queries[:2]

    # Listing never shows a secret.
    p = lake.run("token", "list", "--json")
    listed = json.loads(p.stdout)
    mine = [t for t in listed if t["id"] == created["id"]]
    assert len(mine) == 1 and mine[0]["principal"] == "alice" and mine[0]["revoked_at"] is None, listed
    assert all("token" not in t and "token_hash" not in t for t in listed), listed
    assert secret not in p.stdout and secret.split(".")[-1] not in p.stdout
    p = lake.run("token", "list")
    assert created["id"] in p.stdout and secret.split(".")[-1] not in p.stdout, describe(p)

    # Revoked: refused, nothing printed.
    lake.run("token", "revoke", created["id"])
    p = lake.run("query", sql, "--format", "json", token=secret, ok=False)
    assert "revoked" in p.stderr and p.stdout.strip() == "", describe(p)
    listed = json.loads(lake.run("token", "list", "--json").stdout)
    assert next(t for t in listed if t["id"] == created["id"])["revoked_at"], listed

    # Expired: refused.
    expired = json.loads(lake.run("token", "create", "alice", "--expires-in", "0m", "--json").stdout)
    time.sleep(0.05)
    p = lake.run("query", sql, "--format", "json", token=expired["token"], ok=False)
    assert "expired" in p.stderr and p.stdout.strip() == "", describe(p)
    # Unknown: refused.
    p = lake.run("query", sql, "--format", "json", token="tk_000000000000.deadbeef", ok=False)
    assert p.stdout.strip() == "", describe(p)
    # A secret that is one character off: refused.
    forged = secret[:-1] + ("0" if secret[-1] != "0" else "1")
    p = lake.run("query", sql, "--format", "json", token=forged, ok=False)
    assert p.stdout.strip() == "", describe(p)

    uses = lake.audit("--action", "token_use")
    ok_uses = [e for e in uses if e["target"] == created["id"] and e["allowed"]]
    assert len(ok_uses) >= 3 and all(e["principal"] == "alice" for e in ok_uses), uses
    refused = [e for e in uses if e["target"] == created["id"] and not e["allowed"]]
    assert any("revoked" in json.dumps(e["detail"]) for e in refused), uses
    assert any(e["target"] == expired["id"] and not e["allowed"]
               and "expired" in json.dumps(e["detail"]) for e in uses), uses
    assert all(secret not in json.dumps(e) for e in uses), "the audit log holds a secret"


# --------------------------------------------------------------------------- #
# 3. The audit log
# --------------------------------------------------------------------------- #

def test_audit_log(tmp_path: Path):
    lake = customers_lake(tmp_path / "lake")
    v1 = as_dicts(CUSTOMERS_V1)
    eu = [r for r in v1 if r["region"] == "eu"]
    us = [r for r in v1 if r["region"] == "us"]

    # The setup's grant changes are logged.
    setup = lake.audit()
    actions = Counter(e["action"] for e in setup)
    for a in ("grant", "mask", "row_filter"):
        assert actions[a] >= 1, (a, actions)
    grants = [e for e in setup if e["action"] == "grant"]
    assert any(e["target"] == "user:alice" and "SELECT table:raw/customers" in json.dumps(e["detail"])
               for e in grants), grants
    assert any(e["target"] == "role:pii_reader" for e in grants), grants
    mask = next(e for e in setup if e["action"] == "mask")
    assert "raw/customers.email" in mask["target"] and mask["principal"] == "admin", mask
    rf = next(e for e in setup if e["action"] == "row_filter")
    assert "principal_attr('region')" in json.dumps(rf["detail"]), rf

    n_before = len(lake.audit("--action", "query"))
    # (principal, sql, allowed, rows returned, columns read)
    runs = [
        ("alice", "SELECT id, email FROM raw.customers", True, len(eu), {"id", "email"}),
        ("bob", "SELECT name FROM raw.customers WHERE id > 2", True,
         sum(1 for r in us if r["id"] > 2), {"name", "id"}),
        ("carol", "SELECT count(*) AS n FROM raw.customers", True, 1, set()),
        ("dave", "SELECT email FROM raw.customers", False, None, None),
        ("nobody", "SELECT * FROM raw.customers", False, None, None),
        ("alice", "SELECT * FROM system.runs", False, None, None),
        ("admin", "SELECT id, ssn FROM raw.customers", True, len(v1), {"id", "ssn"}),
    ]
    for who, sql, allowed, rows, _ in runs:
        p = lake.run("query", sql, "--format", "json", as_=who, ok=allowed)
        if allowed:
            assert len(json_lines(p.stdout)) == rows, describe(p)
    lake.run("revoke", "select", "raw/customers", "--to", "bob")
    lake.run("mask", "raw/customers", "ssn", "--with", "partial:4")
    lake.run("row-filter", "raw/customers", "id > 0", "--except-role", "pii_reader")

    events = lake.audit("--action", "query")
    assert all(e["action"] == "query" for e in events)
    assert len(events) == n_before + len(runs), f"one query event per query: {len(events)} events"
    mine = list(reversed(events[:len(runs)]))  # newest first -> run order
    for e, (who, sql, allowed, rows, cols) in zip(mine, runs):
        for k in ("id", "at", "principal", "action", "target", "allowed", "rows", "detail"):
            assert k in e, (k, e)
        assert e["principal"] == who and e["allowed"] is allowed, (who, sql, e)
        if allowed:
            assert e["rows"] == rows, (sql, e)
            assert any(t.startswith("raw.customers") for t in e["detail"]["tables"]), e
            assert set(e["detail"].get("columns") or []) >= {f"raw/customers.{c}" for c in cols}, e
            assert e["detail"].get("plan_hash"), e
        else:
            assert e["rows"] in (None, 0), e
            assert "permission denied" in e["detail"].get("reason", ""), e

    # grant changes made after the queries
    recent = lake.audit(limit=3)
    assert [e["action"] for e in recent] == ["row_filter", "mask", "revoke"], recent
    assert recent[2]["target"] == "user:bob" and "SELECT" in json.dumps(recent[2]["detail"]), recent
    assert recent[1]["target"] == "raw/customers.ssn", recent
    assert all(e["principal"] == "admin" and e["allowed"] for e in recent), recent

    # system.audit: admin reads the same log; alice is refused.
    rows = lake.query("SELECT id, principal, action, allowed FROM system.audit WHERE action = 'query'")
    assert {r["id"] for r in rows} >= {e["id"] for e in mine}, rows
    lake.denied_query("SELECT * FROM system.audit", "alice", "system tables are for members of the admin role")
    p = lake.run("audit", "--json", as_="alice", ok=False)
    assert "permission denied" in p.stderr and p.stdout.strip() == "", describe(p)

    # Append-only in the metadata store itself.
    db = lake.root / "lake" / "metadata.db"
    con = sqlite3.connect(db)
    try:
        count = con.execute("SELECT count(*) FROM audit_log").fetchone()[0]
        assert count >= len(events)
        with pytest.raises(sqlite3.DatabaseError):
            con.execute("UPDATE audit_log SET principal = 'mallory'")
            con.commit()
        con.rollback()
        with pytest.raises(sqlite3.DatabaseError):
            con.execute("DELETE FROM audit_log")
            con.commit()
        con.rollback()
        assert con.execute("SELECT count(*) FROM audit_log").fetchone()[0] == count
        assert con.execute("SELECT count(*) FROM audit_log WHERE principal = 'mallory'").fetchone()[0] == 0
    finally:
        con.close()

    # Every query event records its statement, allowed or not.
    for e, (who, sql, allowed, rows, cols) in zip(mine, runs):
        assert e["detail"].get("statement") == sql, f"{who}'s statement not recorded: {e}"

    # --principal filters to one principal's events.
    alice = lake.audit("--principal", "alice")
    assert alice and all(e["principal"] == "alice" for e in alice), alice
    assert {e["id"] for e in alice} >= {e["id"] for e, r in zip(mine, runs) if r[0] == "alice"}


# --------------------------------------------------------------------------- #
# The example pipeline (module-scoped: tests 4 and 5 only read it)
# --------------------------------------------------------------------------- #

@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Lake:
    """examples/user_events with the OpenLineage file sink: countries and day1
    ingested, `tarn process user_events` once."""
    lake = example_lake(tmp_path_factory.mktemp("pipeline") / "user_events", openlineage_file="lineage.jsonl")
    ingest_day1_and_process(lake)
    return lake


def file_uri(path: Path) -> str:
    return path.resolve().as_uri()


# --------------------------------------------------------------------------- #
# 4. Lineage
# --------------------------------------------------------------------------- #

def lineage_json(lake: Lake, table: str, *args: Any) -> dict:
    g = json.loads(lake.run("lineage", table, "--format", "json", *args).stdout)
    for k in ("root", "nodes", "edges", "columns"):
        assert k in g, (k, g)
    return g


def test_lineage_of_example(pipeline: Lake):
    lake = pipeline
    day1_uri = file_uri(lake.root / "data" / "day1" / "user_events.csv")
    countries_uri = file_uri(lake.root / "data" / "countries.csv")

    g = lineage_json(lake, MART, "--upstream")
    assert g["root"] == MART, g["root"]
    edges = {(e["from"], e["to"], e["job"]) for e in g["edges"]}
    want = {
        (day1_uri, RAW, "ingest:user_events"),
        (RAW, CLEANSED, "cleanse:user_events"),
        (CLEANSED, CURATED, "curate:user_events"),
        ("raw/countries", CURATED, "curate:user_events"),   # the lookup
        (countries_uri, "raw/countries", "ingest:countries"),
        (CURATED, MART, f"consume:{MART_NAME}"),
    }
    missing = want - edges
    assert not missing, f"missing edges {sorted(missing)}; got {sorted(edges)}"

    nodes = {n["id"]: n for n in g["nodes"]}
    assert {x for e in edges for x in e[:2]} <= set(nodes), (sorted(nodes), sorted(edges))
    for table in (RAW, "raw/countries", CLEANSED, CURATED, MART):
        assert nodes[table]["kind"] == "table" and nodes[table]["version"] == lake.version(table), nodes[table]
    for uri in (day1_uri, countries_uri):
        assert nodes[uri]["kind"] != "table" and nodes[uri]["version"] is None, nodes[uri]

    cols = {(c["from"], c["to"]) for c in g["columns"]}
    for c in tp.CLEANSED_COLUMNS:
        assert (f"{RAW}.{c}", f"{CLEANSED}.{c}") in cols, c
    assert not any(to == f"{CLEANSED}.user_agent" for _, to in cols), "user_agent is dropped"
    for c in tp.CLEANSED_COLUMNS:
        assert (f"{CLEANSED}.{c}", f"{CURATED}.{c}") in cols, c
    for want_edge in [
        ("raw/countries.country_name", f"{CURATED}.country_name"),
        ("raw/countries.region", f"{CURATED}.region"),
        (f"{CLEANSED}.event_type", f"{CURATED}.is_purchase"),
        (f"{CLEANSED}.timestamp", f"{CURATED}.hour_of_day"),
        (f"{CURATED}._partition_date", f"{MART}.day"),
        (f"{CURATED}.event_type", f"{MART}.event_type"),
        (f"{CURATED}.user_id", f"{MART}.users"),
        (f"{CURATED}.amount", f"{MART}.revenue"),
    ]:
        assert want_edge in cols, want_edge
    kinds = {(c["from"], c["to"]): c["kind"] for c in g["columns"]}
    assert kinds[(f"{CURATED}.event_type", f"{MART}.event_type")] == "identity"
    assert kinds[(f"{CURATED}.amount", f"{MART}.revenue")] != "identity"  # sum(amount)

    # --depth 1: one hop up.
    g1 = lineage_json(lake, MART, "--upstream", "--depth", 1)
    assert {n["id"] for n in g1["nodes"]} == {MART, CURATED}, g1["nodes"]

    # dot and mermaid name every node and draw every edge.
    dot = lake.run("lineage", MART, "--upstream", "--format", "dot").stdout
    assert dot.lstrip().startswith("digraph"), dot
    mermaid = lake.run("lineage", MART, "--upstream", "--format", "mermaid").stdout
    assert re.match(r"\s*(flowchart|graph)\b", mermaid), mermaid
    for n in nodes:
        assert n in dot, f"{n} not in the dot output"
        assert n in mermaid, f"{n} not in the mermaid output"
    assert dot.count("->") == len(g["edges"]), dot
    assert len(re.findall(r"-->", mermaid)) == len(g["edges"]), mermaid

    # Downstream of raw/user_events: the three tables built from it, not the lookup or the files.
    gd = lineage_json(lake, RAW, "--downstream")
    assert {n["id"] for n in gd["nodes"]} == {RAW, CLEANSED, CURATED, MART}, gd["nodes"]
    text = lake.run("lineage", RAW, "--downstream").stdout
    for t in (RAW, CLEANSED, CURATED, MART):
        assert t in text, (t, text)
    assert "raw/countries" not in text and "file://" not in text, text


# --------------------------------------------------------------------------- #
# 5. OpenLineage events
# --------------------------------------------------------------------------- #

def check_runs(events: list[dict]) -> dict[str, list[dict]]:
    """Every event valid; per run id a START then a COMPLETE (or FAIL). Returns
    the events by job name."""
    for e in events:
        validate_event(e)
    by_run: dict[str, list[dict]] = {}
    for e in events:
        by_run.setdefault(e["run"]["runId"], []).append(e)
    by_job: dict[str, list[dict]] = {}
    for run_id, evs in by_run.items():
        types = [e["eventType"] for e in evs]
        assert types in (["START", "COMPLETE"], ["START", "FAIL"]), (run_id, types)
        assert len({e["job"]["name"] for e in evs}) == 1, evs
        assert evs[0]["eventTime"] <= evs[1]["eventTime"], evs
        by_job.setdefault(evs[0]["job"]["name"], []).extend(evs)
    return by_job


PIPELINE_JOBS = {"ingest:countries", "ingest:user_events", "cleanse:user_events",
                 "curate:user_events", f"consume:{MART_NAME}"}


def completes(by_job: dict, job: str) -> list[dict]:
    return [e for e in by_job[job] if e["eventType"] == "COMPLETE"]


def test_openlineage_events(pipeline: Lake, tmp_path: Path):
    lake = pipeline
    lines = (lake.root / "lineage.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    by_job = check_runs(events)
    assert set(by_job) == PIPELINE_JOBS, sorted(by_job)
    for job in PIPELINE_JOBS:
        assert len(completes(by_job, job)) == 1, (job, by_job[job])

    ingest = completes(by_job, "ingest:user_events")[0]
    assert [i["name"] for i in ingest["inputs"]] == [file_uri(lake.root / "data" / "day1" / "user_events.csv")], ingest
    assert [o["name"] for o in ingest["outputs"]] == [RAW], ingest

    cleanse = completes(by_job, "cleanse:user_events")[0]
    assert [i["name"] for i in cleanse["inputs"]] == [RAW] and [o["name"] for o in cleanse["outputs"]] == [CLEANSED]
    email = cleanse["outputs"][0]["facets"]["columnLineage"]["fields"]["email"]["inputFields"]
    assert {(f["name"], f["field"]) for f in email} == {(RAW, "email")}, email

    curate = completes(by_job, "curate:user_events")[0]
    assert {i["name"] for i in curate["inputs"]} == {CLEANSED, "raw/countries"}, curate["inputs"]
    out = curate["outputs"]
    assert [o["name"] for o in out] == [CURATED], out
    facets = out[0]["facets"]
    assert "columnLineage" in facets and "schema" in facets, sorted(facets)
    assert [f["name"] for f in facets["schema"]["fields"]] == lake.columns(CURATED), facets["schema"]
    lineage = facets["columnLineage"]["fields"]
    assert ("raw/countries", "country_name") in {(f["name"], f["field"])
                                                 for f in lineage["country_name"]["inputFields"]}, lineage["country_name"]
    assert (CLEANSED, "event_type") in {(f["name"], f["field"]) for f in lineage["is_purchase"]["inputFields"]}
    stats = out[0]["outputFacets"]["outputStatistics"]
    assert stats["rowCount"] == tp.model_for(DAY1).runs[0].curate_out, stats
    # The rows each stage read from its upstream (dataQualityMetrics).
    metrics = cleanse["inputs"][0]["inputFacets"]["dataQualityMetrics"]
    assert metrics["rowCount"] == tp.model_for(DAY1).runs[0].cleanse_in, metrics
    upstream = [i for i in curate["inputs"] if i["name"] == CLEANSED][0]
    assert upstream["inputFacets"]["dataQualityMetrics"]["rowCount"] == tp.model_for(DAY1).runs[0].curate_in

    consume = completes(by_job, f"consume:{MART_NAME}")[0]
    assert [i["name"] for i in consume["inputs"]] == [CURATED] and [o["name"] for o in consume["outputs"]] == [MART]
    namespaces = {e["job"]["namespace"] for e in events}
    assert len(namespaces) == 1, namespaces

    # The same pipeline against an HTTP endpoint (OPENLINEAGE_URL), then a failing curate.
    received: list[tuple[str, str, bytes]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((self.path, self.headers.get("Content-Type") or "", body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {"OPENLINEAGE_URL": f"http://127.0.0.1:{server.server_address[1]}"}
        http_lake = example_lake(tmp_path / "http")
        ingest_day1_and_process(http_lake, env=env)
        assert received, "no event was POSTed"
        assert {path for path, _, _ in received} == {"/api/v1/lineage"}, received
        assert all("json" in ct for _, ct, _ in received), received
        posted = [json.loads(b) for _, _, b in received]
        by_job = check_runs(posted)
        assert set(by_job) == PIPELINE_JOBS, sorted(by_job)
        assert not (http_lake.root / "lineage.jsonl").exists()

        # A `fail` expectation stops curate: START then FAIL with an errorMessage facet.
        cfg = http_lake.config_data()
        cfg["datasets"]["user_events"]["curate"]["expectations"].append(
            {"name": "tiny", "row_count": {"max": 1}, "severity": "fail"})
        http_lake.write_yaml("tarn-tiny.yaml", cfg)
        http_lake.run("ingest", "file", "--dataset", "user_events", "--path", "data/day2/user_events.csv", env=env)
        received.clear()
        p = http_lake.run("process", "user_events", config="tarn-tiny.yaml", env=env, ok=False)
        assert "tiny" in p.stdout + p.stderr, describe(p)
        posted = [json.loads(b) for _, _, b in received]
        by_job = check_runs(posted)
        assert set(by_job) == {"cleanse:user_events", "curate:user_events"}, sorted(by_job)  # consume never ran
        assert [e["eventType"] for e in by_job["cleanse:user_events"]] == ["START", "COMPLETE"]
        assert [e["eventType"] for e in by_job["curate:user_events"]] == ["START", "FAIL"]
        fail = by_job["curate:user_events"][1]
        msg = fail["run"]["facets"]["errorMessage"]
        assert "tiny" in msg["message"], msg
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- #
# 6. Compliance rules
# --------------------------------------------------------------------------- #

BASE_RULES = [
    {"name": "documented", "kind": "required_metadata", "zones": ["raw", "cleansed", "curated"],
     "fields": ["owner", "description"], "blocking": False},
    {"name": "pii-masked", "kind": "pii_masked", "blocking": True},
    {"name": "pii-retention", "kind": "retention", "classification": "pii", "max_days": 3650},
    {"name": "no-negative", "kind": "sql",
     "sql": "SELECT count(*) FROM curated.user_events WHERE amount < 0", "datasets": ["user_events"]},
]


def compliance(lake: Lake, config: str = "tarn.yaml") -> tuple[subprocess.CompletedProcess, list[dict]]:
    p = lake.run("compliance", "check", "--json", config=config, ok=None)
    assert p.returncode in (0, 1), describe(p)
    results = json.loads(p.stdout)
    assert isinstance(results, list), p.stdout
    for r in results:
        for k in ("rule", "kind", "dataset", "zone", "passed", "blocking", "evidence"):
            assert k in r, (k, r)
    assert p.returncode == (1 if any(not r["passed"] for r in results) else 0), describe(p)
    return p, results


def results_of(results: list[dict], rule: str) -> dict[tuple, dict]:
    return {(r["dataset"], r["zone"]): r for r in results if r["rule"] == rule}


def test_compliance_check_example(tmp_path: Path):
    lake = example_lake(tmp_path / "user_events")
    ingest_day1_and_process(lake)
    m = tp.model_for(DAY1)
    lake.write_yaml("compliance.yaml", {"rules": BASE_RULES})

    # The example keeps cleansed rows 3650 days: every rule passes.
    p, results = compliance(lake)
    assert p.returncode == 0 and all(r["passed"] for r in results), results
    cfg = lake.config_data()
    assert cfg["policies"]["cleansed"]["retention"]["days"] == 3650

    # Seeded violation: without a cleansed retention the retention rule fails there only.
    forever = json.loads(json.dumps(cfg))
    del forever["policies"]["cleansed"]["retention"]
    lake.write_yaml("tarn-forever.yaml", forever)
    p, results = compliance(lake, "tarn-forever.yaml")
    assert p.returncode == 1
    ret = results_of(results, "pii-retention")
    assert ret[("user_events", "cleansed")]["passed"] is False, ret
    assert "retention" in ret[("user_events", "cleansed")]["evidence"], ret
    assert ret[("user_events", "curated")]["passed"] is True, ret
    assert [r for r in results if not r["passed"]] == [ret[("user_events", "cleansed")]], results

    doc = results_of(results, "documented")
    assert {("countries", "raw"), ("user_events", "raw"), ("user_events", "cleansed"),
            ("user_events", "curated")} <= set(doc), doc
    pii = results_of(results, "pii-masked")
    assert {("user_events", "cleansed"), ("user_events", "curated")} <= set(pii), pii
    assert all(r["blocking"] for r in pii.values()), pii
    assert set(results_of(results, "pii-retention")) == {("user_events", "cleansed"), ("user_events", "curated")}
    sql = [r for r in results if r["rule"] == "no-negative"]
    assert len(sql) == 1 and sql[0]["passed"], sql
    assert sum(1 for r in m.curated.values() if r["amount"] is not None and r["amount"] < 0) == 0

    # A longer retention than allowed fails.
    long_cfg = json.loads(json.dumps(cfg))
    long_cfg["policies"]["curated"]["retention"]["days"] = 5000
    lake.write_yaml("tarn-long.yaml", long_cfg)
    _, results = compliance(lake, "tarn-long.yaml")
    ret = results_of(results, "pii-retention")
    assert ret[("user_events", "curated")]["passed"] is False and "5000" in ret[("user_events", "curated")]["evidence"], ret
    assert ret[("user_events", "cleansed")]["passed"] is True, ret

    # (b) an SQL rule that fails reports the value the query returned.
    big = sum(1 for r in m.curated.values() if r["amount"] is not None and r["amount"] > 100)
    assert big > 0
    lake.write_yaml("compliance.yaml", {"rules": BASE_RULES + [
        {"name": "no-big", "kind": "sql", "sql": "SELECT count(*) FROM curated.user_events WHERE amount > 100"}]})
    p, results = compliance(lake)
    assert p.returncode == 1
    failed = [r for r in results if not r["passed"]]
    assert [r["rule"] for r in failed] == ["no-big"], failed
    assert re.search(rf"\b{big}\b", failed[0]["evidence"]), (big, failed)
    lake.write_yaml("compliance.yaml", {"rules": BASE_RULES})

    # (a) card_number no longer masked by cleanse: pii-masked fails, and blocks `process`.
    nomask = json.loads(json.dumps(cfg))
    del nomask["datasets"]["user_events"]["cleanse"]["mask"]["card_number"]
    lake.write_yaml("tarn-nomask.yaml", nomask)
    p, results = compliance(lake, "tarn-nomask.yaml")
    assert p.returncode == 1
    pii = results_of(results, "pii-masked")
    failed = [r for r in pii.values() if not r["passed"]]
    assert failed and all(r["dataset"] == "user_events" for r in failed), pii
    assert ("user_events", "cleansed") in {(r["dataset"], r["zone"]) for r in failed}, pii
    for r in failed:
        assert "card_number" in r["evidence"] and "email" not in r["evidence"], r
    assert all(r["passed"] for r in results if r["rule"] != "pii-masked"), results

    # Ingest is not blocked (the rule is about the zones after raw) ...
    lake.run("ingest", "file", "--dataset", "user_events", "--path", "data/day2/user_events.csv",
             config="tarn-nomask.yaml")
    tables = (CLEANSED, CLEANSED_Q, CURATED, CURATED_Q, MART)
    versions = {t: lake.version(t) for t in tables}
    # ... process is, and commits nothing.
    p = lake.run("process", "user_events", config="tarn-nomask.yaml", ok=False)
    assert "compliance rule `pii-masked` blocks process of user_events" in p.stderr, describe(p)
    assert "card_number" in p.stderr, describe(p)
    assert {t: lake.version(t) for t in tables} == versions, "a blocked process committed"
    cards = {r["card_number"] for r in tp.read_csv(DAY2) if r["card_number"]}
    assert not any(r["card_number"] in cards for r in lake.rows(CLEANSED)), "plain card numbers in cleansed"
    # With the mask back, the same process goes through.
    lake.run("process", "user_events")
    assert lake.version(CLEANSED) > versions[CLEANSED]

    # required_metadata: a dataset without an owner fails; blocking, its ingest is refused.
    things = json.loads(json.dumps(cfg))
    things["datasets"]["things"] = {"description": "Things without an owner",
                                    "source": {"path": "data/things.csv"}}
    lake.write_yaml("tarn-things.yaml", things)
    write_csv(lake.root / "data" / "things.csv", ["id", "label"], [(1, "a"), (2, "b")])
    lake.run("ingest", "file", "--dataset", "things", config="tarn-things.yaml")  # not blocking yet
    p, results = compliance(lake, "tarn-things.yaml")
    assert p.returncode == 1
    doc = results_of(results, "documented")
    assert doc[("things", "raw")]["passed"] is False and "owner" in doc[("things", "raw")]["evidence"], doc
    assert "description" not in doc[("things", "raw")]["evidence"], doc
    assert doc[("user_events", "raw")]["passed"] is True, doc
    rules = json.loads(json.dumps(BASE_RULES))
    rules[0]["blocking"] = True
    lake.write_yaml("compliance.yaml", {"rules": rules})
    raw_version = lake.version("raw/things")
    write_csv(lake.root / "data" / "things2.csv", ["id", "label"], [(3, "c")])
    p = lake.run("ingest", "file", "--dataset", "things", "--path", "data/things2.csv",
                 config="tarn-things.yaml", ok=False)
    assert "compliance rule `documented` blocks ingest of things" in p.stderr, describe(p)
    assert lake.version("raw/things") == raw_version, "a blocked ingest committed"
    # a documented dataset still ingests
    lake.run("ingest", "file", "--dataset", "countries", "--force", config="tarn-things.yaml")


# --------------------------------------------------------------------------- #
# 7. PII classification
# --------------------------------------------------------------------------- #

def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_complete(prefix: str, rng: random.Random, length: int = 16) -> str:
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - 1 - len(prefix)))
    for check in "0123456789":
        if luhn_ok(body + check):
            return body + check
    raise AssertionError("unreachable")


def make_iban(country: str, bban: str) -> str:
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def iban_ok(iban: str) -> bool:
    s = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in s)) % 97 == 1


PEOPLE_COLUMNS = ["email", "phone", "card", "ssn", "ip", "iban", "first_name", "product", "amount", "order_ref"]
FIRST_NAMES = ["Anna", "Bernd", "Clara", "David", "Emma", "Felix", "Greta", "Hans", "Ida", "Jonas",
               "Karl", "Lena", "Maria", "Noah", "Olga", "Paul", "Rita", "Sven", "Tina", "Ulrich"]
PRODUCTS = ["chair", "table", "lamp", "sofa", "desk", "shelf", "rug", "bed", "mirror", "stool"]


def make_people(seed: int, n: int = 20) -> list[tuple]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        first = FIRST_NAMES[i % len(FIRST_NAMES)]
        card = luhn_complete(rng.choice(["4", "51", "52", "55"]), rng)
        iban = make_iban("DE", "".join(str(rng.randint(0, 9)) for _ in range(18)))
        while True:  # a 16-digit reference that is not a card number
            ref = "4" + "".join(str(rng.randint(0, 9)) for _ in range(15))
            if not luhn_ok(ref):
                break
        assert luhn_ok(card) and iban_ok(iban)
        rows.append((
            f"{first.lower()}.{seed}{i}@example.com",
            f"+49 30 {rng.randint(1000000, 9999999)}",
            card,
            f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
            f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            iban,
            first,
            rng.choice(PRODUCTS),
            f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}",
            ref,
        ))
    return rows


EXPECTED_TAGS = {"email": "pii:email", "phone": "pii:phone", "card": "pii:credit_card",
                 "ssn": "pii:national_id", "ip": "pii:ip_address", "iban": "pii:iban",
                 "first_name": "pii:person_name"}


def classify(lake: Lake, dataset: str, *args: Any) -> dict[str, dict]:
    entries = json.loads(lake.run("classify", dataset, "--json", *args).stdout)
    assert isinstance(entries, list), entries
    out: dict[str, dict] = {}
    for e in entries:
        for k in ("column", "tag", "source", "confidence", "evidence"):
            assert k in e, (k, e)
        assert e["column"] not in out, f"two entries for {e['column']}: {entries}"
        out[e["column"]] = e
    return out


def strong_tags(entries: dict[str, dict]) -> dict[str, str]:
    return {c: e["tag"] for c, e in entries.items() if e["tag"] and (e["confidence"] or 0) >= 0.8}


def test_pii_classification(tmp_path: Path):
    lake = init_lake(tmp_path / "lake")
    first = make_people(1)
    write_csv(lake.root / "people.csv", PEOPLE_COLUMNS, first)
    lake.run("ingest", "file", "--dataset", "people", "--path", "people.csv")

    tags = classify(lake, "people")
    strong = strong_tags(tags)
    assert strong == EXPECTED_TAGS, f"got {strong}"
    for col in EXPECTED_TAGS:
        assert tags[col]["source"] == "auto" and tags[col]["evidence"], tags[col]
    assert strong_tags(classify(lake, "people", "--detect")) == EXPECTED_TAGS

    # Manual decisions stick across a later ingest of new data.
    lake.run("classify", "people", "--set", "product=pii:custom", "--clear", "phone")
    second = make_people(2)
    write_csv(lake.root / "people2.csv", PEOPLE_COLUMNS, second)
    lake.run("ingest", "file", "--dataset", "people", "--path", "people2.csv")
    tags = classify(lake, "people")
    assert tags["product"]["tag"] == "pii:custom" and tags["product"]["source"] == "manual", tags["product"]
    assert "phone" not in strong_tags(tags), tags.get("phone")
    if "phone" in tags:
        assert tags["phone"]["source"] == "manual", tags["phone"]
    want = dict(EXPECTED_TAGS, product="pii:custom")
    del want["phone"]
    assert strong_tags(tags) == want, strong_tags(tags)
    tags = classify(lake, "people", "--detect")
    assert strong_tags(tags) == want, f"--detect overrode a manual decision: {strong_tags(tags)}"

    # The tags drive query masking under a pii_masked rule with unless_role.
    lake.write_yaml("compliance.yaml", {"rules": [
        {"name": "pii-masked", "kind": "pii_masked", "unless_role": "pii_reader", "mask": "redact",
         "blocking": True}]})
    lake.run("principal", "add", "pat")
    lake.run("principal", "add", "rita")
    lake.run("role", "add", "pii_reader")
    lake.run("role", "assign", "pii_reader", "--to", "rita")
    lake.run("grant", "select", "raw/people", "--to", "pat")
    lake.run("grant", "select", "raw/people", "--to", "rita")
    rows = [dict(zip(PEOPLE_COLUMNS, r)) for r in first + second]
    sql = "SELECT email, phone, product, amount, first_name FROM raw.people"

    got = lake.query(sql, as_="pat")
    assert len(got) == len(rows)
    assert {r["email"] for r in got} == {REDACTED}, "email (pii:email) is masked for pat"
    assert {r["first_name"] for r in got} == {REDACTED}, "first_name (pii:person_name) is masked for pat"
    assert {r["product"] for r in got} == {REDACTED}, "product (pii:custom, manual) is masked for pat"
    assert sorted(r["phone"] for r in got) == sorted(r["phone"] for r in rows), "phone was cleared"
    assert sorted(float(r["amount"]) for r in got) == sorted(float(r["amount"]) for r in rows)

    got = lake.query(sql, as_="rita")
    assert sorted(r["email"] for r in got) == sorted(r["email"] for r in rows), \
        f"a pii_reader member sees emails in clear, got {sorted(r['email'] for r in got)[:3]}"
    assert sorted(r["product"] for r in got) == sorted(r["product"] for r in rows)


# --------------------------------------------------------------------------- #
# 8. Erasure
# --------------------------------------------------------------------------- #

USER_TABLES = [RAW, CLEANSED, CLEANSED_Q, CURATED, CURATED_Q]
RAW_HEADER = next(csv.reader([DAY1.read_text().splitlines()[0]]))


def payload_user(payload: str | None) -> str | None:
    """The user_id field of a raw quarantine row's payload (the CSV record)."""
    if not payload:
        return None
    fields = next(csv.reader([payload]))
    if len(fields) != len(RAW_HEADER):
        return None
    return fields[RAW_HEADER.index("user_id")].strip()


def subject_rows(lake: Lake, subject: int) -> dict[str, int]:
    out = {t: sum(1 for r in lake.rows(t) if r["user_id"] == subject) for t in USER_TABLES}
    out[RAW_Q] = sum(1 for r in lake.rows(RAW_Q) if payload_user(r.get("payload")) == str(subject))
    if lake.exists(MART) and "user_id" in lake.columns(MART):  # the mart, if it has the column
        out[MART] = sum(1 for r in lake.rows(MART) if r.get("user_id") == subject)
    return out


def other_rows(lake: Lake, subject: int) -> dict[str, Counter]:
    """The rows of everyone else, per table (as a multiset of row identities)."""
    out = {}
    for t in USER_TABLES:
        out[t] = Counter((r["event_id"], r["revision"]) for r in lake.rows(t) if r["user_id"] != subject)
    out[RAW_Q] = Counter((r["source"], r["position"]) for r in lake.rows(RAW_Q)
                         if payload_user(r.get("payload")) != str(subject))
    return out


def all_versions(lake: Lake) -> dict[str, int | None]:
    return {t: lake.version(t) for t in USER_TABLES + [RAW_Q, MART]}


@pytest.fixture(scope="module")
def erased(tmp_path_factory) -> dict:
    """The example with day1 and day2 processed; a dry run, then the erasure
    of one user present in every zone. What was there before and after."""
    lake = example_lake(tmp_path_factory.mktemp("erase") / "user_events")
    ingest_day1_and_process(lake)
    lake.run("ingest", "file", "--dataset", "user_events", "--path", "data/day2/user_events.csv")
    lake.run("process", "user_events")

    per_user = {t: Counter(r["user_id"] for r in lake.rows(t)) for t in USER_TABLES}
    in_all = set.intersection(*(set(c) for c in per_user.values()))
    assert in_all, "no user in every zone"
    raw_q_users = Counter(payload_user(r.get("payload")) for r in lake.rows(RAW_Q))
    subject = sorted(in_all, key=lambda u: (raw_q_users.get(str(u), 0) == 0, u))[0]

    before = {"versions": all_versions(lake), "subject": subject_rows(lake, subject),
              "others": other_rows(lake, subject)}
    assert all(before["subject"][t] > 0 for t in USER_TABLES), before["subject"]

    dry = lake.run("erase", "--where", f"user_id = {subject}", "--dataset", "user_events",
                   "--dry-run", "--json")
    after_dry = {"versions": all_versions(lake), "subject": subject_rows(lake, subject)}

    p = lake.run("erase", "--where", f"user_id = {subject}", "--dataset", "user_events",
                 "--override-retention", "--json")
    after = {"versions": all_versions(lake), "subject": subject_rows(lake, subject),
             "others": other_rows(lake, subject)}
    return {"lake": lake, "subject": subject, "before": before, "dry": json.loads(dry.stdout),
            "after_dry": after_dry, "erase": json.loads(p.stdout), "after": after}


def test_erasure_dry_run_deletes_nothing(erased):
    before, dry = erased["before"], erased["dry"]
    assert erased["after_dry"]["versions"] == before["versions"], "a dry run committed"
    assert erased["after_dry"]["subject"] == before["subject"], "a dry run deleted rows"
    assert dry["report"]["dry_run"] is True and not dry.get("evidence"), dry
    counted = {t["table"]: t["rows_deleted"] for t in dry["report"]["tables"]}
    for t in USER_TABLES:
        assert counted.get(t) == before["subject"][t], (t, counted, before["subject"])


def test_erasure_removes_subject_everywhere(erased):
    lake, subject, before, after = erased["lake"], erased["subject"], erased["before"], erased["after"]
    report = erased["erase"]["report"]
    assert report["dry_run"] is False, report
    deleted = {t["table"]: t for t in report["tables"]}
    for t in USER_TABLES:
        assert deleted[t]["rows_deleted"] == before["subject"][t], (t, deleted.get(t), before["subject"])
        assert deleted[t]["version_before"] == before["versions"][t], (t, deleted[t], before["versions"])
        assert before["versions"][t] < deleted[t]["version_after"] <= after["versions"][t], (t, deleted[t])
        assert deleted[t]["files_vacuumed"] >= 1, deleted[t]

    # Gone at the current version (deltalake), the others' rows untouched.
    for t in USER_TABLES:
        assert after["subject"][t] == 0, (t, after["subject"])
        assert after["others"][t] == before["others"][t], f"{t}: other rows changed"
    # ... and through tarn.
    for zone in ("raw", "cleansed", "curated"):
        got = lake.query(f"SELECT count(*) AS n FROM {zone}.user_events WHERE user_id = {subject}")
        assert got == [{"n": 0}], (zone, got)
        total = lake.query(f"SELECT count(*) AS n FROM {zone}.user_events")
        assert total == [{"n": sum(before["others"][f"{zone}/user_events"].values())}], (zone, total)

    # The raw quarantine keeps rejected records whole: the subject's go too.
    assert before["subject"][RAW_Q] > 0, "the example rejects some of this user's records"
    assert after["subject"][RAW_Q] == 0, \
        f"{after['subject'][RAW_Q]} of the subject's records are still in {RAW_Q} (skipped: {report['skipped']})"
    assert after["others"][RAW_Q] == before["others"][RAW_Q]


def test_erasure_evidence_and_audit(erased):
    lake, subject, before = erased["lake"], erased["subject"], erased["before"]
    out = erased["erase"]
    ev = out["evidence"]
    for k in ("id", "at", "principal", "predicate", "tables"):
        assert k in ev, (k, ev)
    assert ev["principal"] == "admin" and ev["predicate"] == f"user_id = {subject}", ev
    assert ev["tables"] == out["report"]["tables"], ev
    found = sum(before["subject"].values())
    assert sum(t["rows_deleted"] for t in ev["tables"]) == found, \
        (f"evidence sums to {sum(t['rows_deleted'] for t in ev['tables'])}, "
         f"the subject had {found} rows: {before['subject']}")

    events = lake.audit("--action", "erase")
    assert len(events) == 1, events
    e = events[0]
    assert e["principal"] == "admin" and e["allowed"] is True, e
    assert e["rows"] == sum(t["rows_deleted"] for t in ev["tables"]), e
    assert e["detail"].get("erasure") == ev["id"] and e["detail"].get("predicate") == ev["predicate"], e


def test_erasure_old_versions_unreadable(erased):
    lake, subject, before = erased["lake"], erased["subject"], erased["before"]
    for t in (RAW, CLEANSED, CURATED):
        zone, name = t.split("/")
        old = before["versions"][t]
        # deltalake: the files are vacuumed; an old version fails or has no subject rows
        try:
            rows = DeltaTable(str(lake.path(t)), version=old).to_pyarrow_table().to_pylist()
        except Exception:  # noqa: BLE001 - the vacuumed files are gone: that is the point
            rows = []
        assert not any(r.get("user_id") == subject for r in rows), f"{t}@v{old} still has the subject"
        # tarn refuses time travel to before the erasure, saying why.
        for sql in (f'SELECT * FROM {zone}."{name}@v{old}" WHERE user_id = {subject}',
                    f'SELECT count(*) AS n FROM {zone}."{name}@v{old}"'):
            p = lake.run("query", sql, "--format", "json", ok=None)
            assert p.returncode != 0, f"time travel before the erasure answered\n{describe(p)}"
            assert "erasure" in p.stderr, describe(p)
    # the current version still reads
    assert lake.query(f'SELECT count(*) AS n FROM raw."user_events@v{lake.version(RAW)}" WHERE user_id = {subject}') \
        == [{"n": 0}]


def test_erasure_then_process_is_stable(erased):
    """Runs last among the erasure tests: it processes the erased lake again."""
    lake, subject, after = erased["lake"], erased["subject"], erased["after"]
    lake.run("process", "user_events")
    assert all(n == 0 for t, n in subject_rows(lake, subject).items() if t != RAW_Q), subject_rows(lake, subject)
    now = other_rows(lake, subject)
    for t in USER_TABLES:
        assert now[t] == after["others"][t], f"{t}: rows changed after re-processing"
    for t in (CLEANSED, CURATED):
        ids = Counter(r["event_id"] for r in lake.rows(t))
        assert not [k for k, n in ids.items() if n > 1], f"{t}: duplicated rows"
    # a second run has nothing to do
    v = all_versions(lake)
    lake.run("process", "user_events")
    assert all_versions(lake) == v


def test_erasure_refused_before_process_changes_nothing(tmp_path: Path):
    """Erase refuses while a stage has not processed its upstream, and then
    commits nothing anywhere (no partial erasure without evidence)."""
    lake = example_lake(tmp_path / "user_events")
    ingest_day1_and_process(lake)
    lake.run("ingest", "file", "--dataset", "user_events", "--path", "data/day2/user_events.csv")
    subject = sorted(set.intersection(*(set(r["user_id"] for r in lake.rows(t)) for t in (RAW, CLEANSED, CURATED))))[0]
    versions = all_versions(lake)
    found = subject_rows(lake, subject)
    p = lake.run("erase", "--where", f"user_id = {subject}", "--dataset", "user_events",
                 "--override-retention", "--json", ok=False)
    assert "tarn process user_events" in p.stderr, describe(p)
    assert all_versions(lake) == versions, f"a refused erase committed: {versions} -> {all_versions(lake)}"
    assert subject_rows(lake, subject) == found
    assert lake.audit("--action", "erase") == [] or all(not e["allowed"] for e in lake.audit("--action", "erase"))
