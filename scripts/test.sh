#!/usr/bin/env bash
# Runs every tarn test. Installs and starts what the tests need:
#   - s3s-fs, a real S3-compatible server, on a free loopback port;
#   - tansu, a real Kafka-protocol broker (in-memory storage), on a free port;
#   - the Python peers (deltalake, polars, pyarrow, duckdb, fastavro, pytest)
#     and tpchgen-cli, which generates the TPC-H data the query tests use;
#   - checks that PostgreSQL (127.0.0.1:5432) and MariaDB (127.0.0.1:3306) are
#     up, starting them if they are not.
# Then: cargo test for the workspace, and the Python suites against the tarn
# binary (tables written by tarn read by Python deltalake and Polars; TPC-H
# answers of `tarn query` compared with DuckDB's).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tarn/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log() { printf '\n== %s\n' "$*"; }

log "tools"
if ! command -v s3s-fs >/dev/null 2>&1; then
  cargo install s3s-fs@0.14.1 --locked --features binary
fi
# A release build of tansu takes about 12 minutes on 2 cores: kept in ~/.cargo/bin.
if ! command -v tansu >/dev/null 2>&1; then
  cargo install tansu@0.6.0 --locked --features dynostore
fi
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  -r tests/python/requirements.txt

log "PostgreSQL"
export TARN_TEST_POSTGRES_URL="${TARN_TEST_POSTGRES_URL:-postgresql://postgres@127.0.0.1:5432/test}"
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432

log "MariaDB"
export TARN_TEST_MYSQL_URL="${TARN_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"
if ! mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
  service mariadb start || /etc/init.d/mariadb start
  for _ in $(seq 1 30); do mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1 && break; sleep 1; done
fi
mariadb-admin -h 127.0.0.1 -u root ping
mariadb -h 127.0.0.1 -u root -e 'CREATE DATABASE IF NOT EXISTS test'

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

log "S3 (s3s-fs)"
s3_root="$(mktemp -d)"
s3_port="$(free_port)"
export TARN_TEST_S3_BUCKET=tarn-test TARN_TEST_S3_ACCESS_KEY=tarn TARN_TEST_S3_SECRET_KEY=tarnsecret
mkdir -p "$s3_root/$TARN_TEST_S3_BUCKET"   # an s3s-fs bucket is a directory under its root
s3s-fs --host 127.0.0.1 --port "$s3_port" \
  --access-key "$TARN_TEST_S3_ACCESS_KEY" --secret-key "$TARN_TEST_S3_SECRET_KEY" \
  "$s3_root" >"$s3_root.log" 2>&1 &
s3_pid=$!
kafka_pid=""
trap 'kill $s3_pid $kafka_pid 2>/dev/null || true; rm -rf "$s3_root" "$s3_root.log" "$s3_root.kafka.log"' EXIT
export TARN_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
wait_port "$s3_port"
echo "s3s-fs on $TARN_TEST_S3_ENDPOINT (pid $s3_pid)"

log "Kafka (tansu)"
kafka_port="$(free_port)"
tansu broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
  --storage-engine memory://tansu/ >"$s3_root.kafka.log" 2>&1 &
kafka_pid=$!
wait_port "$kafka_port"
export TARN_TEST_KAFKA_BROKERS="127.0.0.1:$kafka_port"
echo "tansu on $TARN_TEST_KAFKA_BROKERS (pid $kafka_pid)"

log "cargo test"
# Build every target in one go first: the tarn binary the Python suite drives
# then shares its dependency build (and feature set) with the test binaries.
cargo build --workspace --all-targets
cargo test --workspace

log "Python suites (deltalake, Polars, DuckDB)"
TARN_BIN="$CARGO_TARGET_DIR/debug/tarn" TARN_REQUIRE_BIN=1 python3 -m pytest tests/python -q
