#!/usr/bin/env bash
# requirements.lock: the image's exact, hash-checked runtime dependencies, compiled by uv from
# pyproject.toml for Linux x86_64 / CPython 3.11 (the image's platform).
#   scripts/lock.sh update   re-resolve (keeps existing pins unless pyproject.toml needs others)
#   scripts/lock.sh check    fail when the lock is not what pyproject.toml resolves to now
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
UV="${UV:-$(command -v uv || echo "$ROOT/.venv/bin/uv")}"
compile() {  # output file (its pins are preferred)
    "$UV" pip compile pyproject.toml --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
        --generate-hashes --custom-compile-command "scripts/lock.sh update" -o "$1"
}
case "${1:-check}" in
update) compile requirements.lock; echo "requirements.lock updated" >&2 ;;
check)
    tmp="$(mktemp)"
    trap 'rm -f "$tmp"' EXIT
    cp requirements.lock "$tmp"
    compile "$tmp"
    if ! diff -u requirements.lock "$tmp" >&2; then
        echo "requirements.lock is out of date with pyproject.toml: run scripts/lock.sh update" >&2
        exit 1
    fi
    echo "==> requirements.lock is current" >&2
    ;;
*) echo "usage: scripts/lock.sh [check|update]" >&2; exit 2 ;;
esac
