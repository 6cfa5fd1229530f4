#!/usr/bin/env bash
# Make sure Redis (127.0.0.1:6379) and PostgreSQL (127.0.0.1:5432, trust auth) answer.
# Uses running servers as they are; otherwise installs Debian's packages if missing and
# starts throwaway ones that keep nothing on disk we did not create.
set -euo pipefail
REDIS_PORT="${CDB_REDIS_PORT:-6379}"
PG_PORT="${CDB_PG_PORT:-5432}"
APT_UPDATED=0

apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        echo "==> apt-get update" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        APT_UPDATED=1
    fi
    echo "==> apt-get install $*" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

port_open() {  # host port
    python3 - "$1" "$2" <<'PY'
import socket, sys
s = socket.socket()
s.settimeout(1)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
PY
}

wait_port() {  # host port what
    for _ in $(seq 1 100); do port_open "$1" "$2" && return 0; sleep 0.2; done
    echo "$3 did not come up on $1:$2" >&2
    return 1
}

ensure_redis() {
    if port_open 127.0.0.1 "$REDIS_PORT"; then echo "==> redis: using 127.0.0.1:$REDIS_PORT" >&2; return; fi
    command -v redis-server >/dev/null || apt_install redis-server redis-tools
    echo "==> redis: starting a throwaway server on 127.0.0.1:$REDIS_PORT" >&2
    mkdir -p /tmp/cdb-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir /tmp/cdb-redis --logfile /tmp/cdb-redis/redis.log
    wait_port 127.0.0.1 "$REDIS_PORT" redis
}

ensure_postgres() {
    if port_open 127.0.0.1 "$PG_PORT"; then echo "==> postgres: using 127.0.0.1:$PG_PORT" >&2; return; fi
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then apt_install postgresql; fi
    if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql/*/main >/dev/null 2>&1; then
        ver="$(ls /etc/postgresql | sort -V | tail -1)"
        echo "==> postgres: starting cluster $ver/main" >&2
        pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || true
        if wait_port 127.0.0.1 "$PG_PORT" postgres 2>/dev/null; then return; fi
    fi
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    data=/tmp/cdb-pgdata
    echo "==> postgres: starting a throwaway cluster in $data on 127.0.0.1:$PG_PORT" >&2
    if [ ! -f "$data/PG_VERSION" ]; then
        mkdir -p "$data" && chown postgres "$data"
        runuser -u postgres -- "$bin/initdb" -D "$data" -A trust -U postgres >/dev/null
    fi
    runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$data/server.log" \
        -o "-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1" start >&2
    wait_port 127.0.0.1 "$PG_PORT" postgres
}

ensure_redis
ensure_postgres
command -v redis-server >/dev/null || apt_install redis-server redis-tools  # tests start throwaway servers
