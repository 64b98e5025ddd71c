#!/usr/bin/env bash
# The test command: formatting, lints, then every test against real databases.
#
# Uses the PostgreSQL at TRIGPOLL_TEST_PG_URL (default: the local service on 127.0.0.1:5432).
# When none answers, installs PostgreSQL from the OS packages (as root) and starts a throwaway
# server for this run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/servers.sh

export TRIGPOLL_TEST_PG_URL="${TRIGPOLL_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
ensure_postgres

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked "$@"
