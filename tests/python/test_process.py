"""`tarn process` end to end on examples/user_events: raw -> cleansed -> curated
-> consumption, checked against an independent model of tarn.yaml's rules.

Each test copies examples/user_events into a temporary directory, ingests the
committed CSV files with `tarn ingest file`, runs `tarn process user_events`
and reads the tables tarn wrote with the Python `deltalake` package (and with
`tarn query`). The expected values are computed here, from the CSV files, by
`Model` below: plain Python for the row rules (validity at ingest, trim/case,
empty -> NULL, defaults, the DECIMAL cast, the Europe/Berlin client time, dedup
by revision, masking, expectations, the lookup, derived columns) and DuckDB for
the mart.

Run:  TARN_BIN=…/debug/tarn python3 -m pytest tests/python/test_process.py -q
      python3 tests/python/test_process.py     # prints the model's expected counts

If the binary named by TARN_BIN (default /work/target/debug/tarn) does not exist
the module is skipped (TARN_REQUIRE_BIN=1 makes that an error).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable

# --------------------------------------------------------------------------- #
# Helpers: the example, the binary, Delta tables
# --------------------------------------------------------------------------- #

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "user_events"
TARN_BIN = os.environ.get("TARN_BIN", "/work/target/debug/tarn")
TIMEOUT = float(os.environ.get("TARN_TEST_TIMEOUT", "300"))
UTC = dt.timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
SALT = "example-salt-change-me"  # governance.masking_salt in tarn.yaml

CLEANSED = "cleansed/user_events"
CLEANSED_Q = "cleansed/_quarantine/user_events"
CURATED = "curated/user_events"
CURATED_Q = "curated/_quarantine/user_events"
MART = "consumption/daily_purchases"
RAW = "raw/user_events"
RAW_Q = "raw/_quarantine/user_events"
STAGE_TABLES = {"cleanse": CLEANSED, "curate": CURATED, "consume": MART}

if __name__ != "__main__" and not (os.path.isfile(TARN_BIN) and os.access(TARN_BIN, os.X_OK)):
    if os.environ.get("TARN_REQUIRE_BIN") == "1":
        raise RuntimeError(f"TARN_BIN={TARN_BIN} is not an executable file")
    pytest.skip(f"tarn binary not found at {TARN_BIN} (set TARN_BIN)", allow_module_level=True)


def load_generator():
    """examples/user_events/generate.py as a module (for make_events)."""
    spec = importlib.util.spec_from_file_location("user_events_generate", EXAMPLE / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def tarn_env() -> dict:
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    for k in ("TARN_MASKING_SALT", "TARN_CONFIG"):  # the salt must be tarn.yaml's
        env.pop(k, None)
    return env


def describe(p: subprocess.CompletedProcess) -> str:
    return (f"cmd: {' '.join(map(str, p.args))}\nexit: {p.returncode}\n"
            f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}")


def run_tarn(args: list[Any], cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Runs the binary; never raises on a non-zero exit."""
    return subprocess.run([TARN_BIN, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=tarn_env())


def delta_path_exists(path: Path) -> bool:
    log = path / "_delta_log"
    return log.is_dir() and any(p.suffix == ".json" for p in log.iterdir())


@dataclass
class Lake:
    """A copy of examples/user_events; `tarn -c tarn.yaml …` runs in it."""
    root: Path

    def run(self, *args: Any, config: str = "tarn.yaml", ok: bool | None = True,
            timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        p = run_tarn(["-c", config, *args], cwd=self.root, timeout=timeout)
        if ok is True:
            assert p.returncode == 0, describe(p)
        elif ok is False:
            assert p.returncode != 0, describe(p)
        return p

    def ingest_countries(self) -> None:
        self.run("ingest", "file", "--dataset", "countries")  # path from tarn.yaml

    def ingest_events(self, path: Path | str) -> None:
        self.run("ingest", "file", "--dataset", "user_events", "--path", path)

    def process(self, config: str = "tarn.yaml", ok: bool | None = True) -> tuple[subprocess.CompletedProcess, dict]:
        """`tarn process user_events --json`: the exit and the one JSON object on stdout."""
        p = self.run("process", "user_events", "--json", config=config, ok=ok)
        try:
            report = json.loads(p.stdout)  # strict: stdout is exactly one JSON object
        except json.JSONDecodeError as e:
            raise AssertionError(f"stdout is not one JSON object ({e}):\n{describe(p)}") from None
        check_report_shape(report)
        return p, report

    def path(self, rel: str) -> Path:
        return self.root / "lake" / rel

    def exists(self, rel: str) -> bool:
        return delta_path_exists(self.path(rel))

    def arrow(self, rel: str) -> pa.Table:
        return DeltaTable(str(self.path(rel))).to_pyarrow_table()

    def rows(self, rel: str) -> list[dict]:
        return self.arrow(rel).to_pylist() if self.exists(rel) else []

    def version(self, rel: str) -> int | None:
        return DeltaTable(str(self.path(rel))).version() if self.exists(rel) else None

    def query_json(self, sql: str) -> list[dict]:
        p = self.run("query", sql, "--format", "json")
        return [json.loads(line) for line in p.stdout.splitlines() if line.strip()]


def new_lake(dest: Path) -> Lake:
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("lake", "__pycache__"))
    return Lake(dest)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return new_lake(tmp_path / "user_events")


# --------------------------------------------------------------------------- #
# The `tarn process --json` report
# --------------------------------------------------------------------------- #

STAGE_KEYS = ("stage", "table", "status", "rows_in", "rows_out", "rows_quarantined", "version",
              "input_versions", "duration_ms", "error")


def check_report_shape(r: dict) -> None:
    assert isinstance(r, dict), r
    for k in ("dataset", "status", "error", "stages"):
        assert k in r, (k, r)
    assert r["dataset"] == "user_events", r
    assert r["status"] in ("succeeded", "skipped", "failed"), r
    assert isinstance(r["stages"], list) and r["stages"], r
    for s in r["stages"]:
        for k in STAGE_KEYS:
            assert k in s, (k, s)
        assert s["stage"] in STAGE_TABLES, s
        assert s["status"] in ("succeeded", "skipped", "failed"), s
        assert isinstance(s["input_versions"], dict), s
        assert isinstance(s["duration_ms"], int) and s["duration_ms"] >= 0, s
        for k in ("rows_in", "rows_out", "rows_quarantined"):
            assert isinstance(s[k], int) and s[k] >= 0, (k, s)


def stage(report: dict, name: str) -> dict:
    found = [s for s in report["stages"] if s["stage"] == name and s["table"] == STAGE_TABLES[name]]
    assert len(found) == 1, (name, report)
    return found[0]


# --------------------------------------------------------------------------- #
# The independent model of tarn.yaml's rules
# --------------------------------------------------------------------------- #

ACCEPTED_EVENT_TYPES = {"view", "click", "add_to_cart", "purchase"}
CLEANSED_COLUMNS = ["event_id", "revision", "user_id", "event_type", "timestamp", "client_time",
                    "amount", "email", "card_number", "country"]
CURATED_COLUMNS = CLEANSED_COLUMNS + ["country_name", "region", "is_purchase", "hour_of_day",
                                      "_partition_date"]
DECIMAL_RE = re.compile(r"[+-]?\d{1,8}(\.\d{1,2})?")  # what fits DECIMAL(10,2), as the data writes it
LONG_RE = re.compile(r"[+-]?\d+")


def read_csv(path: Path) -> list[dict]:
    """The CSV as tarn's reader sees it: an empty field is null."""
    with open(path, newline="") as f:
        return [{k: (v if v != "" else None) for k, v in r.items()} for r in csv.DictReader(f)]


def read_countries(path: Path) -> dict[str, tuple[str, str]]:
    return {r["country"]: (r["country_name"], r["region"]) for r in read_csv(path)}


def parse_utc(text: str) -> dt.datetime | None:
    try:
        ts = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def valid_at_ingest(r: dict) -> bool:
    """user_events.avsc: event_id a required uuid, revision/user_id required
    longs, event_type a required string, timestamp a required timestamp."""
    for k in ("event_id", "revision", "user_id", "event_type", "timestamp"):
        if r[k] is None:
            return False
    try:
        uuid.UUID(r["event_id"])
    except ValueError:
        return False
    return bool(LONG_RE.fullmatch(r["revision"]) and LONG_RE.fullmatch(r["user_id"])
                and parse_utc(r["timestamp"]) is not None)


def blank_to_null(v: str | None) -> str | None:
    return None if v is None or v.strip(" ") == "" else v


def mask_hash(v: str) -> str:
    return hashlib.sha256((SALT + v).encode()).hexdigest()


def mask_partial(v: str, keep: int = 4) -> str:
    return "*" * max(len(v) - keep, 0) + v[-keep:]


def cleanse(r: dict) -> tuple[dict, list[str]]:
    """One valid raw row through tarn.yaml's `cleanse:` (all but dedup): the
    cleansed row, and the columns that make it a cleanse-quarantine row."""
    bad = []
    et = blank_to_null(r["event_type"].strip(" "))
    country = blank_to_null((r["country"] or "").strip(" "))
    amount_text = blank_to_null((r["amount"] or "").strip(" "))
    amount = None
    if amount_text is not None:
        if DECIMAL_RE.fullmatch(amount_text):
            amount = Decimal(amount_text).quantize(Decimal("0.01"))
        else:
            bad.append("amount")
    client_text = blank_to_null(r["client_time"])
    client = None
    if client_text is not None:
        try:
            local = dt.datetime.strptime(client_text, "%d/%m/%Y %H:%M")
            client = local.replace(tzinfo=BERLIN).astimezone(UTC)
        except ValueError:
            bad.append("client_time")
    email = blank_to_null(r["email"])
    card = blank_to_null(r["card_number"])
    return {
        "event_id": r["event_id"],
        "revision": int(r["revision"]),
        "user_id": int(r["user_id"]),
        "event_type": et.lower() if et is not None else None,
        "timestamp": parse_utc(r["timestamp"]),
        "client_time": client,
        "amount": amount,
        "email": mask_hash(email) if email is not None else None,
        "card_number": mask_partial(card) if card is not None else None,
        "country": country.upper() if country is not None else "XX",
    }, bad


def failed_expectations(r: dict) -> list[str]:
    """The quarantine-severity expectations of `curate:` that `r` fails (a
    null passes accepted_values and between; not_null is its own check)."""
    fails = []
    if r["event_type"] is not None and r["event_type"] not in ACCEPTED_EVENT_TYPES:
        fails.append("known_event_type")
    if r["amount"] is not None and not (0 <= r["amount"] <= 10000):
        fails.append("amount_in_range")
    if r["event_type"] == "purchase" and r["amount"] is None:
        fails.append("purchase_has_amount")
    return fails


@dataclass
class Counts:
    """What one `tarn process` run's stages should report."""
    raw_valid: int = 0
    raw_rejected: int = 0
    cleanse_in: int = 0
    cleanse_quarantined: int = 0
    cleanse_deduped: int = 0   # one row per event_id of the batch
    cleanse_superseded: int = 0  # older revisions of those, in the batch
    cleanse_changed: int = 0   # of those, new events and higher revisions
    curate_in: int = 0
    curate_out: int = 0
    curate_quarantined: int = 0


@dataclass
class Model:
    """tarn.yaml's rules applied to CSV files, one `process` run per file."""
    countries: dict[str, tuple[str, str]]
    cleansed: dict[str, dict] = field(default_factory=dict)
    cleansed_q: dict[str, list[str]] = field(default_factory=dict)   # event_id -> bad columns
    curated: dict[str, dict] = field(default_factory=dict)
    curated_q: dict[str, list[str]] = field(default_factory=dict)    # event_id -> expectations
    emails: set[str] = field(default_factory=set)                    # every plain email seen
    cards: set[str] = field(default_factory=set)
    runs: list[Counts] = field(default_factory=list)

    def run(self, raw_rows: list[dict]) -> Counts:
        c = Counts()
        valid = [r for r in raw_rows if valid_at_ingest(r)]
        c.raw_valid, c.raw_rejected = len(valid), len(raw_rows) - len(valid)
        c.cleanse_in = len(valid)
        for r in raw_rows:
            if r["email"]:
                self.emails.add(r["email"])
            if r["card_number"]:
                self.cards.add(r["card_number"])

        best: dict[str, dict] = {}
        for r in valid:
            row, bad = cleanse(r)
            eid = row["event_id"]
            if bad:
                assert eid not in self.cleansed_q, f"test data: {eid} quarantined twice"
                self.cleansed_q[eid] = bad
                c.cleanse_quarantined += 1
                continue
            if eid not in best or row["revision"] > best[eid]["revision"]:
                assert eid not in best or row["revision"] != best[eid]["revision"], "test data: a tie"
                best[eid] = row
        assert not set(best) & set(self.cleansed_q), "test data: a quarantined id also has good rows"
        c.cleanse_deduped = len(best)
        c.cleanse_superseded = c.cleanse_in - c.cleanse_quarantined - c.cleanse_deduped
        changed = [r for eid, r in best.items()
                   if eid not in self.cleansed or r["revision"] > self.cleansed[eid]["revision"]]
        c.cleanse_changed = c.curate_in = len(changed)

        for r in changed:
            eid = r["event_id"]
            self.cleansed[eid] = r
            assert r["user_id"] is not None  # user_present (fail) holds
            fails = failed_expectations(r)
            if fails:
                assert eid not in self.curated and eid not in self.curated_q, \
                    f"test data: an update of {eid} changes its curate outcome"
                self.curated_q[eid] = fails
                c.curate_quarantined += 1
            else:
                assert eid not in self.curated_q, f"test data: an update of {eid} leaves quarantine"
                name, region = self.countries.get(r["country"], (None, None))
                self.curated[eid] = dict(
                    r, country_name=name, region=region, is_purchase=r["event_type"] == "purchase",
                    hour_of_day=r["timestamp"].hour, _partition_date=r["timestamp"].date())
                c.curate_out += 1
        self.runs.append(c)
        return c

    def mart(self) -> list[tuple]:
        """consumption.daily_purchases over the expected curated rows, by DuckDB."""
        rows = list(self.curated.values())
        t = pa.table({
            "_partition_date": pa.array([r["_partition_date"] for r in rows], pa.date32()),
            "event_type": pa.array([r["event_type"] for r in rows], pa.string()),
            "user_id": pa.array([r["user_id"] for r in rows], pa.int64()),
            "amount": pa.array([r["amount"] for r in rows], pa.decimal128(10, 2)),
        })
        con = duckdb.connect()
        con.register("curated_user_events", t)
        return con.sql("""
            SELECT _partition_date AS day, event_type,
                   count(*) AS events, count(DISTINCT user_id) AS users, sum(amount) AS revenue
            FROM curated_user_events
            WHERE event_type IN ('add_to_cart', 'purchase')
            GROUP BY 1, 2 ORDER BY 1, 2""").fetchall()


def model_for(*event_files: Path) -> Model:
    m = Model(read_countries(EXAMPLE / "data" / "countries.csv"))
    for f in event_files:
        m.run(read_csv(f))
    return m


DAY1 = EXAMPLE / "data" / "day1" / "user_events.csv"
DAY2 = EXAMPLE / "data" / "day2" / "user_events.csv"


# --------------------------------------------------------------------------- #
# Comparing tarn's tables with the model
# --------------------------------------------------------------------------- #

def norm(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)
    return v


def same(got: Any, want: Any) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return got == want
    if isinstance(want, int) and isinstance(got, (int, float)):
        return got == want
    return norm(got) == norm(want)


def by_event_id(rows: list[dict]) -> dict[str, dict]:
    ids = Counter(r["event_id"] for r in rows)
    dupes = {k: n for k, n in ids.items() if n > 1}
    assert not dupes, f"more than one row per event_id: {list(dupes.items())[:5]}"
    return {r["event_id"]: r for r in rows}


def check_rows(got_rows: list[dict], want: dict[str, dict], columns: list[str], what: str) -> None:
    got = by_event_id(got_rows)
    assert set(got) == set(want), (f"{what}: missing {sorted(set(want) - set(got))[:5]}, "
                                   f"unexpected {sorted(set(got) - set(want))[:5]}")
    diffs = []
    for eid, w in want.items():
        g = got[eid]
        for col in columns:
            assert col in g, f"{what}: no column {col} in {sorted(g)}"
            if not same(g[col], w[col]):
                diffs.append(f"{eid} {col}: tarn {g[col]!r}, expected {w[col]!r}")
    assert not diffs, f"{what}: {len(diffs)} differences, e.g.\n" + "\n".join(diffs[:10])


def check_cleansed(lake: Lake, m: Model) -> None:
    rows = lake.rows(CLEANSED)
    assert rows and "user_agent" not in rows[0], "user_agent is dropped by cleanse"
    check_rows(rows, m.cleansed, CLEANSED_COLUMNS, CLEANSED)


def check_curated(lake: Lake, m: Model) -> None:
    check_rows(lake.rows(CURATED), m.curated, CURATED_COLUMNS, CURATED)


def check_cleanse_quarantine(lake: Lake, m: Model) -> None:
    rows = lake.rows(CLEANSED_Q)
    got = by_event_id(rows)
    assert set(got) == set(m.cleansed_q), (sorted(got), sorted(m.cleansed_q))
    for eid, bad in m.cleansed_q.items():
        r = got[eid]
        assert r.get("_run_id"), r
        reason = r.get("_reason")
        assert isinstance(reason, str) and reason, r
        for col in bad:
            assert col in reason, f"{eid}: the reason {reason!r} does not name {col}"


def check_curate_quarantine(lake: Lake, m: Model) -> None:
    rows = lake.rows(CURATED_Q)
    got = by_event_id(rows)
    assert set(got) == set(m.curated_q), (sorted(got), sorted(m.curated_q))
    for eid, names in m.curated_q.items():
        r = got[eid]
        assert r.get("_run_id"), r
        assert isinstance(r.get("_reason"), str) and r["_reason"], r
        tagged = {x.strip() for x in (r.get("_expectations") or "").split(",") if x.strip()}
        assert tagged == set(names), f"{eid}: _expectations {r.get('_expectations')!r}, expected {names}"


def as_date(v: Any) -> dt.date:
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    return dt.date.fromisoformat(str(v)[:10])


def same_number(got: Any, want: Any) -> bool:
    if got is None or want is None:
        return got is None and want is None
    return abs(float(got) - float(want)) <= 1e-9


def check_mart_rows(rows: list[dict], m: Model, what: str) -> None:
    want = m.mart()
    got = sorted(((as_date(r["day"]), r["event_type"], r["events"], r["users"], r["revenue"]) for r in rows),
                 key=lambda t: (t[0], t[1]))
    assert [(d, e) for d, e, *_ in got] == [(d, e) for d, e, *_ in want], (what, got, want)
    for g, w in zip(got, want):
        assert int(g[2]) == w[2] and int(g[3]) == w[3], (what, g, w)
        assert same_number(g[4], w[4]), (what, "revenue", g, w)


def check_mart(lake: Lake, m: Model) -> None:
    check_mart_rows(lake.rows(MART), m, MART)


def check_no_plain_pii(lake: Lake, m: Model) -> None:
    """No plain email or card number in any table of cleansed, curated or
    consumption (quarantines included)."""
    plain = m.emails | m.cards
    assert plain
    tables = [p.parent for zone in ("cleansed", "curated", "consumption")
              for p in (lake.root / "lake" / zone).rglob("_delta_log")]
    assert tables
    for t in tables:
        table = DeltaTable(str(t)).to_pyarrow_table()
        for name in table.column_names:
            col = table.column(name)
            if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
                    or pa.types.is_string_view(col.type)):
                continue
            leaked = {v for v in col.to_pylist() if v is not None and any(p in v for p in plain)}
            assert not leaked, f"plain PII in {t.relative_to(lake.root)}.{name}: {sorted(leaked)[:3]}"


