#!/usr/bin/env bash
# The main job on a fresh machine: set up, then run the pipeline on the bundled data.
# With REDIS_URL unset it runs on an embedded in-process Redis. Arguments go to `cdb run`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/bootstrap.sh
CDB_EXTRAS="${CDB_EXTRAS:-none}" source "$ROOT/scripts/bootstrap.sh"
exec cdb run "$@"
