#!/usr/bin/env python3
"""Writes the user_events example's data files (deterministic: fixed seeds, no
network, standard library only).

    python3 examples/user_events/generate.py

writes, next to this script:

    data/countries.csv             the reference table (country,country_name,region)
    data/day1/user_events.csv      ~150 events of 2024-02-10..12
    data/day2/user_events.csv      ~60 events of 2024-02-13, plus late arrivals and re-sends

Columns are the fields of user_events.avsc, in order. What the files hold on
purpose (the README tells the story):

  * duplicates: re-sent events keep their event_id and get a higher revision
    (in day1, one event has revisions 1, 3 and 2; day2 re-sends one with a
    *lower* revision, which must not win, and one with a higher one, which must);
  * PII: every row has an email, purchases have a card number;
  * noise: untrimmed and mixed-case event types and countries, empty countries;
  * rows the raw ingest rejects (bad uuid/long/timestamp, missing event_id);
  * rows the cleanse stage quarantines (amount not a DECIMAL(10,2), client_time
    not a `%d/%m/%Y %H:%M` time);
  * rows the curate stage quarantines (unknown event type, amount out of
    [0, 10000], a purchase without an amount);
  * countries missing from the reference table (BR, and empty -> XX).

`make_events(n, day, seed)` is also what tests/python/test_process.py uses to
write large inputs.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import re
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"

COLUMNS = [
    "event_id", "revision", "user_id", "event_type", "timestamp", "client_time",
    "amount", "email", "card_number", "country", "user_agent",
]
UTC = dt.timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
CLIENT_TIME_FORMAT = "%d/%m/%Y %H:%M"

COUNTRIES = [
    ("DE", "Germany", "EMEA"),
    ("FR", "France", "EMEA"),
    ("GB", "United Kingdom", "EMEA"),
    ("ES", "Spain", "EMEA"),
    ("IT", "Italy", "EMEA"),
    ("NL", "Netherlands", "EMEA"),
    ("PL", "Poland", "EMEA"),
    ("SE", "Sweden", "EMEA"),
    ("US", "United States", "Americas"),
    ("CA", "Canada", "Americas"),
    ("MX", "Mexico", "Americas"),
    ("JP", "Japan", "APAC"),
    ("AU", "Australia", "APAC"),
    ("IN", "India", "APAC"),
    ("SG", "Singapore", "APAC"),
]

# A user's country as the shop has it: BR is not in the reference table, and
# empty or blank ones become the default XX (not there either).
USER_COUNTRIES = ["DE", "FR", "US", "GB", "DE", "ES", "IT", "JP", "NL", "BR",
                  "US", "", "AU", "PL", "CA", "SE", "MX", "  ", "IN", "SG"]
FIRST_NAMES = ["anna", "ben", "carla", "david", "emma", "felix", "greta", "hugo",
               "ines", "jonas", "kira", "luca", "mia", "noah", "olga", "paul"]
DOMAINS = ["example.com", "example.de", "example.fr", "example.jp"]
CARDS = ["4111111111111111", "5500005555555559", "378282246310005",  # Amex: 15 digits
         "4012888888881881", "6011111111111117"]
USER_AGENTS = [
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/122.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_3) Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) Mobile/15E148",
]
EVENT_TYPES = ["view", "click", "add_to_cart", "purchase"]
EVENT_WEIGHTS = [45, 25, 15, 15]
BASE_USERS = 40

# Kinds of bad row that pass the raw ingest; make_events(bad_every=k) cycles
# through them.
CLEANSE_BAD = ["amount_not_decimal", "client_time_unparseable"]
CURATE_BAD = ["unknown_event_type", "negative_amount", "purchase_without_amount"]


def iso(ts: dt.datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def client_time(ts: dt.datetime) -> str:
    return ts.astimezone(BERLIN).strftime(CLIENT_TIME_FORMAT)


def email_of(uid: int) -> str:
    return f"{FIRST_NAMES[uid % len(FIRST_NAMES)]}.{uid}@{DOMAINS[uid % len(DOMAINS)]}"


def noisy_country(code: str, rng: random.Random) -> str:
    if not code.strip() or rng.random() >= 0.3:
        return code
    return rng.choice([f" {code.lower()}", f"{code.lower()} ", code.title(), f" {code} "])


def noisy_event_type(et: str, rng: random.Random) -> str:
    if rng.random() >= 0.25:
        return et
    return rng.choice([et.upper(), f" {et.title()} ", f"{et} ", f" {et}"])


def money(rng: random.Random, lo: int = 500, hi: int = 50000) -> str:
    return f"{rng.randint(lo, hi) / 100:.2f}"


def noisy_amount(a: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.1:
        return f" {a} "
    if r < 0.2:
        return a.rstrip("0").rstrip(".")  # 12.50 -> 12.5, 10.00 -> 10
    return a


def make_event(uid: int, ts: dt.datetime, et: str, rng: random.Random, revision: int = 1) -> dict:
    """One valid event, as the exporter writes it (all values text, '' = missing)."""
    amount = ""
    if et == "purchase" or (et == "add_to_cart" and rng.random() < 0.5):
        amount = noisy_amount(money(rng), rng)
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "revision": str(revision),
        "user_id": str(uid),
        "event_type": noisy_event_type(et, rng),
        "timestamp": iso(ts),
        "client_time": "" if rng.random() < 0.1 else client_time(ts),
        "amount": amount,
        "email": email_of(uid),
        "card_number": CARDS[uid % len(CARDS)] if et == "purchase" else "",
        "country": noisy_country(USER_COUNTRIES[uid % len(USER_COUNTRIES)], rng),
        "user_agent": rng.choice(USER_AGENTS),
    }


def spoil(row: dict, kind: str) -> dict:
    """`row` turned into a bad row of `kind` (one of CLEANSE_BAD + CURATE_BAD)."""
    r = dict(row)
    if kind == "amount_not_decimal":
        r.update(event_type="purchase", amount="12,50", card_number=CARDS[0])
    elif kind == "client_time_unparseable":
        r.update(client_time="31/02/2024 25:99")
    elif kind == "unknown_event_type":
        r.update(event_type="refund", amount="15.00")
    elif kind == "negative_amount":
        r.update(event_type="purchase", amount="-5.00", card_number=CARDS[1])
    elif kind == "purchase_without_amount":
        r.update(event_type="purchase", amount="", card_number=CARDS[2])
    else:
        raise ValueError(kind)
    return r


def make_events(n: int, day: dt.date, seed: int, *, users: int | None = None,
                dup_every: int = 0, bad_every: int = 0) -> list[dict]:
    """`n` events of `day` (UTC), sorted by time, all of which the raw ingest
    accepts. With dup_every=k, every k-th row is a re-send (same event_id,
    higher revision, a different amount or country) of an earlier clean row;
    with bad_every=k, every k-th row is a row the cleanse or curate stage
    quarantines (kinds CLEANSE_BAD + CURATE_BAD in turn)."""
    rng = random.Random(seed)
    users = users or BASE_USERS + n // 100
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=UTC)
    out: list[dict] = []
    clean: list[int] = []
    revision: dict[str, int] = {}
    bad_kinds = CLEANSE_BAD + CURATE_BAD
    n_bad = 0
    for i in range(n):
        if dup_every and i % dup_every == dup_every - 1 and clean:
            orig = out[clean[rng.randrange(len(clean))]]
            eid = orig["event_id"]
            revision[eid] = revision.get(eid, 1) + 1
            r = dict(orig, revision=str(revision[eid]), user_agent=rng.choice(USER_AGENTS))
            if orig["amount"]:
                r["amount"] = money(rng)
            else:
                r["country"] = rng.choice(["DE", "fr ", " jp", "BR", ""])
            out.append(r)
            continue
        ts = midnight + dt.timedelta(seconds=rng.randrange(86400))
        uid = rng.randint(1, users)
        et = rng.choices(EVENT_TYPES, EVENT_WEIGHTS)[0]
        row = make_event(uid, ts, et, rng)
        if bad_every and i % bad_every == bad_every - 1:
            out.append(spoil(row, bad_kinds[n_bad % len(bad_kinds)]))
            n_bad += 1
        else:
            clean.append(len(out))
            out.append(row)
    out.sort(key=lambda r: r["timestamp"])
    return out


def write_events(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def write_countries(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["country", "country_name", "region"])
        w.writerows(COUNTRIES)


def first(rows: list[dict], pred) -> dict:
    return next(r for r in rows if pred(r))


def base_purchase(rows: list[dict], used: set) -> dict:
    """A clean purchase (an amount, a matched country) not picked before."""
    codes = {c for c, _, _ in COUNTRIES}
    r = first(rows, lambda r: r["event_type"].strip().lower() == "purchase" and r["amount"]
              and r["country"].strip().upper() in codes and r["event_id"] not in used)
    used.add(r["event_id"])
    return r


def day1() -> list[dict]:
    rng = random.Random(101)
    rows = (make_events(45, dt.date(2024, 2, 10), seed=1, users=BASE_USERS)
            + make_events(45, dt.date(2024, 2, 11), seed=2, users=BASE_USERS)
            + make_events(40, dt.date(2024, 2, 12), seed=3, users=BASE_USERS))
    used: set = set()
    extra: list[dict] = []

    # Re-sends inside the file: the highest revision wins.
    a = base_purchase(rows, used)              # revisions 1, 3, 2 (3 wins; day2 brings a stale 2)
    a.update(amount="10.00")
    extra.append(dict(a, revision="3", amount="30.00"))
    extra.append(dict(a, revision="2", amount="20.00"))
    for _ in range(2):                          # amount corrected
        b = base_purchase(rows, used)
        extra.append(dict(b, revision="2", amount=money(rng)))
    for r in [x for x in rows if x["event_type"] in ("view", "click")][3:5]:  # country corrected
        used.add(r["event_id"])
        extra.append(dict(r, revision="2", country="fr " if r["country"].strip().upper() != "FR" else "DE"))

    template = first(rows, lambda r: r["event_type"] == "view")
    def fresh(**changes) -> dict:
        ts = dt.datetime(2024, 2, 11, 6, 0, tzinfo=UTC) + dt.timedelta(minutes=rng.randrange(600))
        r = make_event(int(template["user_id"]), ts, "view", rng)
        r.update(changes)
        return r

    # Rejected by the raw ingest (land in lake/raw/_quarantine/user_events).
    extra += [
        fresh(user_id="abc"),
        fresh(event_id=""),
        fresh(timestamp="not-a-time"),
        fresh(event_id="evt-0042"),
    ]
    # Quarantined by cleanse: not castable / not parseable.
    extra += [
        fresh(event_type="purchase", amount="abc", card_number=CARDS[0]),
        fresh(event_type="purchase", amount="12,50", card_number=CARDS[1]),
        fresh(client_time="31/02/2024 25:99"),
        fresh(event_type="add_to_cart", client_time="13/13/2024 10:00", amount="5.00"),
    ]
    # Quarantined by curate's expectations.
    extra += [
        fresh(event_type="refund", amount="15.00"),
        fresh(event_type="purchase", amount="-5.00", card_number=CARDS[2]),
        fresh(event_type="Purchase", amount="", card_number=CARDS[3]),
        fresh(event_type="purchase", amount="12000.00", card_number=CARDS[4]),
        fresh(event_type=" Refund ", amount="-20.00"),  # fails two expectations
    ]
    for r in extra:
        rows.insert(rng.randrange(len(rows) + 1), r)
    return rows


def day2(day1_rows: list[dict]) -> list[dict]:
    rng = random.Random(202)
    rows = (make_events(45, dt.date(2024, 2, 13), seed=4, users=BASE_USERS)
            + make_events(4, dt.date(2024, 2, 10), seed=5, users=BASE_USERS)   # late arrivals
            + make_events(4, dt.date(2024, 2, 11), seed=6, users=BASE_USERS))
    extra: list[dict] = []

    by_id: dict[str, list[dict]] = {}
    for r in day1_rows:
        by_id.setdefault(r["event_id"], []).append(r)
    # A late copy with a lower revision than day1's best (3): must not win.
    a = first(day1_rows, lambda r: r["revision"] == "3")
    extra.append(dict(a, revision="2", amount="25.00", user_agent=USER_AGENTS[0]))
    # A re-send with a higher revision of a day1 event seen once: must win.
    b = first(day1_rows, lambda r: r["event_type"] == "purchase" and len(by_id[r["event_id"]]) == 1
              and re.fullmatch(r" ?\d+(\.\d+)? ?", r["amount"]) and float(r["amount"]) < 400
              and r["country"].strip().upper() in {c for c, _, _ in COUNTRIES} - {"FR"})
    extra.append(dict(b, revision="2", amount=f"{float(b['amount']) + 5:.2f}", country=" fr"))
    # A re-send inside day2.
    c = first(rows, lambda r: r["event_type"] == "add_to_cart" and r["timestamp"].startswith("2024-02-13"))
    extra.append(dict(c, revision="2", amount="99.90"))

    template = first(rows, lambda r: r["event_type"] == "click")
    def fresh(**changes) -> dict:
        ts = dt.datetime(2024, 2, 13, 6, 0, tzinfo=UTC) + dt.timedelta(minutes=rng.randrange(600))
        r = make_event(int(template["user_id"]), ts, "click", rng)
        r.update(changes)
        return r

    extra += [
        fresh(timestamp="2024-02-31T10:00:00Z"),                                       # raw rejects
        fresh(event_type="purchase", amount="1.234,56", card_number=CARDS[0]),         # cleanse quarantine
        fresh(event_type="signup"),                                                    # curate quarantine
    ]
    for r in extra:
        rows.insert(rng.randrange(len(rows) + 1), r)
    return rows


def main() -> None:
    write_countries(DATA / "countries.csv")
    d1 = day1()
    write_events(DATA / "day1" / "user_events.csv", d1)
    d2 = day2(d1)
    write_events(DATA / "day2" / "user_events.csv", d2)
    print(f"wrote {DATA / 'countries.csv'} ({len(COUNTRIES)} rows), "
          f"day1 ({len(d1)} rows), day2 ({len(d2)} rows)")


if __name__ == "__main__":
    main()