def table_versions(lake: Lake) -> dict[str, int | None]:
    return {rel: lake.version(rel) for rel in (CLEANSED, CLEANSED_Q, CURATED, CURATED_Q, MART)}


def check_stage_versions(lake: Lake, report: dict) -> None:
    """Each stage names the Delta version it wrote and the versions it read."""
    cl, cu, co = stage(report, "cleanse"), stage(report, "curate"), stage(report, "consume")
    assert cl["version"] == lake.version(CLEANSED), cl
    assert cu["version"] == lake.version(CURATED), cu
    assert co["version"] == lake.version(MART), co
    assert cl["input_versions"].get(RAW) == lake.version(RAW), cl
    assert cu["input_versions"].get(CLEANSED) == cl["version"], cu
    assert co["input_versions"].get(CURATED) == cu["version"], co


# --------------------------------------------------------------------------- #
# a. day1 end to end
# --------------------------------------------------------------------------- #

@pytest.fixture(scope="module")
def day1(tmp_path_factory) -> tuple[Lake, Model, dict]:
    """A lake with countries and day1 ingested and processed once."""
    lake = new_lake(tmp_path_factory.mktemp("day1") / "user_events")
    lake.ingest_countries()
    lake.ingest_events("data/day1/user_events.csv")
    _, report = lake.process()
    return lake, model_for(DAY1), report


