#!/usr/bin/env bash
# The benchmark of docs/performance.md: drain throughput, trigger cost, latency and scale, each
# next to its reference, written to BENCHMARKS.md. A report, never a test: it does not fail on
# a number.
#
#   scripts/bench.sh [--quick] [--runs N] [--only fig1,...,fig10] [--before PATH] [--out FILE]
#
# fig5 (drain on MySQL/MariaDB and SQLite) uses the server at TRIGPOLL_BENCH_MYSQL_URL (default
# mysql://root@127.0.0.1:3306, no database part; two throwaway databases) and a file in /dev/shm;
# without a MySQL server its row says so; fig8 and fig10 use the same server. fig6 (hot keys on every backend, claim over 1M events of
# one key) and fig7 (pgbench TPC-B with poll running) write the section "Hot keys", fig8 (what the
# capture settings cost) the section "Capture settings", fig9 (drain through NATS JetStream,
# RabbitMQ, Redis Streams and batched HTTP against the file connector) the section "Brokers and
# batched HTTP", fig10 (sysbench oltp_write_only without triggers, with trigpoll's triggers, with
# them and `trigpoll poll` running) the section "sysbench on MariaDB". `--only` with figures 5 to
# 10 alone replaces only their sections of FILE. `--before PATH` measures the trigger cost of an
# earlier trigpoll binary beside the current one (figure 2).
#
# Uses the PostgreSQL at TRIGPOLL_BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres)
# and creates a throwaway database there. As root it installs what it needs from the OS packages:
# PostgreSQL when nothing answers, PgQ for the server's major version, pgbench, sysbench,
# /usr/bin/time.
# fig9 uses NATS at TRIGPOLL_BENCH_NATS_URL, RabbitMQ at TRIGPOLL_BENCH_AMQP_URL and Redis at
# TRIGPOLL_BENCH_REDIS_URL (the local services by default), and starts throwaway ones as the tests
# do when none answers.
# The default size takes about 30 minutes on 2 cores (plus the build), --quick about 6.
set -euo pipefail
cd "$(dirname "$0")/.."

URL="${TRIGPOLL_BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

. scripts/lib/servers.sh
command -v psql >/dev/null || apt_install postgresql-client || true
# A throwaway server, when nothing answers, keeps its default settings: they are what is measured.
export TRIGPOLL_BENCH_PG_URL="$URL"
ensure_postgres TRIGPOLL_BENCH_PG_URL 54330
URL=$TRIGPOLL_BENCH_PG_URL

major=$(psql "$URL" -Atc "SELECT current_setting('server_version_num')::int / 10000" 2>/dev/null || true)
if [ -n "$major" ]; then
  # PgQ's files must be on the server's machine; for a remote server this installs nothing useful
  # and the report says PgQ is missing.
  if [ ! -f "/usr/share/postgresql/$major/extension/pgq.control" ]; then
    apt_install "postgresql-$major-pgq3" || log "PgQ could not be installed; the report will say so"
  fi
fi
# pgbench ships with the server package (postgresql-NN), /usr/bin/pgbench is its wrapper.
ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || apt_install "postgresql-${major:-15}" \
  || log "pgbench could not be installed; the trigger-cost figure will be missing"
# The brokers of fig9: the configured ones, or throwaway servers (scripts/lib/servers.sh).
export TRIGPOLL_TEST_NATS_URL="${TRIGPOLL_BENCH_NATS_URL:-nats://127.0.0.1:4222}"
ensure_nats || log "no NATS: its row of figure 9 will say so"
export TRIGPOLL_BENCH_NATS_URL="$TRIGPOLL_TEST_NATS_URL"
export TRIGPOLL_TEST_AMQP_URL="${TRIGPOLL_BENCH_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
ensure_rabbitmq || log "no RabbitMQ: its row of figure 9 will say so"
export TRIGPOLL_BENCH_AMQP_URL="$TRIGPOLL_TEST_AMQP_URL"
export TRIGPOLL_TEST_REDIS_URL="${TRIGPOLL_BENCH_REDIS_URL:-redis://127.0.0.1:6379/0}"
ensure_redis || log "no Redis: its row of figure 9 will say so"
export TRIGPOLL_BENCH_REDIS_URL="$TRIGPOLL_TEST_REDIS_URL"
command -v sysbench >/dev/null || apt_install sysbench \
  || log "sysbench could not be installed; figure 10 will say so"
[ -x /usr/bin/time ] || apt_install time || log "no /usr/bin/time: peak memory will be missing"

cargo build --release --locked --bin trigpoll --example bench >&2
uptime >&2
exec target/release/examples/bench --url "$URL" --trigpoll target/release/trigpoll "$@"
