#!/usr/bin/env bash
# The quick start: a small HR database, capture triggers, a few changes, one drain to stdout.
#
# Runs on the embedded default (SQLite, in demo/hr.db) with nothing but the Rust toolchain.
# Point TRIGPOLL_DATABASE_URL at PostgreSQL or MySQL (an empty database) to run it there.
set -euo pipefail
cd "$(dirname "$0")/.."

export TRIGPOLL_DATABASE_URL="${TRIGPOLL_DATABASE_URL:-sqlite://demo/hr.db}"
rm -rf demo && mkdir -p demo/connectors
cat > demo/trigpoll.toml <<'TOML'
[database]
url = "${TRIGPOLL_DATABASE_URL}"

[poll]
interval = "1s"
batch_size = 500

[[object]]
name = "Department"
table = "department"

[[object]]
name = "Employee"
table = "employee"
priority = 1

[[object]]
name = "OrderLine"
table = "order_line"
priority = 2
TOML
cat > demo/connectors/console.toml <<'TOML'
id = "console"
subscribe = ["*.*"]
[sink]
type = "stdout"
TOML

cargo build --release --quiet --bin trigpoll --example demo
trigpoll() { target/release/trigpoll --config demo/trigpoll.toml "$@"; }

echo "== the application's schema (employees, departments, order lines with a composite key)" >&2
target/release/examples/demo schema "$TRIGPOLL_DATABASE_URL"
echo "== trigpoll install-triggers" >&2
trigpoll install-triggers
echo "== the application makes changes: inserts, updates, a key-preserving move, deletes" >&2
target/release/examples/demo changes "$TRIGPOLL_DATABASE_URL"
echo "== trigpoll status" >&2
trigpoll status >&2
echo "== trigpoll drain: the business objects, one JSON line each, on stdout" >&2
trigpoll drain
