#!/usr/bin/env bash
# The soak test (issue 19; docs/faults.md, "Soak"): an application writing all the time, three
# `trigpoll poll` processes delivering to a file, NATS JetStream and a slow, sometimes failing
# HTTP receiver, while pollers are killed, the database restarts and the broker and the receiver
# go away; then the history is checked. Exit 0 only when every check holds.
#
#   scripts/soak.sh --backend postgresql|mysql|sqlite [--minutes N] [--seed S]
#
# Runs its own database server (PostgreSQL or MariaDB from the OS packages, started as their OS
# user on a free port: needs root; SQLite: a file) and its own nats-server, never the shared
# ones. Builds the release binary and examples/soak.rs (with TRIGPOLL_SOAK_PROFILE=dev, what
# `cargo test` has built: CI's run, which a release build would make minutes longer). A failed
# run prints its seed: the same --seed repeats its schedule of faults.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/servers.sh

backend=
args=("$@")
while [ $# -gt 0 ]; do
  case $1 in
    --backend) backend=${2:-}; shift 2 ;;
    *) shift ;;
  esac
done
case $backend in
  postgresql|postgres)
    ls -d /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || apt_install postgresql ;;
  mysql|mariadb)
    { command -v mariadb-install-db >/dev/null && [ -x /usr/sbin/mariadbd ]; } \
      || apt_install mariadb-server ;;
  sqlite) ;;
  *) log "usage: scripts/soak.sh --backend postgresql|mysql|sqlite [--minutes N] [--seed S]"
     exit 2 ;;
esac
command -v nats-server >/dev/null || apt_install nats-server
if [ "$(id -u)" != 0 ] && [ "$backend" != sqlite ]; then
  log "the soak runs its database server as the server's OS user: needs root"
  exit 2
fi

case ${TRIGPOLL_SOAK_PROFILE:-release} in
  release) cargo build --release --locked --bin trigpoll --example soak; dir=target/release ;;
  dev) cargo build --locked --bin trigpoll --example soak; dir=target/debug ;;
  *) log "TRIGPOLL_SOAK_PROFILE is release or dev"; exit 2 ;;
esac
exec "$dir/examples/soak" --trigpoll "$dir/trigpoll" "${args[@]}"
