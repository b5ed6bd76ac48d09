"""End-to-end tests of `tarn ingest kafka` against a real Kafka-protocol broker.

The broker is tansu (in-memory storage), started by scripts/test.sh, which
exports TARN_TEST_KAFKA_BROKERS=127.0.0.1:PORT. Each test creates its own
topics (unique names: the broker lives for the whole suite), produces messages
with confluent-kafka (librdkafka) and remembers the partition and offset that
each delivery report gave, runs the `tarn` binary against a fresh lake made
with `tarn init`, and reads the raw and quarantine tables back with the Python
`deltalake` package. Expected values are exact sets: every valid message in raw
exactly once (with its `_ingest_source` = `kafka:<topic>/<partition>:<offset>`),
every bad one in quarantine exactly once (with `source` = `kafka:<topic>/<p>`
and `position` = its offset), and the `txn` versions in the Delta log equal to
the next offset of every partition.

- test_json_bounded_ingest: 4 partitions, ~2% bad messages; then a second run
  that must find nothing to do.
- test_sigkill_and_restart: an ingest with many small commits is SIGKILLed at
  random points and right after a quarantine commit (after >= 2 commits are
  visible), and restarted; nothing is lost or duplicated. TARN_TEST_KAFKA_KILLS (default 3) sets how many kills.
- test_two_workers_one_group: two bounded ingests of one dataset in one group.
- test_follow_flushes_on_sigterm_and_closes_on_latency: --follow, SIGTERM with a
  60 s --max-latency (the flush on signal), then --max-latency 500ms + SIGINT.
- test_avro_*: --format avro and --format confluent-avro (a schema registry
  served from a thread here), decimals and timestamps read back exactly.

Run:  TARN_BIN=…/debug/tarn TARN_TEST_KAFKA_BROKERS=127.0.0.1:9092 \
        python3 -m pytest tests/python/test_kafka.py -q
      (a broker: tansu broker --listener-url tcp://127.0.0.1:9092 \
        --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine memory://tansu/)

Without the binary (TARN_BIN, default /work/target/debug/tarn) or without
TARN_TEST_KAFKA_BROKERS the module is skipped; TARN_REQUIRE_BIN=1 makes either
an error. TARN_TEST_SEED fixes the random kill points.

Three properties of tansu 0.6.0 shape the producer and the checks here:
- A Fetch at an offset inside a record batch (not its first record) skips the
  rest of that batch and pads the response with copies of the partition's last
  records (a plain confluent-kafka consumer assigned at such an offset sees
  it). Every resume from a committed offset is such a fetch, so the producer
  sends one message per record batch (`batch.num.messages=1`): then every
  offset is a batch boundary and tansu serves what any Kafka broker would.
- ListOffsets reports wrong high watermarks, so the expected end offsets come
  from the producer's delivery reports, never from the broker.
- A SIGKILLed group leader is not expelled reliably: a member that joins its
  group afterwards can get an empty assignment (SyncGroup succeeds with no
  partitions) that never changes. So in test_sigkill_and_restart each run joins
  a fresh group (TARN_TEST_KAFKA_SAME_GROUP=1 keeps one, for a real Kafka).
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import unquote

import pytest

TARN_BIN = os.environ.get("TARN_BIN", "/work/target/debug/tarn")
BROKERS = os.environ.get("TARN_TEST_KAFKA_BROKERS", "")
REQUIRE = os.environ.get("TARN_REQUIRE_BIN") == "1"
TIMEOUT = float(os.environ.get("TARN_TEST_TIMEOUT", "150"))  # one tarn run, at most
KILLS = int(os.environ.get("TARN_TEST_KAFKA_KILLS", "3"))
SEED = int(os.environ.get("TARN_TEST_SEED", str(random.SystemRandom().randrange(1 << 30))))
UTC = dt.timezone.utc


def _unavailable(reason: str) -> None:
    if REQUIRE:
        raise RuntimeError(reason)
    pytest.skip(reason, allow_module_level=True)


if not (os.path.isfile(TARN_BIN) and os.access(TARN_BIN, os.X_OK)):
    _unavailable(f"TARN_BIN={TARN_BIN} is not an executable file (set TARN_BIN)")
if not BROKERS:
    _unavailable("TARN_TEST_KAFKA_BROKERS is not set (scripts/test.sh starts tansu and sets it)")
try:
    import fastavro
    import pyarrow as pa
    import pyarrow.parquet as pq
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    from deltalake import DeltaTable
except ImportError as e:  # tests/python/requirements.txt
    _unavailable(f"a Python peer is missing ({e}); pip install -r tests/python/requirements.txt")

RAW_LINEAGE = {"_ingest_run_id", "_ingest_source", "_ingested_at"}
QUARANTINE_FIELDS = ["run_id", "dataset", "source", "position", "field", "reason", "payload",
                     "quarantined_at"]

# --------------------------------------------------------------------------- #
# The binary and the lake
# --------------------------------------------------------------------------- #


def tarn_env() -> dict:
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    env.pop("TARN_CONFIG", None)
    env.pop("TARN_LOG", None)
    return env


def describe(proc: subprocess.CompletedProcess | subprocess.Popen, stdout: str = "",
             stderr: str = "") -> str:
    out = getattr(proc, "stdout", stdout)
    err = getattr(proc, "stderr", stderr)
    if not isinstance(out, str):
        out, err = stdout, stderr
    return (f"cmd: {' '.join(map(str, proc.args))}\nexit: {proc.returncode}\n"
            f"stdout:\n{out}\nstderr (tail):\n{err[-4000:]}\nseed: TARN_TEST_SEED={SEED}")


def parse_report(stdout: str) -> dict:
    try:
        return json.loads(stdout)  # stdout is exactly one JSON object
    except json.JSONDecodeError as e:
        raise AssertionError(f"stdout is not one JSON object ({e}):\n{stdout}") from None


@dataclass
class Run:
    """A finished `tarn ingest kafka … --json`."""
    proc: subprocess.CompletedProcess
    report: dict

    @property
    def meta(self) -> dict:
        return self.report["metadata"]

    @property
    def status(self) -> str:
        return self.report["status"]


@dataclass
class Lake:
    root: Path
    background: list["Bg"] = field(default_factory=list)

    @property
    def config(self) -> Path:
        return self.root / "tarn.yaml"

    def raw(self, dataset: str) -> Path:
        return self.root / "lake" / "raw" / dataset

    def quarantine(self, dataset: str) -> Path:
        return self.root / "lake" / "raw" / "_quarantine" / dataset

    def args(self, dataset: str, topics: Iterable[str], *extra: Any) -> list[str]:
        args = [TARN_BIN, "--config", self.config, "ingest", "kafka", "--dataset", dataset,
                "--brokers", BROKERS]
        for t in topics:
            args += ["--topic", t]
        return [str(a) for a in [*args, *extra, "--json"]]

    def ingest(self, dataset: str, topics: Iterable[str], *extra: Any,
               timeout: float = TIMEOUT) -> Run:
        """A bounded ingest; asserts exit 0 and returns the IngestionResult."""
        proc = subprocess.run(self.args(dataset, topics, *extra), capture_output=True, text=True,
                              timeout=timeout, env=tarn_env(), cwd=self.root)
        assert proc.returncode == 0, describe(proc)
        return Run(proc, parse_report(proc.stdout))

    def start(self, dataset: str, topics: Iterable[str], *extra: Any) -> "Bg":
        """An ingest in the background (stdout/stderr to files, so no pipe fills up)."""
        n = len(list(self.root.glob("bg-*.out")))
        out, err = self.root / f"bg-{n}.out", self.root / f"bg-{n}.err"
        with open(out, "w") as o, open(err, "w") as e:
            p = subprocess.Popen(self.args(dataset, topics, *extra), stdout=o, stderr=e,
                                 env=tarn_env(), cwd=self.root, start_new_session=True)
        bg = Bg(p, out, err)
        self.background.append(bg)
        return bg


@dataclass
class Bg:
    """An ingest running in the background."""
    proc: subprocess.Popen
    out: Path
    err: Path

    def running(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            self.proc.send_signal(sig)

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"tarn did not exit within {timeout}s:\n{self.describe()}")

    def stdout(self) -> str:
        return self.out.read_text()

    def describe(self) -> str:
        return describe(self.proc, self.stdout(), self.err.read_text())

    def finish(self, timeout: float = TIMEOUT) -> Run:
        """Waits; asserts exit 0; returns the IngestionResult."""
        rc = self.wait(timeout)
        assert rc == 0, self.describe()
        proc = subprocess.CompletedProcess(self.proc.args, rc, self.stdout(), self.err.read_text())
        return Run(proc, parse_report(proc.stdout))

    def kill(self) -> None:
        if self.running():
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def lake(tmp_path: Path):
    root = tmp_path / "lakehome"
    proc = subprocess.run([TARN_BIN, "init", str(root)], capture_output=True, text=True,
                          timeout=60, env=tarn_env())
    assert proc.returncode == 0, describe(proc)
    assert (root / "tarn.yaml").is_file() and (root / "lake" / "raw").is_dir()
    lk = Lake(root)
    yield lk
    for bg in lk.background:  # never leave an ingest running
        bg.kill()
    shutil.rmtree(tmp_path, ignore_errors=True)


# --------------------------------------------------------------------------- #
# The broker
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def admin():
    host, _, port = BROKERS.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        pytest.fail(f"nothing listens on TARN_TEST_KAFKA_BROKERS={BROKERS}: {e}")
    return AdminClient({"bootstrap.servers": BROKERS})


@pytest.fixture
def new_topic(admin):
    """new_topic(partitions) -> a fresh topic's name."""

    def make(partitions: int, prefix: str = "tarn-test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions,
                                                replication_factor=1)])
        futures[name].result(30)
        deadline = time.monotonic() + 30
        while True:
            md = admin.list_topics(name, timeout=10)
            t = md.topics.get(name)
            if t is not None and t.error is None and len(t.partitions) == partitions:
                return name
            assert time.monotonic() < deadline, f"topic {name} did not appear: {t}"
            time.sleep(0.2)

    return make