def test_day1_raw_ingest_counts(day1):
    lake, m, _ = day1
    c = m.runs[0]
    assert len(lake.rows(RAW)) == c.raw_valid
    assert len(lake.rows(RAW_Q)) == c.raw_rejected > 0


def test_day1_process_report(day1):
    lake, m, report = day1
    c = m.runs[0]
    assert report["status"] == "succeeded" and report["error"] is None, report
    cl, cu, co = stage(report, "cleanse"), stage(report, "curate"), stage(report, "consume")
    for s in (cl, cu, co):
        assert s["status"] == "succeeded" and s["error"] is None, s
    assert cl["rows_in"] == c.cleanse_in, cl
    assert cl["rows_quarantined"] == c.cleanse_quarantined, cl
    assert cl["rows_out"] == c.cleanse_deduped, cl
    # reconcile: every row in is out, quarantined, or an older revision of a row out
    assert c.cleanse_superseded > 0, "day1 has re-sent events"
    assert cl["rows_in"] == cl["rows_out"] + cl["rows_quarantined"] + c.cleanse_superseded, cl
    assert cu["rows_in"] == cl["rows_out"] == c.curate_in, cu
    assert cu["rows_out"] == c.curate_out and cu["rows_quarantined"] == c.curate_quarantined, cu
    assert cu["rows_in"] == cu["rows_out"] + cu["rows_quarantined"], cu
    assert co["rows_out"] == len(m.mart()), co
    check_stage_versions(lake, report)


