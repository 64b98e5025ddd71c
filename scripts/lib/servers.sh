# Helpers shared by the scripts: make sure a database server answers, starting a throwaway one
# from the OS packages when none does. Sourced, not run.

log() { printf '%s\n' "scripts: $*" >&2; }

# Does something listen on host:port?
port_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# host and port of a URL like scheme://user@host:port/db
url_host() { local u="${1#*://}"; u="${u#*@}"; u="${u%%/*}"; printf '%s' "${u%%:*}"; }
url_port() { local u="${1#*://}"; u="${u#*@}"; u="${u%%/*}"; [[ "$u" == *:* ]] && printf '%s' "${u##*:}" || printf '%s' "$2"; }

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "need root to install $* from the OS packages"; return 1
  fi
  if [ -z "${APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# Makes the PostgreSQL URL in the variable named $1 answer: the configured server, or a
# throwaway one on 127.0.0.1:$2 started with the server options $3 (the variable is then set
# to it).
ensure_postgres() {
  local var=$1 throwaway_port=$2 options=${3:-}
  local url=${!var} host port
  host=$(url_host "$url"); port=$(url_port "$url" 5432)
  if port_open "$host" "$port"; then return 0; fi
  log "no PostgreSQL answers at $host:$port; starting a throwaway server on port $throwaway_port"
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$bin" ]; then
    apt_install postgresql
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  local dir=/tmp/trigpoll-pg-$throwaway_port
  if ! port_open 127.0.0.1 "$throwaway_port"; then
    rm -rf "$dir"; mkdir -p "$dir"; chown postgres: "$dir"
    runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
      -o "-p $throwaway_port -k $dir -c listen_addresses=127.0.0.1 $options" start >&2
  fi
  export "$var=postgres://postgres@127.0.0.1:$throwaway_port/postgres"
}

# Makes TRIGPOLL_TEST_MYSQL_URL answer: the configured server, or a throwaway MariaDB on port
# 33069 (its own datadir and socket, so a system server is left alone).
ensure_mariadb() {
  local host port
  host=$(url_host "$TRIGPOLL_TEST_MYSQL_URL"); port=$(url_port "$TRIGPOLL_TEST_MYSQL_URL" 3306)
  if port_open "$host" "$port"; then return 0; fi
  log "no MySQL answers at $host:$port; starting a throwaway MariaDB"
  if ! command -v mariadb-install-db >/dev/null || [ ! -x /usr/sbin/mariadbd ]; then
    apt_install mariadb-server
  fi
  local dir=/tmp/trigpoll-test-mariadb
  if ! port_open 127.0.0.1 33069; then
    rm -rf "$dir"; mkdir -p "$dir"; chown mysql: "$dir"
    mariadb-install-db --no-defaults --user=mysql --datadir="$dir/data" \
      --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 \
      || { cat "$dir/install.log" >&2; return 1; }
    /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$dir/data" --port=33069 \
      --bind-address=127.0.0.1 --socket="$dir/mariadb.sock" --pid-file="$dir/mariadb.pid" \
      --innodb-flush-log-at-trx-commit=0 --max-connections=300 >"$dir/log" 2>&1 &
    local waited=0
    until port_open 127.0.0.1 33069; do
      if [ "$waited" -ge 60 ]; then
        log "MariaDB did not start; its log:"; cat "$dir/log" >&2; return 1
      fi
      sleep 0.5; waited=$((waited + 1))
    done
  fi
  export TRIGPOLL_TEST_MYSQL_URL="mysql://root@127.0.0.1:33069/mysql"
}

# Waits until 127.0.0.1:$2 answers, for at most $3 seconds; shows the log $4 of $1 otherwise.
wait_for_port() {
  local name=$1 port=$2 limit=$3 log=$4 waited=0
  until port_open 127.0.0.1 "$port"; do
    if [ "$waited" -ge $((limit * 2)) ]; then
      log "$name did not start; its log:"; cat "$log" >&2; return 1
    fi
    sleep 0.5; waited=$((waited + 1))
  done
}

# Makes TRIGPOLL_TEST_NATS_URL answer: the configured server, or a throwaway nats-server with
# JetStream on port 42229 (its own store, so a system server is left alone).
ensure_nats() {
  local host port
  host=$(url_host "$TRIGPOLL_TEST_NATS_URL"); port=$(url_port "$TRIGPOLL_TEST_NATS_URL" 4222)
  if port_open "$host" "$port"; then return 0; fi
  log "no NATS answers at $host:$port; starting a throwaway nats-server with JetStream"
  command -v nats-server >/dev/null || apt_install nats-server
  local dir=/tmp/trigpoll-test-nats
  if ! port_open 127.0.0.1 42229; then
    rm -rf "$dir"; mkdir -p "$dir"
    nats-server -a 127.0.0.1 -p 42229 -js -sd "$dir/store" >"$dir/log" 2>&1 &
    wait_for_port nats-server 42229 30 "$dir/log"
  fi
  export TRIGPOLL_TEST_NATS_URL="nats://127.0.0.1:42229"
}

# Makes TRIGPOLL_TEST_REDIS_URL answer: the configured server, or a throwaway redis-server on
# port 63799 that keeps nothing on disk.
ensure_redis() {
  local host port
  host=$(url_host "$TRIGPOLL_TEST_REDIS_URL"); port=$(url_port "$TRIGPOLL_TEST_REDIS_URL" 6379)
  if port_open "$host" "$port"; then return 0; fi
  log "no Redis answers at $host:$port; starting a throwaway redis-server"
  [ -x /usr/bin/redis-server ] || apt_install redis-server
  local dir=/tmp/trigpoll-test-redis
  if ! port_open 127.0.0.1 63799; then
    rm -rf "$dir"; mkdir -p "$dir"
    /usr/bin/redis-server --bind 127.0.0.1 --port 63799 --dir "$dir" --save '' \
      --appendonly no >"$dir/log" 2>&1 &
    wait_for_port redis-server 63799 30 "$dir/log"
  fi
  export TRIGPOLL_TEST_REDIS_URL="redis://127.0.0.1:63799/0"
}

# Makes TRIGPOLL_TEST_AMQP_URL answer: the configured broker, or a throwaway RabbitMQ node on
# port 56729 (its own node name, data, configuration and no plugins, so a system broker is left
# alone; guest/guest works from 127.0.0.1).
ensure_rabbitmq() {
  local host port
  host=$(url_host "$TRIGPOLL_TEST_AMQP_URL"); port=$(url_port "$TRIGPOLL_TEST_AMQP_URL" 5672)
  if port_open "$host" "$port"; then return 0; fi
  log "no AMQP broker answers at $host:$port; starting a throwaway RabbitMQ"
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || apt_install rabbitmq-server
  local dir=/tmp/trigpoll-test-rabbitmq
  if ! port_open 127.0.0.1 56729; then
    rm -rf "$dir"; mkdir -p "$dir"
    echo "[]." >"$dir/enabled_plugins"
    : >"$dir/rabbitmq-env.conf"
    echo "listeners.tcp.default = 127.0.0.1:56729" >"$dir/rabbitmq.conf"
    chown -R rabbitmq: "$dir"
    (cd "$dir" && runuser -u rabbitmq -- env HOME="$dir" \
      RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_NODENAME=trigpoll-test@localhost \
      RABBITMQ_DIST_PORT=25729 RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
      RABBITMQ_PID_FILE="$dir/pid" ERL_EPMD_ADDRESS=127.0.0.1 \
      /usr/lib/rabbitmq/bin/rabbitmq-server >"$dir/out.log" 2>&1 &)
    wait_for_port RabbitMQ 56729 120 "$dir/out.log"
  fi
  export TRIGPOLL_TEST_AMQP_URL="amqp://guest:guest@127.0.0.1:56729/%2f"
}

# A throwaway certificate authority and a server certificate for `localhost` (the host name
# only: a connection to 127.0.0.1 that checks the host name must fail), in $1. Kept across
# runs, with the servers that use them.
make_test_certs() {
  local dir=$1
  [ -f "$dir/server.pem" ] && return 0
  command -v openssl >/dev/null || apt_install openssl
  rm -rf "$dir"; mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=trigpoll test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 3650 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
}

# Copies the server certificate and key into $1 for the OS user $2.
install_server_cert() {
  cp "$TRIGPOLL_TEST_TLS_CA" "$1/ca.pem"
  cp "$(dirname "$TRIGPOLL_TEST_TLS_CA")/server.pem" "$(dirname "$TRIGPOLL_TEST_TLS_CA")/server.key" "$1/"
  chown "$2:" "$1/ca.pem" "$1/server.pem" "$1/server.key"
  chmod 600 "$1/server.key"
}

# Starts, for the TLS tests, a throwaway PostgreSQL on 127.0.0.1:$1 that accepts encrypted
# connections only (hostssl; hostnossl is rejected), unless one already runs there, and sets
# TRIGPOLL_TEST_PG_TLS_URL. Needs make_test_certs first. Never touches the shared server.
ensure_postgres_tls() {
  local port=$1 dir=/tmp/trigpoll-pg-tls-$1 bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$bin" ]; then
    apt_install postgresql
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  if ! port_open 127.0.0.1 "$port"; then
    log "starting a throwaway TLS-only PostgreSQL on port $port"
    rm -rf "$dir"; mkdir -p "$dir"; chown postgres: "$dir"
    runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
    install_server_cert "$dir" postgres
    cat >"$dir/data/pg_hba.conf" <<HBA
hostssl   all all 127.0.0.1/32 trust
hostssl   all all ::1/128      trust
hostnossl all all 0.0.0.0/0    reject
hostnossl all all ::/0         reject
HBA
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-p $port -k $dir \
      -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=$dir/server.pem \
      -c ssl_key_file=$dir/server.key -c fsync=off -c max_connections=100" start >&2
  fi
  export TRIGPOLL_TEST_PG_TLS_URL="postgres://postgres@localhost:$port/postgres"
}

# The same for MariaDB: require_secure_transport, on 127.0.0.1:$1; sets
# TRIGPOLL_TEST_MYSQL_TLS_URL.
ensure_mariadb_tls() {
  local port=$1 dir=/tmp/trigpoll-mariadb-tls-$1
  if ! command -v mariadb-install-db >/dev/null || [ ! -x /usr/sbin/mariadbd ]; then
    apt_install mariadb-server
  fi
  if ! port_open 127.0.0.1 "$port"; then
    log "starting a throwaway TLS-only MariaDB on port $port"
    rm -rf "$dir"; mkdir -p "$dir"; chown mysql: "$dir"
    mariadb-install-db --no-defaults --user=mysql --datadir="$dir/data" \
      --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 \
      || { cat "$dir/install.log" >&2; return 1; }
    install_server_cert "$dir" mysql
    /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$dir/data" --port="$port" \
      --bind-address=127.0.0.1 --socket="$dir/mariadb.sock" --pid-file="$dir/mariadb.pid" \
      --ssl-ca="$dir/ca.pem" --ssl-cert="$dir/server.pem" --ssl-key="$dir/server.key" \
      --require-secure-transport=ON --innodb-flush-log-at-trx-commit=0 >"$dir/log" 2>&1 &
    local waited=0
    until port_open 127.0.0.1 "$port"; do
      if [ "$waited" -ge 60 ]; then
        log "MariaDB did not start; its log:"; cat "$dir/log" >&2; return 1
      fi
      sleep 0.5; waited=$((waited + 1))
    done
  fi
  export TRIGPOLL_TEST_MYSQL_TLS_URL="mysql://root@localhost:$port/mysql"
}
