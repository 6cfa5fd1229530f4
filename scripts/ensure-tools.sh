#!/usr/bin/env bash
# Tools the test command needs besides Python packages, from Debian's packages when missing:
#   promtool  (package prometheus)         : `promtool test rules` on deploy/prometheus
#   chromium + chromedriver (chromium, chromium-driver): the dashboard's browser test
# Set CDB_SKIP_TOOLS=1 to leave the machine alone (the tests that need a tool then fail in CI).
set -euo pipefail
[ "${CDB_SKIP_TOOLS:-0}" = 1 ] && exit 0
missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
[ "${#missing[@]}" = 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
    echo "==> missing ${missing[*]} and no apt-get: install them by hand" >&2
    exit 0
fi
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
echo "==> apt-get install ${missing[*]}" >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get update -qq >&2
# --no-install-recommends: prometheus recommends exporters we do not run; the package's own
# service is not started in containers (policy-rc.d) and is not needed (tests run promtool only).
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