def test_day1_cleansed_is_deduplicated_and_masked(day1):
    lake, m, _ = day1
    check_cleansed(lake, m)
    rows = by_event_id(lake.rows(CLEANSED))
    # the event sent as revisions 1, 3 and 2: revision 3's amount
    raw = read_csv(DAY1)
    triple = next(r["event_id"] for r in raw if r["revision"] == "3")
    assert rows[triple]["revision"] == 3 and rows[triple]["amount"] == Decimal("30.00")
    # masks, spelled out once
    sample = next(r for r in raw if r["event_id"] == triple)
    assert rows[triple]["email"] == hashlib.sha256((SALT + sample["email"]).encode()).hexdigest()
    card = sample["card_number"]
    assert rows[triple]["card_number"] == "*" * (len(card) - 4) + card[-4:]


def test_day1_cleanse_quarantine(day1):
    lake, m, _ = day1
    assert m.cleansed_q
    check_cleanse_quarantine(lake, m)


def test_day1_curated_rows_and_enrichment(day1):
    lake, m, _ = day1
    check_curated(lake, m)
    rows = lake.rows(CURATED)
    assert any(r["country_name"] is None and r["country"] in ("XX", "BR") for r in rows), "unmatched kept"
    assert any(r["region"] == "EMEA" for r in rows)