@dataclass(frozen=True)
class Sent:
    """One produced message, with where the broker put it."""
    key: bytes
    value: bytes | None
    topic: str
    partition: int
    offset: int

    @property
    def source(self) -> str:
        return f"kafka:{self.topic}/{self.partition}"

    @property
    def lineage(self) -> str:
        return f"kafka:{self.topic}/{self.partition}:{self.offset}"


def produce(topic: str, messages: list[tuple[bytes, bytes | None]]) -> list[Sent]:
    """Produces (key, value) messages (value None: a tombstone); returns them in
    order with the partition and offset of their delivery reports."""
    producer = Producer({
        "bootstrap.servers": BROKERS,
        # One message per record batch: see the module doc (tansu's Fetch).
        "batch.num.messages": 1,
        "linger.ms": 0,
        "enable.idempotence": True,
        "queue.buffering.max.messages": 200000,
    })
    reports: dict[int, tuple[int, int]] = {}
    errors: list[str] = []

    def on_delivery(i: int):
        def cb(err, msg):
            if err is not None:
                errors.append(f"message {i}: {err}")
            else:
                reports[i] = (msg.partition(), msg.offset())
        return cb

    for i, (key, value) in enumerate(messages):
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery(i))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(60)
    assert left == 0 and not errors, f"produce to {topic}: {left} undelivered, {errors[:5]}"
    assert len(reports) == len(messages)
    sent = [Sent(k, v, topic, *reports[i]) for i, (k, v) in enumerate(messages)]
    # Offsets are dense per partition (a second produce to a topic continues them).
    by_part: dict[int, list[int]] = {}
    for s in sent:
        by_part.setdefault(s.partition, []).append(s.offset)
    for p, offs in by_part.items():
        assert len(set(offs)) == len(offs), f"duplicate offsets reported on {topic}/{p}"
    return sent


