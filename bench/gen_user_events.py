#!/usr/bin/env python3
"""Deterministic generator of a `user_events` data set for the ingest benchmark.

Writes, into --out DIR:
  user_events.csv     header + N rows, ISO-8601 UTC timestamps with milliseconds
  user_events.ndjson  the same N rows, one JSON object per line, timestamps as
                      epoch milliseconds (Avro's own JSON representation)
  user_events.avsc    the Avro schema both files are validated against
  user_events.meta.json  rows, seed, bad-row counts, file sizes

The same (--rows, --seed, --bad-fraction) always gives byte-identical files.
Everything is vectorized (numpy + pyarrow compute); the files are produced in
chunks of 1M rows so memory stays bounded (~1 GB) for any N.

Invalid rows (--bad-fraction, default 0.001) exercise validation/quarantine:
  CSV:    a bad timestamp, an unknown event_type symbol, an empty user_id
  NDJSON: an unknown event_type symbol, a null user_id, an unknown device symbol
(the NDJSON file has no "bad timestamp" rows because a string in an otherwise
integer column makes pyarrow's JSON reader fail the whole file, and the
benchmark compares against pyarrow).

Usage: python3 bench/gen_user_events.py --rows 10000000 --out bench/data/10000000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CHUNK = 1_000_000
BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
SPAN_DAYS = 31

EVENT_TYPES = ["view", "click", "purchase"]
EVENT_P = [0.70, 0.25, 0.05]
DEVICES = ["desktop", "mobile", "tablet", "tv"]
DEVICE_P = [0.45, 0.45, 0.08, 0.02]
COUNTRIES = ["US", "DE", "GB", "FR", "IN", "BR", "JP", "CA", "ES", "IT", "NL", "SE", "PL", "MX", "AU",
             "KR", "TR", "AR", "ZA", "NG", "ID", "PH", "VN", "EG", "CH", "AT", "BE", "DK", "NO", "FI"]
SECTIONS = ["/products/", "/category/", "/search/", "/blog/", "/cart/", "/checkout/", "/account/", "/help/"]
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "ShopApp/4.12.1 (iPhone15,2; iOS 17.2; Scale/3.00)",
    "ShopApp/4.12.0 (Android 13; SM-S911B)",
    "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Roku/DVP-12.5 (12.5.0.4174)",
    "curl/8.5.0",
]
BAD_TIMESTAMP = "not-a-timestamp"
BAD_EVENT = "refund"
BAD_DEVICE = "fridge"

AVRO_SCHEMA = {
    "type": "record",
    "name": "user_events",
    "namespace": "tarn.bench",
    "fields": [
        {"name": "user_id", "type": "long"},
        {"name": "event_type", "type": {"type": "enum", "name": "event_type", "symbols": EVENT_TYPES}},
        {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "amount", "type": ["null", "double"], "default": None},
        {"name": "session_id", "type": ["null", {"type": "string", "logicalType": "uuid"}], "default": None},
        {"name": "country", "type": "string"},
        {"name": "device", "type": {"type": "enum", "name": "device", "symbols": DEVICES}},
        {"name": "page", "type": "string"},
        {"name": "user_agent", "type": "string"},
    ],
}
COLUMNS = [f["name"] for f in AVRO_SCHEMA["fields"]]


# --------------------------------------------------------------------------- #
# vectorized string building
# --------------------------------------------------------------------------- #

def fixed_width_strings(mat: np.ndarray) -> pa.Array:
    """(N, W) uint8 ASCII matrix -> pyarrow string array of N width-W strings."""
    n, w = mat.shape
    data = np.ascontiguousarray(mat).reshape(-1)
    offsets = np.arange(0, (n + 1) * w, w, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data)).cast(pa.string())


def iso_timestamps(ms: np.ndarray) -> pa.Array:
    """epoch ms -> 'YYYY-MM-DDTHH:MM:SS.mmmZ' (24 chars), no per-row Python."""
    days = ms // 86_400_000
    rem = ms - days * 86_400_000
    d0 = int(days.min())
    ndays = int(days.max()) - d0 + 1
    day_table = np.frombuffer("".join(
        str(np.datetime64(d0 + i, "D")) for i in range(ndays)).encode(), dtype=np.uint8).reshape(ndays, 10)
    out = np.empty((len(ms), 24), dtype=np.uint8)
    out[:, 0:10] = day_table[days - d0]
    hh = rem // 3_600_000
    mm = (rem // 60_000) % 60
    ss = (rem // 1000) % 60
    mmm = rem % 1000
    zero = ord("0")
    out[:, 10] = ord("T")
    out[:, 11] = zero + hh // 10
    out[:, 12] = zero + hh % 10
    out[:, 13] = ord(":")
    out[:, 14] = zero + mm // 10
    out[:, 15] = zero + mm % 10
    out[:, 16] = ord(":")
    out[:, 17] = zero + ss // 10
    out[:, 18] = zero + ss % 10
    out[:, 19] = ord(".")
    out[:, 20] = zero + mmm // 100
    out[:, 21] = zero + (mmm // 10) % 10
    out[:, 22] = zero + mmm % 10
    out[:, 23] = ord("Z")
    return fixed_width_strings(out)


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def uuids_v4(rng: np.random.Generator, n: int) -> pa.Array:
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    hexd = np.empty((n, 32), dtype=np.uint8)
    hexd[:, 0::2] = _HEX[raw >> 4]
    hexd[:, 1::2] = _HEX[raw & 0x0F]
    out = np.empty((n, 36), dtype=np.uint8)
    out[:, [8, 13, 18, 23]] = ord("-")
    out[:, 0:8] = hexd[:, 0:8]
    out[:, 9:13] = hexd[:, 8:12]
    out[:, 14:18] = hexd[:, 12:16]
    out[:, 19:23] = hexd[:, 16:20]
    out[:, 24:36] = hexd[:, 20:32]
    return fixed_width_strings(out)


def pick(rng: np.random.Generator, vocab: list[str], n: int, p: list[float] | None = None) -> tuple[np.ndarray, pa.Array]:
    idx = rng.choice(len(vocab), size=n, p=p)
    return idx, pa.array(vocab, pa.string()).take(pa.array(idx))


def replace_where(arr: pa.Array, mask: np.ndarray, value: str) -> pa.Array:
    if not mask.any():
        return arr
    return pc.if_else(pa.array(mask), pa.scalar(value, arr.type), arr)


def join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def write_lines(f, lines: pa.Array) -> None:
    """Write a string array's values back to back (each value ends with \\n)."""
    lines = lines.cast(pa.large_string()) if lines.type != pa.large_string() else lines
    _, offs, data = lines.buffers()
    o = np.frombuffer(offs, dtype=np.int64, count=len(lines) + 1, offset=lines.offset * 8)
    f.write(memoryview(data)[o[0]:o[-1]])


