#!/usr/bin/env python3
"""Zone-pipeline benchmark: `tarn process` (cleanse -> curate -> consume)
against the scripts a data engineer would otherwise write with DuckDB or
Polars plus the `deltalake` package, side by side in one invocation.

What runs, per engine, in a fresh directory each:

  tarn        the example lake of examples/user_events (tarn.yaml, the Avro
              schema, compliance.yaml, countries.csv) is copied into a new
              directory; `tarn ingest file` loads countries and the first
              events file (NOT timed), then `tarn process user_events --json`
              is timed (the whole pipeline: cleanse, curate, consume). Then the
              second events file is ingested (not timed) and `process` is timed
              again: the incremental run.
  duckdb      a child Python process reads the same events CSV with DuckDB's
              read_csv and does what tarn.yaml asks of the cleanse stage in SQL
              (trim/lower/upper, blank -> NULL, amount TRY_CAST to
              DECIMAL(10,2), client_time try_strptime '%d/%m/%Y %H:%M' in
              Europe/Berlin -> UTC, country default 'XX', sha256(salt||email)
              hex, card number masked but the last 4 digits, user_agent
              dropped, rows that cannot be standardized to a quarantine table,
              dedup by event_id keeping the highest revision with QUALIFY
              row_number()); writes the cleansed Delta table with
              deltalake.write_deltalake (change data feed on, as tarn does);
              reads it back and curates (left join countries, is_purchase,
              hour_of_day, the three quarantine expectations and the fail/warn
              checks, partitioned by the UTC date) into a partitioned Delta
              table; reads that back and writes the daily_purchases mart.
              Incremental run (another child): the new CSV is cleansed the same
              way and upserted with DeltaTable.merge(...)
              .when_matched_update_all(predicate="source.revision >=
              target.revision ...").when_not_matched_insert_all(); the rows the
              merge changed are read back with DeltaTable.load_cdf (what tarn
              reads: the change data feed), curated and merged into the curated
              table by event_id; the mart is rebuilt (overwrite).
  polars      the same pipeline with Polars expressions (scan_csv,
              str.strip_chars, to_lowercase, str.strptime +
              dt.replace_time_zone, cast(pl.Decimal(10, 2), strict=False),
              sort + unique for the dedup), DataFrame.write_delta and
              TableMerger for the increment. Polars has no sha256: the email
              hash is hashlib.sha256 inside map_elements (a Python call per
              row: slow, but it is what one writes).
  duckdb-raw, polars-raw
              the same peers, but they start from the raw Delta table tarn's
              ingest wrote (DeltaTable(raw, version=...).to_pyarrow_dataset()
              for DuckDB, pl.scan_delta for Polars), as tarn does. The raw
              lake is made once per invocation with `tarn ingest` (not timed):
              the first run reads the version after the first file, the
              incremental run reads the rows with _ingested_at past the
              watermark the first run saved (a common incremental pattern;
              tarn itself reads the files added since the raw version it
              recorded in the cleansed table's commit).

Method:
  * Input: examples/user_events/generate.py's make_events(); --rows rows over
    4 days (2024-03-01..04, dup_every=50: every 50th row is a re-send of an
    earlier event with a higher revision; --bad-every, default 0, plants rows
    the cleanse and curate stages quarantine). The incremental file has
    rows/10 rows: a fifth day (with its own re-sends), 10% re-sends of
    first-file events with a higher revision (they must win) and 1% stale
    re-sends with revision 1 of events already at revision >= 2 (they must
    not). Written once to bench/data/process/ROWS/ and reused.
  * The peers start from CSV while tarn starts from its raw Delta table (which
    its untimed ingest wrote: typed, validated, with lineage columns). That
    favours tarn by the CSV parse; the -raw variants remove the difference.
  * Every engine runs as its own child process under `/usr/bin/time -v` (or a
    getrusage(RUSAGE_CHILDREN) wrapper), which gives peak RSS and user+sys CPU
    seconds. first/incr. s: tarn = wall time of the `tarn process` process
    (start-up, catalog writes and all); peers = time measured inside the child
    around the pipeline (interpreter start-up and imports excluded, which
    favours the peers slightly).
  * rows/s = input rows of the run / seconds. ratio = peer s / tarn s
    (> 1 means tarn is faster). --repeat K keeps the fastest of K runs (first
    and incremental separately).
  * Equivalence: after each engine, its final tables are counted (not timed):
    cleansed, cleansed quarantine, curated, curated quarantine, mart rows, and
    sums of amount/revenue/events; differences from tarn are printed.

Known differences (the peers do a little less than tarn):
  * No catalog: tarn records runs, lineage (table and column), quality results
    and dataset entries in its SQLite catalog, and commits a txn marker (the
    upstream version consumed) with every write so a rerun is exactly-once;
    the peers keep a watermark file at most.
  * Cleansed/curated rows from CSV lack tarn's lineage columns (_ingest_run_id,
    _ingest_source, _ingested_at, _partition_date); the -raw variants have them.
  * The peers reuse the lookup join for the known_country referential check
    (tarn joins the reference table again) and check uniqueness with
    count(DISTINCT) / n_unique instead of tarn's window; the peers' quarantine
    reasons are shorter texts. Checks are computed once on a materialized
    table (tarn's views re-execute plans for counts, checks and the write).
  * Peers read countries.csv directly; tarn reads its raw countries table.
  * DST edge cases: on a non-existent local client_time (spring-forward gap)
    tarn yields NULL (row quarantined), as Polars' non_existent="null" does;
    DuckDB's timezone() shifts it instead; on an ambiguous one tarn and Polars
    take the earliest instant, DuckDB the later. The generated days avoid DST.

Usage:
  python3 bench/process_bench.py                         # 1M rows, all engines
  python3 bench/process_bench.py --rows 20000 --engines duckdb,polars      # peers only
  python3 bench/process_bench.py --rows 20000 --tarn ~/.cache/tarn/target/debug/tarn  # smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EXAMPLE = REPO / "examples" / "user_events"
DATASET = "user_events"
MART = "daily_purchases"
DAYS = [dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3), dt.date(2024, 3, 4)]
INCR_DAY = dt.date(2024, 3, 5)
DATA_VERSION = 2  # bump when the generated files change
ENGINES = ["tarn", "duckdb", "duckdb-raw", "polars", "polars-raw"]
LABELS = {"tarn": "tarn process", "duckdb": "duckdb + deltalake (CSV)",
          "duckdb-raw": "duckdb + deltalake (raw Delta)", "polars": "polars + deltalake (CSV)",
          "polars-raw": "polars + deltalake (raw Delta)"}
EVENT_TYPES = ["view", "click", "add_to_cart", "purchase"]
CLIENT_TIME_FORMAT = "%d/%m/%Y %H:%M"
# Table paths inside a lake directory, the same for every engine.
TABLES = {
    "cleansed": "lake/cleansed/user_events",
    "cleansed_quarantine": "lake/cleansed/_quarantine/user_events",
    "curated": "lake/curated/user_events",
    "curated_quarantine": "lake/curated/_quarantine/user_events",
    "mart": f"lake/consumption/{MART}",
}
RAW_TABLE = "lake/raw/user_events"
MART_SQL = (f"SELECT _partition_date AS day, event_type, count(*) AS events, "
            f"count(DISTINCT user_id) AS users, sum(amount) AS revenue FROM curated "
            f"WHERE event_type IN ('add_to_cart', 'purchase') GROUP BY 1, 2")
CDF = {"delta.enableChangeDataFeed": "true"}


def log_step(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# =========================================================================== #
# Peers: run in a child as `python3 process_bench.py --peer ENGINE MODE ...`
# =========================================================================== #

def peer_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="process_bench.py --peer")
    ap.add_argument("engine", choices=["duckdb", "polars"])
    ap.add_argument("mode", choices=["first", "incr"])
    ap.add_argument("--csv", help="events CSV to read")
    ap.add_argument("--raw", help="raw Delta table to read (instead of --csv)")
    ap.add_argument("--raw-version", type=int, help="version of --raw to read (first run)")
    ap.add_argument("--countries", required=True)
    ap.add_argument("--out", required=True, help="lake directory the tables go to")
    ap.add_argument("--salt", required=True)
    a = ap.parse_args(argv)
    out = Path(a.out)
    state_path = out / "peer_state.json"
    watermark = None
    if a.raw and a.mode == "incr":
        watermark = json.loads(state_path.read_text())["watermark_us"]
    run = peer_duckdb if a.engine == "duckdb" else peer_polars
    result, new_watermark = run(a, out, watermark)
    if new_watermark is not None:
        state_path.write_text(json.dumps({"watermark_us": new_watermark}))
    print(json.dumps(result))
    return 0


def _pa_reader_to_table(reader):
    import pyarrow as pa
    return pa.RecordBatchReader.from_stream(reader).read_all()


def peer_duckdb(a, out: Path, watermark_us: int | None):
    import duckdb
    import pyarrow as pa  # noqa: F401  (DuckDB's Arrow exchange)
    from deltalake import DeltaTable, write_deltalake

    q = lambda s: "'" + str(s).replace("'", "''") + "'"  # noqa: E731
    p = {k: str(out / v) for k, v in TABLES.items()}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    steps = {}
    t0 = time.perf_counter()

    # ---- cleanse ---------------------------------------------------------- #
    if a.csv:
        cols = ("{'event_id': 'VARCHAR', 'revision': 'BIGINT', 'user_id': 'BIGINT', 'event_type': 'VARCHAR', "
                "'timestamp': 'TIMESTAMPTZ', 'client_time': 'VARCHAR', 'amount': 'VARCHAR', 'email': 'VARCHAR', "
                "'card_number': 'VARCHAR', 'country': 'VARCHAR', 'user_agent': 'VARCHAR'}")
        source = f"read_csv({q(a.csv)}, header = true, columns = {cols})"
        text_extra: list[str] = []
    else:
        raw_dt = DeltaTable(a.raw, version=a.raw_version) if a.mode == "first" else DeltaTable(a.raw)
        raw_ds = raw_dt.to_pyarrow_dataset()  # noqa: F841  (scanned by name below)
        source = "raw_ds"
        if watermark_us is not None:
            wm = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=watermark_us)
            source = f"(SELECT * FROM raw_ds WHERE _ingested_at > TIMESTAMPTZ {q(wm.isoformat())})"
        text_extra = ["_ingest_run_id", "_ingest_source"]

    def blank(e: str) -> str:  # tarn's empty_as_null (after trim, if any)
        return f"CASE WHEN trim({e}) = '' THEN NULL ELSE {e} END"

    fmt = CLIENT_TIME_FORMAT
    extra = "".join(f", {blank(c)} AS {c}" for c in text_extra)
    con.execute(f"""
        CREATE TEMP TABLE std AS
        WITH pre AS (
          SELECT * EXCLUDE (user_agent) REPLACE (
                   {blank('event_id')} AS event_id,
                   lower({blank('trim(event_type)')}) AS event_type,
                   {blank('client_time')} AS client_time,
                   {blank('trim(amount)')} AS amount,
                   {blank('email')} AS email,
                   {blank('card_number')} AS card_number,
                   upper({blank('trim(country)')}) AS country{extra})
          FROM {source}),
        conv AS (
          SELECT *, timezone('Europe/Berlin', try_strptime(client_time, {q(fmt)})) AS _ct,
                    TRY_CAST(amount AS DECIMAL(10,2)) AS _amount
          FROM pre)
        SELECT * EXCLUDE (_ct, _amount) REPLACE (
                 _ct AS client_time,
                 _amount AS amount,
                 CASE WHEN email IS NULL THEN NULL ELSE sha256({q(a.salt)} || email) END AS email,
                 CASE WHEN card_number IS NULL THEN NULL ELSE
                   repeat('*', greatest(length(card_number) - 4, 0)) || right(card_number, 4) END AS card_number,
                 coalesce(country, 'XX') AS country),
               nullif(concat_ws('; ',
                 CASE WHEN client_time IS NOT NULL AND _ct IS NULL
                      THEN 'client_time: ''' || client_time || ''' is not a timestamp in the format {fmt}' END,
                 CASE WHEN amount IS NOT NULL AND _amount IS NULL
                      THEN 'amount: ''' || amount || ''' is not a DECIMAL(10,2)' END), '') AS _reason
        FROM conv""")
    rows_in, bad = con.execute("SELECT count(*), count(_reason) FROM std").fetchall()[0]
    new_watermark = None
    if a.raw:
        m = con.execute("SELECT epoch_us(max(_ingested_at)) FROM std").fetchall()[0][0]
        new_watermark = m if m is not None else watermark_us
    con.execute("""CREATE TEMP TABLE good AS SELECT * EXCLUDE (_reason) FROM std WHERE _reason IS NULL
                   QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY revision DESC NULLS LAST) = 1""")
    cleansed_out = con.execute("SELECT count(*) FROM good").fetchall()[0][0]
    if bad:
        write_deltalake(p["cleansed_quarantine"],
                        con.sql("SELECT * FROM std WHERE _reason IS NOT NULL").to_arrow_table(), mode="append")
    before = None
    if a.mode == "first":
        write_deltalake(p["cleansed"], con.sql("SELECT * FROM good").to_arrow_reader(), mode="error",
                        configuration=CDF)
    else:
        target = DeltaTable(p["cleansed"])
        before = target.version()
        if cleansed_out:
            (target.merge(con.sql("SELECT * FROM good").to_arrow_table(), "target.event_id = source.event_id",
                          source_alias="source", target_alias="target")
             .when_matched_update_all(predicate="source.revision >= target.revision OR target.revision IS NULL")
             .when_not_matched_insert_all().execute())
    steps["cleanse"] = time.perf_counter() - t0

    # ---- curate ----------------------------------------------------------- #
    t1 = time.perf_counter()
    con.execute(f"CREATE TEMP TABLE countries AS SELECT * FROM read_csv({q(a.countries)}, header = true)")
    cleansed = DeltaTable(p["cleansed"])
    if a.mode == "first":
        cleansed_ds = cleansed.to_pyarrow_dataset()  # noqa: F841
        curate_input = "cleansed_ds"
    else:
        if cleansed.version() > before:
            changes = _pa_reader_to_table(cleansed.load_cdf(starting_version=before + 1))  # noqa: F841
            con.execute("""CREATE TEMP TABLE changed AS
                SELECT * EXCLUDE (_change_type, _commit_version, _commit_timestamp) FROM changes
                WHERE _change_type IN ('insert', 'update_postimage')
                QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY _commit_version DESC) = 1""")
        else:
            con.execute("CREATE TEMP TABLE changed AS SELECT * FROM good LIMIT 0")
        curate_input = "changed"
    part = "CAST(i.\"timestamp\" AS DATE)"  # session time zone is UTC
    drop_part = " EXCLUDE (_partition_date)" if a.raw else ""
    con.execute(f"""
        CREATE TEMP TABLE checked AS
        SELECT *, nullif(concat_ws(',',
                 CASE WHEN NOT coalesce(event_type IS NULL OR event_type IN ('view', 'click', 'add_to_cart', 'purchase'), false)
                      THEN 'known_event_type' END,
                 CASE WHEN NOT coalesce(amount IS NULL OR (amount >= 0 AND amount <= 10000), false)
                      THEN 'amount_in_range' END,
                 CASE WHEN NOT coalesce(event_type <> 'purchase' OR amount IS NOT NULL, false)
                      THEN 'purchase_has_amount' END), '') AS _failed
        FROM (SELECT i.*{drop_part}, c.country_name, c.region,
                     date_part('hour', i."timestamp") AS hour_of_day,
                     (i.event_type = 'purchase') AS is_purchase,
                     {part} AS _partition_date
              FROM {curate_input} i
              LEFT JOIN (SELECT DISTINCT ON (country) country, country_name, region FROM countries) c
                     ON i.country = c.country)""")
    (cur_in, cur_bad, no_user, dups, bad_code, unknown_country, fresh) = con.execute("""
        SELECT count(*), count(_failed),
               count(*) FILTER (WHERE user_id IS NULL),
               count(event_id) - count(DISTINCT event_id),
               count(*) FILTER (WHERE NOT coalesce(country IS NULL OR length(country) BETWEEN 2 AND 2, false)),
               count(*) FILTER (WHERE country IS NOT NULL AND country_name IS NULL),
               coalesce(max("timestamp") >= now() - INTERVAL 2 DAY, false)
        FROM checked""").fetchall()[0]
    if no_user or dups:
        raise SystemExit(f"quality gate: user_present failed {no_user}, one_row_per_event failed {dups}")
    if cur_bad:
        write_deltalake(p["curated_quarantine"],
                        con.sql("SELECT * EXCLUDE (_failed), _failed AS _expectations FROM checked "
                                "WHERE _failed IS NOT NULL").to_arrow_table(), mode="append")
    good_rows = "SELECT * EXCLUDE (_failed) FROM checked WHERE _failed IS NULL"
    if a.mode == "first":
        write_deltalake(p["curated"], con.sql(good_rows).to_arrow_reader(), mode="error",
                        partition_by=["_partition_date"])
    elif cur_in > cur_bad:
        (DeltaTable(p["curated"]).merge(con.sql(good_rows).to_arrow_table(), "target.event_id = source.event_id",
                                        source_alias="source", target_alias="target")
         .when_matched_update_all().when_not_matched_insert_all().execute())
    steps["curate"] = time.perf_counter() - t1

    # ---- consume ---------------------------------------------------------- #
    t2 = time.perf_counter()
    # The needed columns as an Arrow table: a filter pushed down into the
    # pyarrow dataset fails on files delta-rs's MERGE wrote with string_view
    # columns ("no kernel matching input types (string, string_view)").
    curated = DeltaTable(p["curated"]).to_pyarrow_dataset().to_table(  # noqa: F841
        columns=["_partition_date", "event_type", "user_id", "amount"])
    mart = con.sql(MART_SQL).to_arrow_table()
    write_deltalake(p["mart"], mart, mode="overwrite", schema_mode="overwrite")
    steps["consume"] = time.perf_counter() - t2

    seconds = time.perf_counter() - t0
    return ({"seconds": seconds, "steps": steps,
             "stages": {"cleanse": {"rows_in": rows_in, "rows_quarantined": bad, "rows_out": cleansed_out,
                                    "rows_deduplicated": rows_in - bad - cleansed_out},
                        "curate": {"rows_in": cur_in, "rows_quarantined": cur_bad, "rows_out": cur_in - cur_bad},
                        "consume": {"rows_out": mart.num_rows}},
             "warn_checks": {"country_code": bad_code, "known_country": unknown_country, "fresh": bool(fresh)}},
            new_watermark)


def peer_polars(a, out: Path, watermark_us: int | None):
    import hashlib

    import polars as pl
    from deltalake import DeltaTable

    p = {k: str(out / v) for k, v in TABLES.items()}
    steps = {}
    t0 = time.perf_counter()

    # ---- cleanse ---------------------------------------------------------- #
    if a.csv:
        schema = {"event_id": pl.String, "revision": pl.Int64, "user_id": pl.Int64, "event_type": pl.String,
                  "timestamp": pl.String, "client_time": pl.String, "amount": pl.String, "email": pl.String,
                  "card_number": pl.String, "country": pl.String, "user_agent": pl.String}
        lf = pl.scan_csv(a.csv, schema=schema).with_columns(
            pl.col("timestamp").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_unit="us", time_zone="UTC"))
        text_extra: list[str] = []
    else:
        if a.mode == "first":
            lf = pl.scan_delta(a.raw, version=a.raw_version)
        else:
            lf = pl.scan_delta(a.raw)
            wm = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=watermark_us)
            lf = lf.filter(pl.col("_ingested_at") > wm)
        text_extra = ["_ingest_run_id", "_ingest_source"]

    def blank(e):  # tarn's empty_as_null (after trim, if any)
        return pl.when(e.str.strip_chars(" ") == "").then(None).otherwise(e)

    salt = a.salt
    sha = lambda v: hashlib.sha256((salt + v).encode()).hexdigest()  # noqa: E731
    pre = lf.drop("user_agent").with_columns(
        blank(pl.col("event_id")).alias("event_id"),
        blank(pl.col("event_type").str.strip_chars(" ")).str.to_lowercase().alias("event_type"),
        blank(pl.col("client_time")).alias("client_time"),
        blank(pl.col("amount").str.strip_chars(" ")).alias("amount"),
        blank(pl.col("email")).alias("email"),
        blank(pl.col("card_number")).alias("card_number"),
        blank(pl.col("country").str.strip_chars(" ")).str.to_uppercase().alias("country"),
        *[blank(pl.col(c)).alias(c) for c in text_extra],
    ).with_columns(
        pl.col("client_time").str.strptime(pl.Datetime("us"), CLIENT_TIME_FORMAT, strict=False)
        .dt.replace_time_zone("Europe/Berlin", ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC").alias("_ct"),
        pl.col("amount").cast(pl.Decimal(10, 2), strict=False).alias("_amount"),
    )
    card = pl.col("card_number")
    std = pre.with_columns(
        pl.concat_str([
            pl.when(pl.col("client_time").is_not_null() & pl.col("_ct").is_null()).then(
                pl.concat_str([pl.lit("client_time: '"), pl.col("client_time"),
                               pl.lit(f"' is not a timestamp in the format {CLIENT_TIME_FORMAT}")])),
            pl.when(pl.col("amount").is_not_null() & pl.col("_amount").is_null()).then(
                pl.concat_str([pl.lit("amount: '"), pl.col("amount"), pl.lit("' is not a DECIMAL(10,2)")])),
        ], separator="; ", ignore_nulls=True).alias("_reason"),
    ).with_columns(
        pl.col("_ct").alias("client_time"),
        pl.col("_amount").alias("amount"),
        pl.col("email").map_elements(sha, return_dtype=pl.String, skip_nulls=True).alias("email"),
        card.str.slice(-4).str.pad_start(card.str.len_chars(), "*").alias("card_number"),
        pl.col("country").fill_null("XX").alias("country"),
        pl.when(pl.col("_reason") == "").then(None).otherwise(pl.col("_reason")).alias("_reason"),
    ).drop("_ct", "_amount").collect()
    rows_in = std.height
    bad_df = std.filter(pl.col("_reason").is_not_null())
    bad = bad_df.height
    new_watermark = None
    if a.raw:
        m = std.select(pl.col("_ingested_at").max()).item()
        new_watermark = (int((m - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) / dt.timedelta(microseconds=1))
                         if m is not None else watermark_us)
    good = (std.filter(pl.col("_reason").is_null()).drop("_reason")
            .sort("revision", descending=True, nulls_last=True)
            .unique(subset=["event_id"], keep="first", maintain_order=False))
    cleansed_out = good.height
    if bad:
        bad_df.write_delta(p["cleansed_quarantine"], mode="append")
    before = None
    if a.mode == "first":
        good.write_delta(p["cleansed"], mode="error", delta_write_options={"configuration": CDF})
    else:
        before = DeltaTable(p["cleansed"]).version()
        if cleansed_out:
            (good.write_delta(p["cleansed"], mode="merge", delta_merge_options={
                "predicate": "target.event_id = source.event_id", "source_alias": "source",
                "target_alias": "target"})
             .when_matched_update_all(predicate="source.revision >= target.revision OR target.revision IS NULL")
             .when_not_matched_insert_all().execute())
    del std, bad_df
    steps["cleanse"] = time.perf_counter() - t0

    # ---- curate ----------------------------------------------------------- #
    t1 = time.perf_counter()
    countries = pl.read_csv(a.countries).unique(subset=["country"], keep="first")
    codes = countries["country"]
    if a.mode == "first":
        inp = pl.scan_delta(p["cleansed"]).collect()
    else:
        cleansed = DeltaTable(p["cleansed"])
        if cleansed.version() > before:
            changes = pl.from_arrow(_pa_reader_to_table(cleansed.load_cdf(starting_version=before + 1)))
            inp = (changes.filter(pl.col("_change_type").is_in(["insert", "update_postimage"]))
                   .sort("_commit_version", descending=True)
                   .unique(subset=["event_id"], keep="first")
                   .drop("_change_type", "_commit_version", "_commit_timestamp"))
        else:
            inp = good.clear()
    if "_partition_date" in inp.columns:
        inp = inp.drop("_partition_date")
    et, amount = pl.col("event_type"), pl.col("amount")
    checked = inp.join(countries, on="country", how="left").with_columns(
        pl.col("timestamp").dt.hour().alias("hour_of_day"),
        (et == "purchase").alias("is_purchase"),
        pl.col("timestamp").dt.date().alias("_partition_date"),
    ).with_columns(
        pl.concat_str([
            pl.when(~(et.is_null() | et.is_in(EVENT_TYPES)).fill_null(False)).then(pl.lit("known_event_type")),
            pl.when(~(amount.is_null() | amount.is_between(0, 10000)).fill_null(False))
            .then(pl.lit("amount_in_range")),
            pl.when(~((et != "purchase") | amount.is_not_null()).fill_null(False))
            .then(pl.lit("purchase_has_amount")),
        ], separator=",", ignore_nulls=True).alias("_failed"),
    ).with_columns(pl.when(pl.col("_failed") == "").then(None).otherwise(pl.col("_failed")).alias("_failed"))
    country = pl.col("country")
    chk = checked.select(
        pl.len().alias("rows"),
        pl.col("_failed").count().alias("bad"),
        pl.col("user_id").is_null().sum().alias("no_user"),
        (pl.col("event_id").count() - pl.col("event_id").drop_nulls().n_unique()).alias("dups"),
        (~(country.is_null() | country.str.len_chars().is_between(2, 2))).sum().alias("bad_code"),
        (country.is_not_null() & ~country.is_in(codes.implode())).sum().alias("unknown_country"),
        (pl.col("timestamp").max() >= dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)).alias("fresh"),
    ).row(0, named=True)
    if chk["no_user"] or chk["dups"]:
        raise SystemExit(f"quality gate: user_present failed {chk['no_user']}, "
                         f"one_row_per_event failed {chk['dups']}")
    cur_in, cur_bad = chk["rows"], chk["bad"]
    if cur_bad:
        (checked.filter(pl.col("_failed").is_not_null()).rename({"_failed": "_expectations"})
         .write_delta(p["curated_quarantine"], mode="append"))
    ok = checked.filter(pl.col("_failed").is_null()).drop("_failed")
    if a.mode == "first":
        ok.write_delta(p["curated"], mode="error", delta_write_options={"partition_by": ["_partition_date"]})
    elif ok.height:
        (ok.write_delta(p["curated"], mode="merge", delta_merge_options={
            "predicate": "target.event_id = source.event_id", "source_alias": "source", "target_alias": "target"})
         .when_matched_update_all().when_not_matched_insert_all().execute())
    del checked, ok, inp
    steps["curate"] = time.perf_counter() - t1

    # ---- consume ---------------------------------------------------------- #
    t2 = time.perf_counter()
    mart = (pl.scan_delta(p["curated"]).filter(pl.col("event_type").is_in(["add_to_cart", "purchase"]))
            .group_by(pl.col("_partition_date").alias("day"), "event_type")
            .agg(pl.len().cast(pl.Int64).alias("events"), pl.col("user_id").n_unique().cast(pl.Int64).alias("users"),
                 pl.col("amount").sum().alias("revenue"))
            .collect())
    mart.write_delta(p["mart"], mode="overwrite", delta_write_options={"schema_mode": "overwrite"})
    steps["consume"] = time.perf_counter() - t2

    seconds = time.perf_counter() - t0
    return ({"seconds": seconds, "steps": steps,
             "stages": {"cleanse": {"rows_in": rows_in, "rows_quarantined": bad, "rows_out": cleansed_out,
                                    "rows_deduplicated": rows_in - bad - cleansed_out},
                        "curate": {"rows_in": cur_in, "rows_quarantined": cur_bad, "rows_out": cur_in - cur_bad},
                        "consume": {"rows_out": mart.height}},
             "warn_checks": {"country_code": chk["bad_code"], "known_country": chk["unknown_country"],
                             "fresh": bool(chk["fresh"])}},
            new_watermark)


# =========================================================================== #
# measurement (as bench/ingest_bench.py)
# =========================================================================== #

RUSAGE_WRAPPER = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
rc = subprocess.call(sys.argv[2:])
w = time.perf_counter() - t
u = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({"rc": rc, "wall": w, "user": u.ru_utime, "sys": u.ru_stime, "maxrss_kb": u.ru_maxrss}, open(sys.argv[1], "w"))
sys.exit(rc)
"""


def use_gnu_time() -> bool:
    return Path("/usr/bin/time").exists() and not os.environ.get("BENCH_NO_GNU_TIME")


def _parse_gnu_time(text: str) -> dict:
    def grab(label: str) -> str:
        m = re.search(rf"^\s*{re.escape(label)}:\s*(.+)$", text, re.M)
        if not m:
            raise RuntimeError(f"/usr/bin/time output lacks {label!r}:\n{text}")
        return m.group(1).strip()
    return {
        "user": float(grab("User time (seconds)")),
        "sys": float(grab("System time (seconds)")),
        "maxrss_kb": int(grab("Maximum resident set size (kbytes)")),
    }


def measure(cmd: list[str], *, cwd: Path, log: Path, scratch: Path, env: dict | None = None) -> dict:
    """Run cmd as a child; return wall/user/sys seconds, peak RSS and stdout."""
    fd, name = tempfile.mkstemp(prefix="bench-rusage-", dir=scratch)
    os.close(fd)
    stats = Path(name)
    gnu = use_gnu_time()
    full = ["/usr/bin/time", "-v", "-o", str(stats), *cmd] if gnu else [sys.executable, "-c", RUSAGE_WRAPPER,
                                                                        str(stats), *cmd]
    with open(log, "ab") as err:
        err.write(f"\n$ {' '.join(map(str, cmd))}\n".encode())
        err.flush()
        t0 = time.perf_counter()
        proc = subprocess.run(full, cwd=cwd, stdout=subprocess.PIPE, stderr=err, env=env)
        wall = time.perf_counter() - t0
    text = stats.read_text()
    stats.unlink()
    if proc.returncode != 0:
        raise RuntimeError(f"command failed (exit {proc.returncode}): {' '.join(map(str, cmd))}\n"
                           f"see {log}\nstdout: {proc.stdout.decode(errors='replace')[-2000:]}")
    if gnu:
        r = _parse_gnu_time(text)
    else:
        r = json.loads(text)
        wall = r.pop("wall")
        r.pop("rc", None)
    r["wall"] = wall
    r["stdout"] = proc.stdout.decode(errors="replace")
    return r


def last_json(stdout: str) -> dict:
    """The whole stdout as one JSON document, else its last one-line JSON object."""
    try:
        return json.loads(stdout)
    except json.JSONDecodeError:
        pass
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise RuntimeError(f"no JSON on stdout:\n{stdout[-2000:]}")


# =========================================================================== #
# data
# =========================================================================== #

def load_generator():
    spec = importlib.util.spec_from_file_location("user_events_generate", EXAMPLE / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ensure_data(rows: int, data: Path, seed: int, bad_every: int) -> dict:
    """events_1.csv (rows rows over DAYS) and events_2.csv (rows/10: a new day
    plus re-sends of events_1's events), generated once."""
    meta_path = data / "meta.json"
    want = {"rows": rows, "seed": seed, "bad_every": bad_every, "version": DATA_VERSION}
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {k: meta.get(k) for k in want} == want and all(
                (data / f).exists() for f in ("events_1.csv", "events_2.csv")):
            return meta
    gen = load_generator()
    log_step(f"generating {rows:,} + {rows // 10:,} rows into {data} ...")
    t = time.perf_counter()
    first: list[dict] = []
    per_day = [rows // len(DAYS) + (1 if i < rows % len(DAYS) else 0) for i in range(len(DAYS))]
    for i, (day, n) in enumerate(zip(DAYS, per_day)):
        first += gen.make_events(n, day, seed + i, dup_every=50, bad_every=bad_every)
    gen.write_events(data / "events_1.csv", first)

    n2 = max(rows // 10, 1)
    rng = random.Random(seed + 100)
    max_rev: dict[str, int] = {}
    for r in first:
        rev = int(r["revision"])
        if rev > max_rev.get(r["event_id"], 0):
            max_rev[r["event_id"]] = rev
    n_resend, n_stale = n2 // 10, n2 // 100
    # Candidates for stale re-sends: events already re-sent in events_1.
    stale_ids = [e for e, v in max_rev.items() if v >= 2]
    rng.shuffle(stale_ids)
    stale_ids = stale_ids[:n_stale]
    stale = set(stale_ids)
    resends: list[dict] = []
    for _ in range(n_resend):  # a newer revision of an earlier event: must win
        orig = first[rng.randrange(len(first))]
        eid = orig["event_id"]
        if eid in stale:
            continue
        max_rev[eid] += 1
        r = dict(orig, revision=str(max_rev[eid]), user_agent=rng.choice(gen.USER_AGENTS))
        if orig["amount"] and orig["event_type"].strip().lower() in EVENT_TYPES:
            r["amount"] = gen.money(rng)
        else:
            r["country"] = rng.choice(["DE", "fr ", " jp", "BR", ""])
        resends.append(r)
    by_id = {r["event_id"]: r for r in first}
    for eid in stale_ids:  # an older revision: must not win
        resends.append(dict(by_id[eid], revision="1", country="SE"))
    second = gen.make_events(max(n2 - len(resends), 1), INCR_DAY, seed + 50, dup_every=50, bad_every=bad_every)
    second += resends
    gen.write_events(data / "events_2.csv", second)

    meta = dict(want, rows_1=len(first), rows_2=len(second), resends=len(resends) - len(stale_ids),
                stale_resends=len(stale_ids), days=[d.isoformat() for d in DAYS], incr_day=INCR_DAY.isoformat(),
                seconds=round(time.perf_counter() - t, 1))
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def masking_salt() -> str:
    m = re.search(r"^\s*masking_salt:\s*(\S+)", (EXAMPLE / "tarn.yaml").read_text(), re.M)
    if not m:
        raise RuntimeError("no governance.masking_salt in examples/user_events/tarn.yaml")
    return m.group(1)


# =========================================================================== #
# engines
# =========================================================================== #

def tarn_env() -> dict:
    env = dict(os.environ)
    env["NO_COLOR"] = "1"
    for k in ("TARN_MASKING_SALT", "TARN_CONFIG"):  # the salt must be tarn.yaml's
        env.pop(k, None)
    return env


def new_lake(root: Path) -> Path:
    """A copy of the example's configuration in a fresh directory."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    for f in ("tarn.yaml", "user_events.avsc", "compliance.yaml"):
        shutil.copy(EXAMPLE / f, root / f)
    shutil.copy(EXAMPLE / "data" / "countries.csv", root / "data" / "countries.csv")
    return root


def tarn_cmd(tarn: str, lake: Path, *args: str) -> None:
    """An untimed tarn command (ingest)."""
    p = subprocess.run([tarn, "-c", "tarn.yaml", *args], cwd=lake, capture_output=True, text=True,
                       env=tarn_env())
    if p.returncode != 0:
        raise RuntimeError(f"tarn {' '.join(args)} failed (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")


def delta_version(path: Path) -> int:
    from deltalake import DeltaTable
    return DeltaTable(str(path)).version()


def run_tarn(tarn: str, data: Path, work: Path, log: Path) -> dict:
    lake = new_lake(work / "tarn")
    env = tarn_env()
    res = {"dir": str(lake)}
    tarn_cmd(tarn, lake, "ingest", "file", "--dataset", "countries")
    for mode, f in (("first", "events_1.csv"), ("incr", "events_2.csv")):
        tarn_cmd(tarn, lake, "ingest", "file", "--dataset", DATASET, "--path", str(data / f))
        r = measure([tarn, "-c", "tarn.yaml", "process", DATASET, "--json"], cwd=lake, log=log, scratch=work,
                    env=env)
        rep = last_json(r["stdout"])
        if rep.get("status") == "failed":
            raise RuntimeError(f"tarn process failed: {rep.get('error')}")
        r["seconds"] = r["wall"]
        r["stages"] = {s["stage"]: s for s in rep["stages"]}
        r["steps"] = {s["stage"]: s["duration_ms"] / 1000 for s in rep["stages"]}
        r["report"] = rep
        res[mode] = r
    return res


def prepare_raw_lake(tarn: str, data: Path, work: Path) -> dict:
    """A lake holding tarn's raw table after each events file (untimed)."""
    lake = new_lake(work / "raw_lake")
    tarn_cmd(tarn, lake, "ingest", "file", "--dataset", "countries")
    versions = []
    for f in ("events_1.csv", "events_2.csv"):
        tarn_cmd(tarn, lake, "ingest", "file", "--dataset", DATASET, "--path", str(data / f))
        versions.append(delta_version(lake / RAW_TABLE))
    return {"dir": lake, "table": lake / RAW_TABLE, "versions": versions}


def run_peer(engine: str, data: Path, work: Path, log: Path, salt: str, raw: dict | None) -> dict:
    base = engine.split("-")[0]
    out = work / engine
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    res = {"dir": str(out)}
    for mode, f in (("first", "events_1.csv"), ("incr", "events_2.csv")):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--peer", base, mode, "--countries",
               str(EXAMPLE / "data" / "countries.csv"), "--out", str(out), "--salt", salt]
        if raw is None:
            cmd += ["--csv", str(data / f)]
        else:
            cmd += ["--raw", str(raw["table"])]
            if mode == "first":
                cmd += ["--raw-version", str(raw["versions"][0])]
        r = measure(cmd, cwd=out, log=log, scratch=work)
        inner = last_json(r["stdout"])
        r.update(seconds=inner["seconds"], steps=inner["steps"], stages=inner["stages"],
                 warn_checks=inner.get("warn_checks"))
        res[mode] = r
    return res


# =========================================================================== #
# equivalence: the final tables, counted the same way for every engine
# =========================================================================== #

def fingerprint(lake_dir: Path) -> dict:
    import duckdb
    from deltalake import DeltaTable
    con = duckdb.connect()
    out: dict = {}
    for name, rel in TABLES.items():
        path = lake_dir / rel
        if not (path / "_delta_log").is_dir():
            out[f"{name}_rows"] = 0
            continue
        ds = DeltaTable(str(path)).to_pyarrow_dataset()  # noqa: F841
        if name == "mart":
            n, ev, rev, users = con.execute(
                "SELECT count(*), sum(events), sum(revenue), sum(users) FROM ds").fetchall()[0]
            out.update(mart_rows=n, mart_events=int(ev or 0), mart_revenue=str(rev), mart_users=int(users or 0))
        elif name in ("cleansed", "curated"):
            # Content, not just counts: the hashes, masks, parsed times and
            # cleaned codes must come out the same in every engine.
            n, amt, emails, email_min, cards, card_max, ct, ct_sum, countries, event_types = con.execute("""
                SELECT count(*), sum(amount), count(DISTINCT email), min(email), count(card_number),
                       max(card_number), count(client_time), sum(epoch(client_time))::BIGINT,
                       string_agg(DISTINCT country, ',' ORDER BY country),
                       string_agg(DISTINCT event_type, ',' ORDER BY event_type)
                FROM ds""").fetchall()[0]
            out.update({f"{name}_rows": n, f"{name}_amount": str(amt), f"{name}_emails": emails,
                        f"{name}_email_min": (email_min or "")[:16], f"{name}_cards": cards,
                        f"{name}_card_max": card_max, f"{name}_client_times": ct,
                        f"{name}_client_time_sum": ct_sum, f"{name}_countries": countries,
                        f"{name}_event_types": event_types})
            if name == "curated":
                named, purchases, hours = con.execute(
                    "SELECT count(country_name), count(*) FILTER (WHERE is_purchase), sum(hour_of_day)::BIGINT "
                    "FROM ds").fetchall()[0]
                out.update(curated_matched_country=named, curated_purchases=purchases, curated_hour_sum=hours)
        else:
            out[f"{name}_rows"] = con.execute("SELECT count(*) FROM ds").fetchall()[0][0]
    return out


# =========================================================================== #
# reporting
# =========================================================================== #

def derive(r: dict, rows: int) -> dict:
    cpu = r["user"] + r["sys"]
    return {
        "seconds": round(r["seconds"], 3),
        "wall_seconds": round(r["wall"], 3),
        "rows_per_s": round(rows / r["seconds"]) if r["seconds"] > 0 else None,
        "cpu_seconds": round(cpu, 3),
        "cores_used": round(cpu / r["wall"], 2) if r["wall"] > 0 else None,
        "peak_rss_mb": round(r["maxrss_kb"] * 1024 / 1e6, 1),
        "steps": {k: round(v, 3) for k, v in r["steps"].items()},
        "stages": r["stages"],
        **({"warn_checks": r["warn_checks"]} if r.get("warn_checks") else {}),
    }


def fmt_ratio(x: float | None, base: float | None) -> str:
    return f"{x / base:.2f}×" if x and base else "—"


def markdown(results: dict, meta: dict) -> str:
    eng = results["engines"]
    t = eng.get("tarn")
    tf = t["first"]["seconds"] if t else None
    ti = t["incr"]["seconds"] if t else None
    out = [
        f"rows: {meta['rows_1']:,} first run, {meta['rows_2']:,} incremental "
        f"({meta['resends']:,} re-sends, {meta['stale_resends']:,} stale); machine cores: {meta['cpu_count']}; "
        f"tarn: `{meta['tarn']}`" + (f" ({meta['tarn_version']})" if meta.get("tarn_version") else ""),
        "",
        "| engine | first run s | rows/s | incremental run s | peak RSS MB | CPU s | cores used "
        "| ratio vs tarn (first) | ratio vs tarn (incr.) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, d in eng.items():
        f, i = d["first"], d["incr"]
        rf = "—" if name == "tarn" else fmt_ratio(f["seconds"], tf)
        ri = "—" if name == "tarn" else fmt_ratio(i["seconds"], ti)
        out.append(f"| {LABELS[name]} | {f['seconds']:.2f} | {f['rows_per_s']:,} | {i['seconds']:.2f} "
                   f"| {max(f['peak_rss_mb'], i['peak_rss_mb']):,.0f} | {f['cpu_seconds']:.1f} "
                   f"| {f['cores_used']:.2f} | {rf} | {ri} |")
    out += ["", "ratio = peer s / tarn s (> 1: tarn faster). peak RSS = max of both runs; CPU s and cores used "
            "(user+sys / wall) of the first run. Peers' seconds exclude interpreter start-up and imports; "
            "tarn's are the wall time of `tarn process`."]

    out += ["", "Per stage (seconds; tarn: duration_ms of `process --json`, peers: timed in the child)", "",
            "| engine | run | cleanse | curate | consume | cleanse in/quar./dedup/out | curate in/quar./out "
            "| mart rows |", "|---|---|---:|---:|---:|---|---|---:|"]
    for name, d in eng.items():
        for mode in ("first", "incr"):
            r = d[mode]
            s, st = r["steps"], r["stages"]
            c, u, m = st.get("cleanse", {}), st.get("curate", {}), st.get("consume", {})
            out.append(
                f"| {LABELS[name]} | {mode} | {s.get('cleanse', 0):.2f} | {s.get('curate', 0):.2f} "
                f"| {s.get('consume', 0):.2f} | {c.get('rows_in', 0):,}/{c.get('rows_quarantined', 0):,}/"
                f"{c.get('rows_deduplicated', 0):,}/{c.get('rows_out', 0):,} | {u.get('rows_in', 0):,}/"
                f"{u.get('rows_quarantined', 0):,}/{u.get('rows_out', 0):,} | {m.get('rows_out', 0):,} |")

    fps = results["tables"]
    if fps:
        keys = list(next(iter(fps.values())).keys())
        names = list(fps)
        out += ["", "Final tables after both runs (equivalence check)", "",
                "| value | " + " | ".join(LABELS[n] for n in names) + " |",
                "|---|" + "---:|" * len(names)]
        for k in keys:
            out.append(f"| {k} | " + " | ".join(str(fps[n].get(k)) for n in names) + " |")
        diffs = results.get("differences") or {}
        out.append("")
        if diffs:
            ref = results["reference"]
            out.append(f"Differences from {LABELS[ref]}:")
            for n, dd in diffs.items():
                for k, (mine, theirs) in dd.items():
                    out.append(f"  * {LABELS[n]}: {k} = {mine} (vs {theirs})")
        else:
            out.append("All engines' final tables agree on every value above.")
    return "\n".join(out)


# =========================================================================== #

def default_tarn() -> str:
    cands = []
    if os.environ.get("CARGO_TARGET_DIR"):
        cands.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "tarn")
    cands += [Path.home() / ".cache/tarn/target/release/tarn", REPO / "target/release/tarn"]
    for c in cands:
        if c.is_file():
            return str(c)
    return str(cands[0])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--peer":
        return peer_main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the first file (the second has rows/10)")
    ap.add_argument("--data", type=Path, help="data directory (default bench/data/process/ROWS)")
    ap.add_argument("--tarn", default=default_tarn(),
                    help="tarn binary (default $CARGO_TARGET_DIR/release/tarn or ~/.cache/tarn/target/release/tarn)")
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma list of {','.join(ENGINES)}")
    ap.add_argument("--repeat", type=int, default=1, help="runs per engine; the fastest is kept")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bad-every", type=int, default=0,
                    help="every k-th generated row is one the cleanse/curate stage quarantines (0: none)")
    ap.add_argument("--work", type=Path, help="scratch directory (default DATA/_runs)")
    ap.add_argument("--keep", action="store_true", help="keep the lakes of the last run")
    ap.add_argument("--json", action="store_true", help="print raw numbers as JSON instead of markdown")
    a = ap.parse_args(argv)

    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        ap.error(f"unknown engine(s): {', '.join(sorted(unknown))}")
    needs_tarn = "tarn" in engines or any(e.endswith("-raw") for e in engines)
    if needs_tarn and not (Path(a.tarn).is_file() and os.access(a.tarn, os.X_OK)):
        ap.error(f"tarn binary not found: {a.tarn} (tarn and the -raw peers need it; build with "
                 f"`cargo build --release`, pass --tarn, or use --engines duckdb,polars)")
    data = a.data or (HERE / "data" / "process" / str(a.rows))
    data.mkdir(parents=True, exist_ok=True)
    gen_meta = ensure_data(a.rows, data, a.seed, a.bad_every)
    work = a.work or (data / "_runs")
    work.mkdir(parents=True, exist_ok=True)
    log = work / "bench.stderr.log"
    log.write_bytes(b"")
    salt = masking_salt()
    for f in ("events_1.csv", "events_2.csv"):
        warm(data / f)
    rows = {"first": gen_meta["rows_1"], "incr": gen_meta["rows_2"]}

    raw = None
    if any(e.endswith("-raw") for e in engines):
        log_step("preparing the raw lake for the -raw peers (tarn ingest, not timed) ...")
        raw = prepare_raw_lake(a.tarn, data, work)

    results: dict = {"engines": {}, "runs": {}, "tables": {}}
    lakes: dict[str, Path] = {}
    for eng in engines:
        best: dict = {}
        for i in range(a.repeat):
            log_step(f"{eng} run {i + 1}/{a.repeat} ...")
            if eng == "tarn":
                r = run_tarn(a.tarn, data, work, log)
            else:
                r = run_peer(eng, data, work, log, salt, raw if eng.endswith("-raw") else None)
            lakes[eng] = Path(r["dir"])
            d = {m: derive(r[m], rows[m]) for m in ("first", "incr")}
            results["runs"].setdefault(eng, []).append(d)
            log_step(f"    first {d['first']['seconds']:.2f}s  incr {d['incr']['seconds']:.2f}s  "
                     f"rss {max(d['first']['peak_rss_mb'], d['incr']['peak_rss_mb']):.0f} MB")
            for m in ("first", "incr"):
                if m not in best or d[m]["seconds"] < best[m]["seconds"]:
                    best[m] = d[m]
            # The tables of the last repeat are the ones fingerprinted.
            results["tables"][eng] = fingerprint(lakes[eng])
        results["engines"][eng] = best

    ref = "tarn" if "tarn" in engines else engines[0]
    results["reference"] = ref
    diffs: dict = {}
    for eng, fp in results["tables"].items():
        if eng == ref:
            continue
        dd = {k: (v, results["tables"][ref].get(k)) for k, v in fp.items() if v != results["tables"][ref].get(k)}
        if dd:
            diffs[eng] = dd
    results["differences"] = diffs
    t = results["engines"].get("tarn")
    if t:
        for eng, d in results["engines"].items():
            if eng != "tarn":
                d["first"]["ratio_vs_tarn"] = round(d["first"]["seconds"] / t["first"]["seconds"], 3)
                d["incr"]["ratio_vs_tarn"] = round(d["incr"]["seconds"] / t["incr"]["seconds"], 3)

    if not a.keep:
        for eng in engines:
            shutil.rmtree(work / eng, ignore_errors=True)
        shutil.rmtree(work / "raw_lake", ignore_errors=True)

    tarn_version = None
    if needs_tarn:
        v = subprocess.run([a.tarn, "--version"], capture_output=True, text=True)
        tarn_version = v.stdout.strip() or None
    meta = {**gen_meta, "cpu_count": os.cpu_count() or 1, "tarn": a.tarn if needs_tarn else None,
            "tarn_version": tarn_version, "repeat": a.repeat, "engines": engines,
            "python": platform.python_version(), "platform": platform.platform(),
            "time_source": "/usr/bin/time -v" if use_gnu_time() else "getrusage(RUSAGE_CHILDREN)",
            "raw_versions": raw["versions"] if raw else None}
    if a.json:
        print(json.dumps({"meta": meta, "results": results}, indent=2, default=str))
    else:
        print(markdown(results, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
