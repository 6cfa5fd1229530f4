#!/bin/sh
# First start: initdb with password auth for POSTGRES_USER (scram-sha-256 over TCP, peer locally),
# create POSTGRES_DB; then run the server as the postgres user. The official image's contract,
# reduced to the variables the compose file sets.
set -eu
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
if [ "${1:-}" = "postgres" ]; then
    shift
    chown -R postgres:postgres "$PGDATA" /run/postgresql
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        if [ -z "${POSTGRES_PASSWORD:-}" ]; then
            echo "postgres: POSTGRES_PASSWORD is not set (see .env.example)" >&2
            exit 1
        fi
        pwfile=$(mktemp)
        printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
        chown postgres "$pwfile"
        setpriv --reuid=postgres --regid=postgres --init-groups \
            initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
            --auth-local=trust --auth-host=scram-sha-256 >/dev/null
        rm -f "$pwfile"
        echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
        echo "host all all ::/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
        setpriv --reuid=postgres --regid=postgres --init-groups \
            pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
        if [ "$POSTGRES_DB" != "postgres" ]; then
            setpriv --reuid=postgres --regid=postgres --init-groups \
                psql -q -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \"$POSTGRES_DB\""
        fi
        setpriv --reuid=postgres --regid=postgres --init-groups pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