def test_day1_curate_quarantine(day1):
    lake, m, _ = day1
    assert any(len(v) > 1 for v in m.curated_q.values()), "one row fails two expectations"
    check_curate_quarantine(lake, m)


def test_day1_mart_matches_duckdb(day1):
    lake, m, _ = day1
    check_mart(lake, m)
    got = lake.query_json("SELECT day, event_type, events, users, revenue "
                          "FROM consumption.daily_purchases ORDER BY day, event_type")
    check_mart_rows(got, m, "tarn query consumption.daily_purchases")


def test_day1_no_plain_pii_outside_raw(day1):
    lake, m, _ = day1
    check_no_plain_pii(lake, m)


# --------------------------------------------------------------------------- #
# b. incremental: day2, then nothing new
# --------------------------------------------------------------------------- #

def test_incremental_day2_then_nothing_new(lake: Lake):
    m = model_for(DAY1)
    lake.ingest_countries()
    lake.ingest_events("data/day1/user_events.csv")
    lake.process()

    c2 = m.run(read_csv(DAY2))
    lake.ingest_events("data/day2/user_events.csv")
    _, report = lake.process()
    assert report["status"] == "succeeded", report
    cl, cu, co = stage(report, "cleanse"), stage(report, "curate"), stage(report, "consume")
    assert cl["status"] == "succeeded" and cl["rows_in"] == c2.cleanse_in, cl   # day2's rows only
    assert cl["rows_quarantined"] == c2.cleanse_quarantined, cl
    # rows out: day2's rows deduplicated, less (maybe) the stale re-send that changes nothing
    assert cl["rows_out"] in (c2.cleanse_deduped, c2.cleanse_changed), (cl, c2)
    assert cu["status"] == "succeeded" and cu["rows_in"] == c2.curate_in, (cu, c2)
    assert cu["rows_out"] == c2.curate_out and cu["rows_quarantined"] == c2.curate_quarantined, (cu, c2)
    assert co["status"] == "succeeded", co
    check_stage_versions(lake, report)

    check_cleansed(lake, m)
    rows = by_event_id(lake.rows(CLEANSED))
    day1_raw, day2_raw = read_csv(DAY1), read_csv(DAY2)
    day1_ids = Counter(r["event_id"] for r in day1_raw)
    stale = next(r for r in day2_raw if r["event_id"] in day1_ids and r["revision"] == "2"
                 and any(x["event_id"] == r["event_id"] and x["revision"] == "3" for x in day1_raw))
    assert rows[stale["event_id"]]["revision"] == 3, "a lower revision overwrote a higher one"
    assert rows[stale["event_id"]]["amount"] == Decimal("30.00")
    newer = next(r for r in day2_raw if day1_ids.get(r["event_id"]) == 1)
    assert rows[newer["event_id"]]["revision"] == int(newer["revision"]) == 2
    assert rows[newer["event_id"]]["amount"] == Decimal(newer["amount"].strip())
    assert rows[newer["event_id"]]["country"] == newer["country"].strip().upper()

    check_curated(lake, m)
    check_cleanse_quarantine(lake, m)
    check_curate_quarantine(lake, m)
    check_mart(lake, m)   # late arrivals of 02-10/11 are in their days
    check_no_plain_pii(lake, m)

    before = table_versions(lake)
    _, third = lake.process()
    assert third["status"] == "skipped", third  # nothing new anywhere
    for s in third["stages"]:
        assert s["status"] == "skipped" and s["rows_in"] == 0, s
    assert table_versions(lake) == before, "a run with nothing new committed"