# --------------------------------------------------------------------------- #
# one chunk
# --------------------------------------------------------------------------- #

def gen_chunk(seed: int, chunk_idx: int, start: int, n: int, total_rows: int, bad_fraction: float) -> tuple[bytes, bytes, dict]:
    rng = np.random.default_rng([seed, chunk_idx])
    user_id = rng.integers(1, 5_000_001, size=n, dtype=np.int64)
    ev_idx, event_type = pick(rng, EVENT_TYPES, n, EVENT_P)
    # roughly increasing timestamps spread over SPAN_DAYS, millisecond precision
    pos = start + np.arange(n, dtype=np.int64)
    ms = BASE_MS + pos * (SPAN_DAYS * 86_400_000 - 60_000) // total_rows + rng.integers(0, 60_000, size=n)
    is_purchase = ev_idx == 2
    amount_vals = np.round(rng.lognormal(3.0, 1.0, size=n), 2)
    has_session = rng.random(n) >= 0.03
    session = uuids_v4(rng, n)
    _, country = pick(rng, COUNTRIES, n)
    _, device = pick(rng, DEVICES, n, DEVICE_P)
    sec_idx = rng.integers(0, len(SECTIONS), size=n)
    page = join(pa.array(SECTIONS).take(pa.array(sec_idx)), pc.cast(pa.array(rng.integers(1, 100_000, size=n)), pa.string()))
    ua_idx = rng.integers(0, len(USER_AGENTS), size=n)

    bad = rng.random(n) < bad_fraction
    bad_kind = rng.integers(0, 3, size=n)
    counts = {"csv": {}, "ndjson": {}}

    uid_s = pc.cast(pa.array(user_id), pa.string())
    amount_s = pc.cast(pa.array(amount_vals), pa.string())

    # ---------------- CSV ---------------- #
    c_bad_ts = bad & (bad_kind == 0)
    c_bad_ev = bad & (bad_kind == 1)
    c_no_uid = bad & (bad_kind == 2)
    counts["csv"] = {"bad_timestamp": int(c_bad_ts.sum()), "bad_event_type": int(c_bad_ev.sum()),
                     "empty_user_id": int(c_no_uid.sum())}
    ts_iso = replace_where(iso_timestamps(ms), c_bad_ts, BAD_TIMESTAMP)
    ev_csv = replace_where(event_type, c_bad_ev, BAD_EVENT)
    uid_csv = replace_where(uid_s, c_no_uid, "")
    amount_csv = pc.if_else(pa.array(is_purchase), amount_s, pa.scalar("", pa.string()))
    session_csv = pc.if_else(pa.array(has_session), session, pa.scalar("", pa.string()))
    ua_csv_vocab = [f'"{u}"' if "," in u else u for u in USER_AGENTS]
    ua_csv = pa.array(ua_csv_vocab).take(pa.array(ua_idx))
    csv_lines = join(uid_csv, ",", ev_csv, ",", ts_iso, ",", amount_csv, ",", session_csv, ",",
                     country, ",", device, ",", page, ",", ua_csv, "\n")

    # ---------------- NDJSON ---------------- #
    j_bad_ev = bad & (bad_kind == 0)
    j_null_uid = bad & (bad_kind == 1)
    j_bad_dev = bad & (bad_kind == 2)
    counts["ndjson"] = {"bad_event_type": int(j_bad_ev.sum()), "null_user_id": int(j_null_uid.sum()),
                        "bad_device": int(j_bad_dev.sum())}
    uid_j = replace_where(uid_s, j_null_uid, "null")
    ev_j = replace_where(event_type, j_bad_ev, BAD_EVENT)
    dev_j = replace_where(device, j_bad_dev, BAD_DEVICE)
    ts_j = pc.cast(pa.array(ms), pa.string())
    amount_j = pc.if_else(pa.array(is_purchase), amount_s, pa.scalar("null", pa.string()))
    session_j = pc.if_else(pa.array(has_session), join('"', session, '"'), pa.scalar("null", pa.string()))
    ua_j = pa.array([json.dumps(u) for u in USER_AGENTS]).take(pa.array(ua_idx))
    json_lines = join('{"user_id":', uid_j, ',"event_type":"', ev_j, '","timestamp":', ts_j,
                      ',"amount":', amount_j, ',"session_id":', session_j, ',"country":"', country,
                      '","device":"', dev_j, '","page":"', page, '","user_agent":', ua_j, "}\n")
    return csv_lines, json_lines, counts


