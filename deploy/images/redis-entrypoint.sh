#!/bin/sh
# The official image's contract, reduced to what the compose file uses: run redis-server as the
# redis user, listening on every interface of the container (its port is published to 127.0.0.1).
set -eu
if [ "${1:-}" = "redis-server" ]; then
    shift
    # Debian bookworm's Redis is 7.0, which refuses an ACL file naming CLIENT SETINFO (a 7.2
    # subcommand the committed rules allow); drop just that rule from the file it will load.
    prev=""
    for arg in "$@"; do
        if [ "$prev" = "--aclfile" ] && [ -f "$arg" ]; then sed -i 's/ +client|setinfo//g' "$arg"; fi
        prev="$arg"
    done
    chown -R redis:redis /data 2>/dev/null || true
    exec setpriv --reuid=redis --regid=redis --init-groups redis-server --bind 0.0.0.0 --protected-mode no "$@"
fi
exec "$@"