# --------------------------------------------------------------------------- #
# c. a failing expectation stops the run
# --------------------------------------------------------------------------- #

def test_fail_expectation_commits_no_curated_version(lake: Lake):
    text = (lake.root / "tarn.yaml").read_text()
    anchor = "      expectations:\n"
    assert anchor in text
    (lake.root / "tarn-tiny.yaml").write_text(text.replace(
        anchor, anchor + "        - { name: tiny, row_count: { max: 1 }, severity: fail }\n", 1))

    lake.ingest_countries()
    lake.ingest_events("data/day1/user_events.csv")
    lake.process()
    curated_version = lake.version(CURATED)
    mart_version = lake.version(MART)

    lake.ingest_events("data/day2/user_events.csv")
    p, report = lake.process(config="tarn-tiny.yaml", ok=None)
    assert p.returncode == 1, describe(p)
    assert report["status"] == "failed" and report["error"], report
    cu = stage(report, "curate")
    assert cu["status"] == "failed" and "tiny" in (cu["error"] or ""), cu
    assert lake.version(CURATED) == curated_version, "a failed curate committed"
    assert lake.version(MART) == mart_version, "consume ran after a failed curate"

    q = lake.run("quality", "user_events", "--json")
    results = json.loads(q.stdout)
    assert isinstance(results, list) and results, q.stdout
    for r in results:
        for k in ("run_id", "stage", "expectation", "severity", "passed", "failed_rows", "evaluated_rows"):
            assert k in r, (k, r)
    tiny = [r for r in results if r["expectation"] == "tiny"]
    assert tiny and all(r["passed"] is False and r["severity"] == "fail" and r["stage"] == "curate"
                        for r in tiny), tiny
    # day1's run recorded the quarantine expectations too
    m = model_for(DAY1)
    c1 = m.runs[0]
    want_failed = sum(1 for v in m.curated_q.values() if "known_event_type" in v)
    assert any(r["expectation"] == "known_event_type" and r["passed"] is False
               and r["failed_rows"] == want_failed and r["evaluated_rows"] == c1.curate_in
               for r in results), results

    # the next run with the normal config curates what the failed one left
    m.run(read_csv(DAY2))
    _, again = lake.process()
    assert again["status"] == "succeeded", again
    assert stage(again, "curate")["status"] == "succeeded", again
    check_curated(lake, m)
    check_curate_quarantine(lake, m)
    check_mart(lake, m)


