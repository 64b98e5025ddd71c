#!/usr/bin/env bash
# The test command: formatting, lints, then every test against real databases and brokers.
#
# Uses the PostgreSQL at TRIGPOLL_TEST_PG_URL (default: the local service on 127.0.0.1:5432),
# the MySQL/MariaDB at TRIGPOLL_TEST_MYSQL_URL (default: 127.0.0.1:3306, root), NATS with
# JetStream at TRIGPOLL_TEST_NATS_URL (default 127.0.0.1:4222), RabbitMQ at
# TRIGPOLL_TEST_AMQP_URL (default 127.0.0.1:5672, guest) and Redis at TRIGPOLL_TEST_REDIS_URL
# (default 127.0.0.1:6379). When one does not answer, installs it from the OS packages (as root)
# and starts a throwaway server for this run. The TLS tests get a TLS-only PostgreSQL and
# MariaDB of their own (throwaway, on ports 54339 and 33079), the connector TLS tests a TLS
# nats-server, and the restart tests start and restart database servers of their own, as does
# the soak test (scripts/soak.sh, two minutes on PostgreSQL) that follows the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/servers.sh

export TRIGPOLL_TEST_PG_URL="${TRIGPOLL_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
# fsync off: the tests check behaviour, not durability across power loss.
ensure_postgres TRIGPOLL_TEST_PG_URL 54329 "-c fsync=off -c max_connections=200"
export TRIGPOLL_TEST_MYSQL_URL="${TRIGPOLL_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/mysql}"
ensure_mariadb
export TRIGPOLL_TEST_NATS_URL="${TRIGPOLL_TEST_NATS_URL:-nats://127.0.0.1:4222}"
ensure_nats
export TRIGPOLL_TEST_AMQP_URL="${TRIGPOLL_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
ensure_rabbitmq
export TRIGPOLL_TEST_REDIS_URL="${TRIGPOLL_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
ensure_redis
# TLS-only servers of their own for the TLS tests, with a throwaway certificate authority.
export TRIGPOLL_TEST_TLS_CA=/tmp/trigpoll-test-tls/ca.pem
make_test_certs /tmp/trigpoll-test-tls
ensure_postgres_tls 54339
ensure_mariadb_tls 33079
# tests/connector_tls.rs starts a nats-server with TLS of its own.
command -v nats-server >/dev/null || apt_install nats-server

# TLS to the databases builds on the system's OpenSSL (native-tls).
pkg-config --exists openssl 2>/dev/null || apt_install libssl-dev pkg-config

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked "$@"
# Two minutes of the soak test under faults on a PostgreSQL of its own, with what the tests built
# (it runs the server as its OS user: root; CI is).
if [ "$(id -u)" = 0 ] || [ "${CI:-}" = true ]; then
  TRIGPOLL_SOAK_PROFILE=dev bash scripts/soak.sh --backend postgresql --minutes 2
else
  log "soak test skipped: needs root to run its PostgreSQL"
fi
# The Debian package, built from what the tests built, installed, checked and purged.
bash scripts/package-test.sh