def end_offsets(sent: Iterable[Sent]) -> dict[tuple[str, int], int]:
    """The next offset of every partition written to, from the delivery reports."""
    out: dict[tuple[str, int], int] = {}
    for s in sent:
        out[(s.topic, s.partition)] = max(out.get((s.topic, s.partition), 0), s.offset + 1)
    return out


# --------------------------------------------------------------------------- #
# Test data (JSON)
# --------------------------------------------------------------------------- #

ORDER_AVSC = {
    "type": "record", "name": "order", "namespace": "tarn.test",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
BAD_KINDS = ("bad_json", "bad_type", "tombstone")


@dataclass(frozen=True)
class Msg:
    """A message to produce: a valid order, or one of BAD_KINDS."""
    id: int
    kind: str

    @property
    def row(self) -> dict:
        """The record of a valid message, as the raw table must hold it."""
        return {"id": self.id, "customer": f"c{self.id % 97}", "amount": self.id * 0.25,
                "note": None if self.id % 3 else f"note {self.id}"}

    def encode(self) -> tuple[bytes, bytes | None]:
        key = f"k{self.id}".encode()
        if self.kind == "ok":
            return key, json.dumps(self.row).encode()
        if self.kind == "bad_json":
            return key, b'{"id": %d, "customer": "c", "amount": ' % self.id  # truncated
        if self.kind == "bad_type":
            return key, json.dumps({"id": self.id, "customer": "c", "amount": "abc"}).encode()
        assert self.kind == "tombstone"
        return key, None


def make_msgs(n: int, start: int = 0, bad_every: int = 50) -> list[Msg]:
    """n messages with ids start.., every `bad_every`-th one bad (cycling the kinds)."""
    out = []
    for i in range(start, start + n):
        kind = BAD_KINDS[(i // bad_every) % len(BAD_KINDS)] if i % bad_every == 7 else "ok"
        out.append(Msg(i, kind))
    return out


def produce_msgs(topic: str, msgs: list[Msg]) -> list[tuple[Msg, Sent]]:
    return list(zip(msgs, produce(topic, [m.encode() for m in msgs])))


@pytest.fixture
def order_schema(tmp_path: Path) -> Path:
    path = tmp_path / "order.avsc"
    path.write_text(json.dumps(ORDER_AVSC))
    return path


# --------------------------------------------------------------------------- #
# Reading the tables back
# --------------------------------------------------------------------------- #


def delta_exists(path: Path) -> bool:
    return (path / "_delta_log").is_dir() and any((path / "_delta_log").glob("*.json"))


def rows(path: Path) -> list[dict]:
    return DeltaTable(str(path)).to_pyarrow_table().to_pylist() if delta_exists(path) else []


def version(path: Path) -> int | None:
    return DeltaTable(str(path)).version() if delta_exists(path) else None


def log_commits(path: Path) -> list[tuple[int, list[dict]]]:
    """The JSON commits of a Delta log, in version order: (version, actions)."""
    out = []
    for f in sorted((path / "_delta_log").glob("*.json")):
        try:
            v = int(f.name.split(".")[0])
        except ValueError:
            continue
        out.append((v, [json.loads(line) for line in f.read_text().splitlines() if line.strip()]))
    return out


def txn_commits(path: Path) -> int:
    """How many commits of the table carry a `txn` action (the Kafka batches)."""
    if not (path / "_delta_log").is_dir():
        return 0
    n = 0
    for f in glob.glob(str(path / "_delta_log" / "*.json")):
        try:
            text = Path(f).read_text()
        except FileNotFoundError:
            continue
        n += '"txn"' in text
    return n


def txn_versions(path: Path) -> dict[str, int]:
    """The latest `txn` version of every app id, from the Delta log's JSON commits;
    also checks that each app id's versions only ever grow."""
    out: dict[str, int] = {}
    for v, actions in log_commits(path):
        for a in actions:
            if "txn" in a:
                app, ver = a["txn"]["appId"], a["txn"]["version"]
                assert ver > out.get(app, -1), \
                    f"{path} v{v}: txn {app} goes from {out.get(app)} to {ver}"
                out[app] = ver
    return out


def app_id(topic: str, partition: int) -> str:
    return f"tarn-kafka-{topic}-{partition}"


def check_commits_match_offsets(raw: Path) -> None:
    """Every raw commit holds, per partition, exactly offsets in [previous txn
    version, this commit's txn version): the data and its offsets agree."""
    prev: dict[str, int] = {}
    for v, actions in log_commits(raw):
        txns = {a["txn"]["appId"]: a["txn"]["version"] for a in actions if "txn" in a}
        offsets: dict[str, list[int]] = {}
        for a in actions:
            if "add" not in a:
                continue
            t = pq.read_table(raw / unquote(a["add"]["path"]), columns=["_ingest_source"])
            for src in t.column(0).to_pylist():
                tp, _, off = src.rpartition(":")
                topic, _, part = tp[len("kafka:"):].rpartition("/")
                offsets.setdefault(app_id(topic, int(part)), []).append(int(off))
        for app, offs in offsets.items():
            assert app in txns, f"{raw} v{v} adds rows of {app} without its txn"
            lo, hi = prev.get(app, 0), txns[app]
            bad = [o for o in offs if not lo <= o < hi]
            assert not bad, f"{raw} v{v}: offsets {bad[:5]} of {app} outside [{lo}, {hi})"
        prev.update(txns)


@dataclass
class Expected:
    """What the raw and quarantine tables must hold for a set of produced messages."""
    sent: list[tuple[Msg, Sent]]

    @property
    def valid(self) -> list[tuple[Msg, Sent]]:
        return [(m, s) for m, s in self.sent if m.kind == "ok"]

    @property
    def bad(self) -> list[tuple[Msg, Sent]]:
        return [(m, s) for m, s in self.sent if m.kind != "ok"]


def check_raw(raw: Path, exp: Expected, run_ids: set[str] | None = None) -> list[dict]:
    """Raw holds exactly the valid messages, once each, with their lineage."""
    got = rows(raw)
    ids = Counter(r["id"] for r in got)
    dups = {i: c for i, c in ids.items() if c > 1}
    assert not dups, f"{len(dups)} ids in raw more than once, e.g. {sorted(dups.items())[:10]}"
    want = {m.id: (m, s) for m, s in exp.valid}
    missing = sorted(set(want) - set(ids))
    extra = sorted(set(ids) - set(want))
    assert not missing and not extra, \
        f"raw: {len(missing)} valid ids missing {missing[:10]}, {len(extra)} unexpected {extra[:10]}"
    for r in got:
        m, s = want[r["id"]]
        record = {k: r[k] for k in m.row}
        assert record == m.row, f"raw row {r} != produced {m.row}"
        assert r["_ingest_source"] == s.lineage, (r, s)
        assert isinstance(r["_ingested_at"], dt.datetime)
        if run_ids is not None:
            assert r["_ingest_run_id"] in run_ids, (r["_ingest_run_id"], run_ids)
    if got:
        assert RAW_LINEAGE <= set(got[0]), sorted(got[0])
    return got


def check_quarantine(path: Path, exp: Expected, dataset: str,
                     run_ids: set[str] | None = None) -> list[dict]:
    """Quarantine holds exactly the bad messages, once each, at their offsets."""
    got = rows(path)
    if got:
        assert list(got[0]) == QUARANTINE_FIELDS, list(got[0])
    at = Counter((r["source"], r["position"]) for r in got)
    dups = {k: c for k, c in at.items() if c > 1}
    assert not dups, f"quarantined more than once: {sorted(dups.items())[:10]}"
    want = {(s.source, s.offset): (m, s) for m, s in exp.bad}
    missing = sorted(set(want) - set(at))
    extra = sorted(set(at) - set(want))
    assert not missing and not extra, \
        f"quarantine: {len(missing)} bad messages missing {missing[:10]}, " \
        f"{len(extra)} unexpected {extra[:10]}"
    for r in got:
        m, s = want[(r["source"], r["position"])]
        assert r["dataset"] == dataset
        assert r["reason"], r
        assert isinstance(r["quarantined_at"], dt.datetime)
        if run_ids is not None:
            assert r["run_id"] in run_ids, (r["run_id"], run_ids)
        if m.kind == "tombstone":
            assert "tombstone" in r["reason"].lower(), r
            assert r["payload"] == "", r
        elif m.kind == "bad_type":
            assert r["field"] == "amount", r
            assert r["payload"] == s.value.decode(), r
        elif m.kind == "bad_json":
            assert "json" in r["reason"].lower(), r
            assert r["payload"] == s.value.decode(), r
    return got


def wait_for(pred, timeout: float, what: str, bg: Bg | None = None, interval: float = 0.05):
    """Polls pred() (an error while tarn writes counts as not yet) until it holds."""
    def holds() -> bool:
        try:
            return bool(pred())
        except Exception:  # noqa: BLE001 - e.g. a table read between two files
            return False

    deadline = time.monotonic() + timeout
    while not holds():
        if bg is not None and not bg.running():
            raise AssertionError(f"tarn exited while waiting for {what}:\n{bg.describe()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                                 + (f"\n{bg.describe()}" if bg else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------- #
# 1. JSON, bounded
# --------------------------------------------------------------------------- #


def test_json_bounded_ingest(lake: Lake, new_topic, order_schema: Path):
    topic = new_topic(4)
    msgs = make_msgs(5000)
    exp = Expected(produce_msgs(topic, msgs))
    assert {s.partition for _, s in exp.sent} == {0, 1, 2, 3}, "keys did not spread over partitions"
    kinds = Counter(m.kind for m in msgs)
    assert all(kinds[k] >= 10 for k in BAD_KINDS), kinds

    run = lake.ingest("orders", [topic], "--schema", order_schema)
    meta = run.meta
    assert run.status == "partial", run.report  # some rows quarantined
    assert meta["dataset"] == "orders"
    assert meta["rows_read"] == len(msgs), meta
    assert meta["rows_written"] == len(exp.valid), meta
    assert meta["rows_quarantined"] == len(exp.bad), meta
    assert meta["rows_read"] == meta["rows_written"] + meta["rows_quarantined"]
    assert meta["bytes_read"] == sum(len(s.value or b"") for _, s in exp.sent), meta

    raw, q = lake.raw("orders"), lake.quarantine("orders")
    check_raw(raw, exp, run_ids={meta["run_id"]})
    check_quarantine(q, exp, "orders", run_ids={meta["run_id"]})
    assert meta["delta_version"] == version(raw), (meta, version(raw))
    assert meta["quarantine_version"] == version(q), (meta, version(q))
    ends = end_offsets(s for _, s in exp.sent)
    want_txn = {app_id(t, p): n for (t, p), n in ends.items()}
    assert txn_versions(raw) == want_txn
    dt_raw = DeltaTable(str(raw))
    for app, n in want_txn.items():
        assert dt_raw.transaction_version(app) == n, app  # as another Delta reader sees it
    check_commits_match_offsets(raw)

    # The schema is typed as the .avsc says (the columns of the record + lineage).
    names = DeltaTable(str(raw)).to_pyarrow_table().schema.names
    assert names[:4] == ["id", "customer", "amount", "note"], names
    assert set(names[4:]) == RAW_LINEAGE, names

    # A second bounded run right after: nothing new, nothing written.
    before = (version(raw), version(q), sorted(os.listdir(raw / "_delta_log")))
    again = lake.ingest("orders", [topic], "--schema", order_schema)
    assert again.status == "skipped", again.report
    assert again.meta["rows_read"] == 0 and again.meta["rows_written"] == 0, again.meta
    assert again.meta["rows_quarantined"] == 0, again.meta
    assert (version(raw), version(q), sorted(os.listdir(raw / "_delta_log"))) == before
    check_raw(raw, exp, run_ids={meta["run_id"]})


# --------------------------------------------------------------------------- #
# 2. SIGKILL mid-ingest, restart
# --------------------------------------------------------------------------- #


def test_sigkill_and_restart(lake: Lake, new_topic, order_schema: Path):
    """Each run is SIGKILLed (at a random point, or right after a quarantine
    commit) and the next one resumes from the table.

    Each run joins its own consumer group unless TARN_TEST_KAFKA_SAME_GROUP=1:
    tansu 0.6.0 does not reliably expel a SIGKILLed group leader (a restarted
    member in the same group waits 20-50 s, and sometimes gets an empty
    assignment that never changes, so a bounded run waits forever). The
    offsets come from the table either way, so a fresh group must resume
    exactly where the dead run committed; the group's own offsets would be
    those of a new group (none: `earliest`)."""
    rnd = random.Random(SEED)
    topic = new_topic(4)
    msgs = make_msgs(20000)
    exp = Expected(produce_msgs(topic, msgs))
    raw, q = lake.raw("orders"), lake.quarantine("orders")
    same_group = os.environ.get("TARN_TEST_KAFKA_SAME_GROUP") == "1"
    runs = iter(range(1000))

    def args(batch_size: int = 200) -> tuple:
        group = "tarn-orders" if same_group else f"kill-{next(runs)}-{uuid.uuid4().hex[:6]}"
        return ("orders", [topic], "--schema", order_schema, "--batch-size", batch_size,
                "--group", group)

    def q_commits() -> int:
        log = q / "_delta_log"
        return len(list(log.glob("*.json"))) if log.is_dir() else 0

    kills = 0
    quarantine_ahead = False
    for attempt in range(KILLS):  # even: a random point; odd: after a quarantine commit
        base = txn_commits(raw)
        bg = lake.start(*args())
        try:
            wait_for(lambda: txn_commits(raw) >= base + 2, 90, "two more commits", bg)
        except AssertionError:
            if bg.running() or bg.wait() != 0:
                raise
            break  # it finished before two more commits: nothing left to kill
        if attempt % 2 == 0:
            time.sleep(rnd.uniform(0, 1.0))  # anywhere
        else:
            # Right after a quarantine commit: most likely before the raw commit
            # of the same batch, whose rejects the restart must not quarantine again.
            n = q_commits()
            deadline = time.monotonic() + 10
            while q_commits() == n and bg.running() and time.monotonic() < deadline:
                pass
        if not bg.running():
            assert bg.wait() == 0, bg.describe()
            break
        bg.proc.send_signal(signal.SIGKILL)
        bg.wait()
        kills += 1
        q_txn, raw_txn = txn_versions(q), txn_versions(raw)
        ahead = {a: (v, raw_txn.get(a)) for a, v in q_txn.items() if v > raw_txn.get(a, 0)}
        quarantine_ahead |= bool(ahead)
        print(f"kill {kills}: {txn_commits(raw)} commits in raw, {len(rows(raw))} rows, "
              f"quarantine ahead of raw: {ahead}")
        # What is committed so far is a prefix of each partition, exactly once.
        check_commits_match_offsets(raw)
        partial = rows(raw)
        ids = Counter(r["id"] for r in partial)
        assert all(c == 1 for c in ids.values()), "duplicates before the restart"
    assert kills >= 1, "the ingest finished before it could be killed (make it slower)"

    at_restart = txn_versions(raw)  # where the last run must resume
    final = lake.ingest(*args(batch_size=2000))  # fewer commits: quicker
    print(f"after {kills} kill(s) the last run read {final.meta['rows_read']} messages "
          f"(a kill left the quarantine ahead of raw: {quarantine_ahead})")
    assert final.status in ("success", "partial", "skipped"), final.report
    m = final.meta
    assert m["rows_read"] == m["rows_written"] + m["rows_quarantined"], m
    check_raw(raw, exp)
    check_quarantine(q, exp, "orders")
    check_commits_match_offsets(raw)
    ends = end_offsets(s for _, s in exp.sent)
    assert txn_versions(raw) == {app_id(t, p): n for (t, p), n in ends.items()}
    # The last run read exactly what the table lacked: from the committed offsets on.
    def unread(s: Sent) -> bool:
        return s.offset >= at_restart.get(app_id(s.topic, s.partition), 0)

    assert m["rows_read"] == sum(unread(s) for _, s in exp.sent), (m, at_restart)
    assert m["rows_written"] == sum(unread(s) for _, s in exp.valid), (m, at_restart)


# --------------------------------------------------------------------------- #
# 3. Two workers, one group
# --------------------------------------------------------------------------- #


def test_two_workers_one_group(lake: Lake, new_topic, order_schema: Path):
    topic = new_topic(4)
    msgs = make_msgs(20000, start=100000)
    exp = Expected(produce_msgs(topic, msgs))
    raw, q = lake.raw("orders"), lake.quarantine("orders")
    args = ("orders", [topic], "--schema", order_schema, "--batch-size", "250",
            "--group", f"workers-{uuid.uuid4().hex[:8]}")
    workers = [lake.start(*args), lake.start(*args)]
    runs = [w.finish() for w in workers]

    run_ids = {r.meta["run_id"] for r in runs}
    assert len(run_ids) == 2
    print("rows read per worker:", [r.meta["rows_read"] for r in runs])
    for r in runs:
        assert r.meta["rows_read"] == r.meta["rows_written"] + r.meta["rows_quarantined"], r.meta
    # Counted once over both workers (a batch dropped after a rebalance is not counted).
    assert sum(r.meta["rows_written"] for r in runs) == len(exp.valid), [r.meta for r in runs]
    assert sum(r.meta["rows_quarantined"] for r in runs) == len(exp.bad), [r.meta for r in runs]

    check_raw(raw, exp, run_ids=run_ids)
    check_quarantine(q, exp, "orders", run_ids=run_ids)
    check_commits_match_offsets(raw)
    ends = end_offsets(s for _, s in exp.sent)
    want = {app_id(t, p): n for (t, p), n in ends.items()}
    assert len(want) == 4
    assert txn_versions(raw) == want
    dt_raw = DeltaTable(str(raw))
    for app, n in want.items():
        assert dt_raw.transaction_version(app) == n, app


# --------------------------------------------------------------------------- #
# 4. Follow mode
# --------------------------------------------------------------------------- #


def test_follow_flushes_on_sigterm_and_closes_on_latency(lake: Lake, new_topic, order_schema: Path):
    topic = new_topic(2)
    raw, q = lake.raw("orders"), lake.quarantine("orders")
    common = ("orders", [topic], "--schema", order_schema, "--follow")

    # (a) A long --max-latency and a big batch: nothing commits until SIGTERM.
    bg = lake.start(*common, "--max-latency", "60s", "--batch-size", "100000")
    first = produce_msgs(topic, make_msgs(400, start=0, bad_every=40))
    time.sleep(6)  # the consumer joins and reads them; the batch stays open
    assert bg.running(), bg.describe()
    assert txn_commits(raw) == 0, "committed before --max-latency or the signal"
    bg.signal(signal.SIGTERM)
    run = bg.finish(timeout=60)
    exp = Expected(first)
    assert run.meta["rows_read"] == len(first), run.meta
    assert run.meta["rows_written"] == len(exp.valid), run.meta
    assert run.meta["rows_quarantined"] == len(exp.bad), run.meta
    check_raw(raw, exp, run_ids={run.meta["run_id"]})
    check_quarantine(q, exp, "orders")
    assert txn_commits(raw) == 1, "the flush on SIGTERM should be one commit"

    # (b) --max-latency 500ms: batches close on time while the ingest keeps running.
    second = produce_msgs(topic, make_msgs(300, start=1000, bad_every=40))
    bg = lake.start(*common, "--max-latency", "500ms")
    exp = Expected(first + second)
    want = {m.id for m, _ in exp.valid}
    wait_for(lambda: {r["id"] for r in rows(raw)} >= want, 45, "the second batch in raw", bg)
    third = produce_msgs(topic, make_msgs(200, start=2000, bad_every=40))
    exp = Expected(first + second + third)
    want = {m.id for m, _ in exp.valid}
    wait_for(lambda: {r["id"] for r in rows(raw)} >= want, 30, "the third batch in raw", bg)
    assert bg.running(), "a --follow ingest stopped by itself"
    bg.signal(signal.SIGINT)
    run = bg.finish(timeout=60)
    assert run.meta["rows_read"] == len(second) + len(third), run.meta
    check_raw(raw, exp)
    check_quarantine(q, exp, "orders")
    check_commits_match_offsets(raw)
    ends = end_offsets(s for _, s in exp.sent)
    assert txn_versions(raw) == {app_id(t, p): n for (t, p), n in ends.items()}


# --------------------------------------------------------------------------- #
# 5. Avro and Confluent Avro
# --------------------------------------------------------------------------- #

PAYMENT_AVSC = {
    "type": "record", "name": "payment", "namespace": "tarn.test",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal",
                                    "precision": 12, "scale": 2}},
        {"name": "paid_at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
PAID_BASE = dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)


def payment(i: int) -> dict:
    return {
        "id": i,
        "customer": f"cust-{i % 13}",
        # Negative, zero, large and sub-unit amounts.
        "amount": Decimal(i * 1234567 % 9999999999 - 50000) / Decimal(100),
        "paid_at": PAID_BASE + dt.timedelta(seconds=i * 3607, microseconds=i * 17),
        "note": None if i % 4 else f"n{i}",
    }


def avro_datum(schema: dict, record: dict) -> bytes:
    buf = BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def check_payments(raw: Path, want: dict[int, dict], lineage: dict[int, Sent]) -> None:
    got = rows(raw)
    ids = Counter(r["id"] for r in got)
    assert all(c == 1 for c in ids.values()), ids.most_common(3)
    assert set(ids) == set(want), (sorted(set(want) - set(ids))[:10], sorted(set(ids) - set(want))[:10])
    schema = DeltaTable(str(raw)).to_pyarrow_table().schema
    assert schema.field("amount").type == pa.decimal128(12, 2), schema
    assert schema.field("paid_at").type == pa.timestamp("us", tz="UTC"), schema
    for r in got:
        w = want[r["id"]]
        got_rec = {k: r[k] for k in w}
        if got_rec["paid_at"] is not None and got_rec["paid_at"].tzinfo is None:
            got_rec["paid_at"] = got_rec["paid_at"].replace(tzinfo=UTC)
        assert got_rec == w, f"{got_rec} != {w}"
        assert r["_ingest_source"] == lineage[r["id"]].lineage


def test_avro_binary(lake: Lake, new_topic, tmp_path: Path):
    schema_path = tmp_path / "payment.avsc"
    schema_path.write_text(json.dumps(PAYMENT_AVSC))
    topic = new_topic(3)
    records = [payment(i) for i in range(1, 301)]
    messages: list[tuple[bytes, bytes | None]] = [(b"%d" % r["id"], avro_datum(PAYMENT_AVSC, r))
                                                  for r in records]
    good = avro_datum(PAYMENT_AVSC, payment(999))
    bad = [
        (b"trunc", good[:5]),              # the datum stops inside the customer string
        (b"tomb", None),                   # a tombstone
        (b"neg", b"\x02\x7f"),             # id 1, then a string of length -64
    ]
    sent = produce(topic, messages + bad)
    lineage = {r["id"]: s for r, s in zip(records, sent)}

    run = lake.ingest("payments", [topic], "--format", "avro", "--schema", schema_path)
    assert run.meta["rows_read"] == len(messages) + len(bad), run.meta
    assert run.meta["rows_written"] == len(records), json.dumps(run.report["errors"], indent=1)
    assert run.meta["rows_quarantined"] == len(bad), run.meta
    check_payments(lake.raw("payments"), {r["id"]: r for r in records}, lineage)

    qrows = rows(lake.quarantine("payments"))
    want_q = {(s.source, s.offset) for s in sent[len(messages):]}
    assert Counter((r["source"], r["position"]) for r in qrows) == Counter(want_q), qrows
    by_pos = {(r["source"], r["position"]): r for r in qrows}
    tomb = sent[len(messages) + 1]
    assert "tombstone" in by_pos[(tomb.source, tomb.offset)]["reason"].lower()
    ends = end_offsets(sent)
    assert txn_versions(lake.raw("payments")) == {app_id(t, p): n for (t, p), n in ends.items()}


class Registry:
    """A minimal Confluent schema registry: GET /schemas/ids/<id>."""

    def __init__(self, schemas: dict[int, dict]):
        self.schemas = schemas
        self.requests: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                registry.requests.append(self.path)
                parts = self.path.rstrip("/").split("/")
                sid = parts[-1] if len(parts) == 4 and parts[1:3] == ["schemas", "ids"] else ""
                if sid.isdigit() and int(sid) in registry.schemas:
                    body = json.dumps({"schema": json.dumps(registry.schemas[int(sid)])})
                    self.send_response(200)
                else:
                    body = json.dumps({"error_code": 40403, "message": "Schema not found"})
                    self.send_response(404)
                data = body.encode()
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def confluent(schema_id: int, datum: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + datum


def test_confluent_avro(lake: Lake, new_topic, tmp_path: Path):
    reader_path = tmp_path / "payment.avsc"
    reader_path.write_text(json.dumps(PAYMENT_AVSC))
    # Writer schema 7: the dataset schema's fields in another order, without
    # `note` (the reader's default fills it). Writer schema 8: the dataset schema.
    # Writer schema 9: `amount` is a string. tarn decodes with the writer schema
    # and validates values against the dataset schema, so a string that is not
    # a decimal is quarantined (a decimal string would land).
    w7 = {"type": "record", "name": "payment", "namespace": "tarn.test",
          "fields": [PAYMENT_AVSC["fields"][i] for i in (3, 0, 2, 1)]}
    w8 = PAYMENT_AVSC
    w9 = {"type": "record", "name": "payment", "namespace": "tarn.test",
          "fields": [{"name": "id", "type": "long"}, {"name": "customer", "type": "string"},
                     {"name": "amount", "type": "string"},
                     PAYMENT_AVSC["fields"][3]]}
    registry = Registry({7: w7, 8: w8, 9: w9})
    try:
        topic = new_topic(2)
        records, messages = [], []
        for i in range(1, 201):
            r = payment(i)
            if i % 2:
                datum = confluent(7, avro_datum(w7, {k: v for k, v in r.items() if k != "note"}))
                r = {**r, "note": None}
            else:
                datum = confluent(8, avro_datum(w8, r))
            records.append(r)
            messages.append((b"%d" % i, datum))
        plain = avro_datum(w8, payment(500))  # no magic byte and schema id
        assert plain[0] != 0
        bad = [
            (b"unknown", confluent(4242, avro_datum(w8, payment(501)))),  # unknown schema id
            (b"plain", plain),
            (b"short", b"\x00\x00\x00"),  # too short for the header
            (b"w9", confluent(9, avro_datum(w9, {"id": 502, "customer": "x", "amount": "abc",
                                                 "paid_at": PAID_BASE}))),
        ]
        sent = produce(topic, messages + bad)
        lineage = {r["id"]: s for r, s in zip(records, sent)}

        run = lake.ingest("payments", [topic], "--format", "confluent-avro",
                          "--schema-registry", registry.url, "--schema", reader_path)
        assert run.meta["rows_read"] == len(messages) + len(bad), run.meta
        assert run.meta["rows_written"] == len(records), json.dumps(run.report["errors"], indent=1)
        assert run.meta["rows_quarantined"] == len(bad), run.meta
        check_payments(lake.raw("payments"), {r["id"]: r for r in records}, lineage)

        qrows = rows(lake.quarantine("payments"))
        bad_sent = sent[len(messages):]
        assert Counter((r["source"], r["position"]) for r in qrows) == \
            Counter((s.source, s.offset) for s in bad_sent), qrows
        by_pos = {(r["source"], r["position"]): r for r in qrows}
        unknown = by_pos[(bad_sent[0].source, bad_sent[0].offset)]
        assert "4242" in unknown["reason"], unknown
        assert "/schemas/ids/4242" in registry.requests, registry.requests
        assert {"/schemas/ids/7", "/schemas/ids/8"} <= set(registry.requests), registry.requests
        ends = end_offsets(sent)
        assert txn_versions(lake.raw("payments")) == \
            {app_id(t, p): n for (t, p), n in ends.items()}
    finally:
        registry.close()