# --------------------------------------------------------------------------- #
# d. SIGKILL mid-process, then rerun: the same tables as an uninterrupted run
# --------------------------------------------------------------------------- #

PROCESS_ROWS = int(os.environ.get("TARN_TEST_PROCESS_ROWS", "60000"))
KILL_DELAYS = [0.3, 0.6, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0]
KEEP_META = {"_partition_date", "_reason", "_expectations"}  # other _columns are per run


@pytest.fixture(scope="module")
def big_events(tmp_path_factory) -> tuple[Path, Model]:
    """PROCESS_ROWS events over three days: re-sends, noise, and a few rows
    cleanse or curate quarantines (none that the raw ingest rejects)."""
    gen = load_generator()
    rows: list[dict] = []
    for k in range(3):
        rows += gen.make_events(PROCESS_ROWS // 3, dt.date(2024, 2, 14 + k), seed=900 + k,
                                dup_every=50, bad_every=101)
    path = tmp_path_factory.mktemp("big") / "big_events.csv"
    gen.write_events(path, rows)
    m = model_for(path)
    assert m.runs[0].raw_rejected == 0
    return path, m


def comparable(lake: Lake, rel: str) -> list[tuple]:
    t = lake.arrow(rel)
    cols = sorted(c for c in t.column_names if not c.startswith("_") or c in KEEP_META)
    rows = [tuple(r[c] for c in cols) for r in t.select(cols).to_pylist()]
    return [tuple(cols)] + sorted(rows, key=repr)