def generate(rows: int, out: Path, seed: int = 42, bad_fraction: float = 0.001, quiet: bool = False) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "user_events.csv", out / "user_events.ndjson"
    (out / "user_events.avsc").write_text(json.dumps(AVRO_SCHEMA, indent=2) + "\n")
    t0 = time.perf_counter()
    totals = {"csv": {}, "ndjson": {}}
    with open(csv_path.with_suffix(".csv.tmp"), "wb") as fc, open(json_path.with_suffix(".ndjson.tmp"), "wb") as fj:
        fc.write((",".join(COLUMNS) + "\n").encode())
        for ci, start in enumerate(range(0, rows, CHUNK)):
            n = min(CHUNK, rows - start)
            csv_lines, json_lines, counts = gen_chunk(seed, ci, start, n, rows, bad_fraction)
            write_lines(fc, csv_lines)
            write_lines(fj, json_lines)
            for fmt in totals:
                for k, v in counts[fmt].items():
                    totals[fmt][k] = totals[fmt].get(k, 0) + v
            if not quiet:
                print(f"  {start + n:>12,} rows  {time.perf_counter() - t0:6.1f}s", file=sys.stderr)
    os.replace(csv_path.with_suffix(".csv.tmp"), csv_path)
    os.replace(json_path.with_suffix(".ndjson.tmp"), json_path)
    meta = {
        "rows": rows, "seed": seed, "bad_fraction": bad_fraction,
        "bad_rows": {fmt: sum(v.values()) for fmt, v in totals.items()}, "bad_rows_by_kind": totals,
        "bytes": {"csv": csv_path.stat().st_size, "ndjson": json_path.stat().st_size},
        "generator_seconds": round(time.perf_counter() - t0, 2),
    }
    (out / "user_events.meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bad-fraction", type=float, default=0.001)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.rows < 1:
        ap.error("--rows must be >= 1")
    if not 0.0 <= a.bad_fraction <= 1.0:
        ap.error("--bad-fraction must be in [0, 1]")
    meta = generate(a.rows, a.out, a.seed, a.bad_fraction, a.quiet)
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
