#!/usr/bin/env bash
# The whole test suite on a fresh machine: set up, make sure the servers answer,
# then ruff (lint + format), mypy strict on core and migration, and pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh -k codec).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/bootstrap.sh
source "$ROOT/scripts/bootstrap.sh"
bash "$ROOT/scripts/ensure-servers.sh"
bash "$ROOT/scripts/ensure-tools.sh"   # promtool, chromium + chromedriver (Debian packages)
echo "==> ruff" >&2
ruff check .
ruff format --check .
echo "==> mypy (strict: core, migration)" >&2
mypy
echo "==> pytest" >&2
status=0
python -m pytest "$@" || status=$?
if [ "$status" = 5 ]; then echo "pytest collected no tests: that is a failure here" >&2; exit 1; fi
exit "$status"