def test_sigkill_mid_process_then_rerun(tmp_path: Path, big_events):
    path, m = big_events
    ref, killed = new_lake(tmp_path / "ref"), new_lake(tmp_path / "killed")
    for lk in (ref, killed):
        lk.ingest_countries()
        lk.ingest_events(path)
    start = time.monotonic()
    ref.process()
    print(f"[sigkill] uninterrupted process: {time.monotonic() - start:.1f}s for {PROCESS_ROWS} rows")

    kills, finished = 0, False
    for delay in KILL_DELAYS:
        err = tmp_path / f"stderr-{kills}.txt"
        with open(err, "w") as ef:
            p = subprocess.Popen([TARN_BIN, "-c", "tarn.yaml", "process", "user_events"], cwd=killed.root,
                                 stdout=subprocess.DEVNULL, stderr=ef, env=tarn_env())
            try:
                rc = p.wait(timeout=delay)
                finished = True
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
                p.wait(timeout=60)
                kills += 1
                print(f"[sigkill] killed after {delay}s; versions now {table_versions(killed)}")
        if finished:
            assert rc == 0, f"a run after {kills} kills failed ({rc}):\n{err.read_text()}"
            print(f"[sigkill] run {kills + 1} finished on its own within {delay}s")
            break
    assert kills >= 1, "process finished before the first kill; raise TARN_TEST_PROCESS_ROWS"
    _, final = killed.process()
    assert final["status"] == "skipped", final  # the last killed-loop run finished everything

    for rel in (CLEANSED, CLEANSED_Q, CURATED, CURATED_Q, MART):
        got, want = comparable(killed, rel), comparable(ref, rel)
        assert got[0] == want[0], (rel, got[0], want[0])
        assert len(got) == len(want), f"{rel}: {len(got) - 1} rows after kills, {len(want) - 1} uninterrupted"
        assert got == want, f"{rel}: the rows differ from the uninterrupted run"
    assert len(ref.rows(CLEANSED)) == len(m.cleansed)
    assert len(ref.rows(CLEANSED_Q)) == len(m.cleansed_q)
    assert len(ref.rows(CURATED)) == len(m.curated)
    assert len(ref.rows(CURATED_Q)) == len(m.curated_q)


# --------------------------------------------------------------------------- #
# d2. a crash between a stage's quarantine commit and its table commit, then
#     new upstream data before the rerun: nothing lost, nothing twice
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("point", ["cleanse:after-quarantine", "curate:after-quarantine"])
def test_crash_between_quarantine_and_table_commit(tmp_path: Path, point: str):
    ref, crashed = new_lake(tmp_path / "ref"), new_lake(tmp_path / "crashed")
    for lk in (ref, crashed):
        lk.ingest_countries()
        lk.ingest_events("data/day1/user_events.csv")
    ref.process()
    ref.ingest_events("data/day2/user_events.csv")
    ref.process()

    env = dict(tarn_env(), TARN_FAILPOINT=point)
    p = subprocess.run([TARN_BIN, "-c", "tarn.yaml", "process", "user_events"], cwd=crashed.root,
                       capture_output=True, timeout=TIMEOUT, env=env)
    assert p.returncode != 0 and b"TARN_FAILPOINT" in p.stderr, describe(p)
    q, table = (CLEANSED_Q, CLEANSED) if point.startswith("cleanse") else (CURATED_Q, CURATED)
    assert crashed.exists(q) and not crashed.exists(table), "the crash fell between the two commits"

    crashed.ingest_events("data/day2/user_events.csv")   # new upstream data before the rerun
    _, report = crashed.process()
    assert report["status"] == "succeeded", report
    name = point.split(":")[0]
    passes = [s for s in report["stages"] if s["stage"] == name]
    assert len(passes) == 2, "the interrupted range is finished first, then the rest"
    assert passes[0]["input_versions"] != passes[1]["input_versions"], passes

    for rel in (CLEANSED, CLEANSED_Q, CURATED, CURATED_Q, MART):
        got, want = comparable(crashed, rel), comparable(ref, rel)
        assert got == want, f"{rel}: differs from the run that did not crash"


# --------------------------------------------------------------------------- #
# e. tarn demo
# --------------------------------------------------------------------------- #

def test_demo_fills_every_zone(tmp_path: Path):
    d = tmp_path / "demo"
    p = run_tarn(["demo", d], cwd=tmp_path)
    assert p.returncode == 0, describe(p)
    for rel in (CLEANSED, CURATED, MART):
        table = d / "lake" / rel
        assert delta_path_exists(table), f"demo left no {rel}"
        assert DeltaTable(str(table)).to_pyarrow_table().num_rows > 0, rel


# --------------------------------------------------------------------------- #
# The model's expected counts, without tarn
# --------------------------------------------------------------------------- #

if __name__ == "__main__":
    m = model_for(DAY1)
    for label, f in (("day1", None), ("day2 (after day1)", DAY2)):
        c = m.run(read_csv(f)) if f else m.runs[0]
        print(f"{label}: {c}")
        print(f"  totals: cleansed={len(m.cleansed)} cleansed_q={len(m.cleansed_q)} "
              f"curated={len(m.curated)} curated_q={len(m.curated_q)} mart_rows={len(m.mart())}")
    for row in m.mart():
        print("  ", row)
