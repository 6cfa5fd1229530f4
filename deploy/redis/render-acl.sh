#!/bin/sh
# Render the committed ACL template into the file Redis loads, then run a command.
#
#   render-acl.sh TEMPLATE OUT [COMMAND ARGS...]
#
# TEMPLATE is deploy/redis/users.acl (made by `cdb acl export`): every "user cdb-<role> ... off"
# line has the rules and no credential. Each becomes "... on #<sha256 of the password>", the
# password taken from CDB_ACL_<ROLE>_PASSWORD, or from the file named by CDB_ACL_<ROLE>_PASSWORD_FILE
# (a docker secret; trailing newlines ignored). OUT is written owner-only; passwords are never
# printed. Then the CDB_ACL_* variables are removed from the environment and COMMAND is exec'd
# (e.g. the redis image's `docker-entrypoint.sh redis-server --aclfile OUT`), so the server
# process never holds a password. Needs only POSIX sh and sha256sum (both in the redis image).
# Same result as `cdb acl export --render`; tests/test_redis_acl_deploy.py checks that.
set -eu
template=$1
out=$2
shift 2
umask 077
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
: > "$tmp"
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in
    "user cdb-"*" off")
        user=${line#user }
        user=${user%% *}
        role=$(printf '%s' "${user#cdb-}" | tr '[:lower:]' '[:upper:]')
        var="CDB_ACL_${role}_PASSWORD"
        eval "file=\${${var}_FILE:-}"
        if [ -n "$file" ]; then
            password=$(cat "$file")
        else
            eval "password=\${${var}:-}"
        fi
        if [ "${#password}" -lt 16 ]; then
            echo "render-acl: $var is unset or shorter than 16 characters (see docs/security.md)" >&2
            exit 1
        fi
        hash=$(printf '%s' "$password" | sha256sum | cut -d ' ' -f 1)
        printf '%s on #%s\n' "${line% off}" "$hash" >> "$tmp"
        ;;
    *)
        printf '%s\n' "$line" >> "$tmp"
        ;;
    esac
done < "$template"
mv "$tmp" "$out"
trap - EXIT
echo "render-acl: wrote $out" >&2
for name in $(env | sed -n 's/^\(CDB_ACL_[A-Z_]*\)=.*/\1/p'); do
    unset "$name"
done
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
