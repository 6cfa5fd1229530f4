#!/usr/bin/env bash
# Create .venv and install the project with its dev extras; re-runs pip only when
# pyproject.toml changed. Sourced by run.sh and test.sh; needs only python3 >= 3.11.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "cdb-contracts needs Python 3.11 or newer; '$PY' is $("$PY" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV" >&2
    "$PY" -m venv "$VENV"
fi
EXTRAS="${CDB_EXTRAS:-dev,bench}"   # run.sh asks for none; the test suite also runs bench --quick
STAMP="$VENV/.cdb-installed-${EXTRAS//,/-}"
TARGET="$ROOT"
[ "$EXTRAS" = "none" ] || TARGET="$ROOT[$EXTRAS]"
WANT="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "==> installing cdb-contracts[$EXTRAS] into $VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$TARGET" >&2
    echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
