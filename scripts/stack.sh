#!/usr/bin/env bash
# The compose stack on this machine, offline when it must be.
#
#   scripts/stack.sh docker     make sure a Docker engine answers (installs Debian's docker.io +
#                               docker-compose and starts dockerd when missing)
#   scripts/stack.sh images     make sure the base images exist: the official ones when they can be
#                               pulled, else local equivalents built from Debian packages (cached)
#   scripts/stack.sh build      images + the cdb-contracts image (from the committed lock file)
#   scripts/stack.sh up         build, then `compose up -d` and wait until every service is healthy
#   scripts/stack.sh down       `compose down -v`
#   scripts/stack.sh test       build, then the stack test (tests/test_stack.py: the runbook, walked
#                               with real containers); in CI a missing engine fails the run
#
# Image choices (defaults are the official images; see .env.example):
#   CDB_PYTHON_IMAGE  CDB_REDIS_IMAGE  CDB_POSTGRES_IMAGE  CDB_PROMETHEUS_IMAGE
# When a default cannot be pulled, the matching cdb-local/* image is built (once) from a Debian
# bookworm rootfs made with debootstrap and `docker import`ed as cdb-local/debian:bookworm, and
# the variable is pointed at it for this run. CDB_OFFLINE=1 skips the pull attempts.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
IMAGES_DIR="$ROOT/deploy/images"
BASE_IMAGE="cdb-local/debian:bookworm"
DEBIAN_MIRROR="${CDB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export CDB_PYTHON_IMAGE="${CDB_PYTHON_IMAGE:-python:3.11-slim}"
export CDB_REDIS_IMAGE="${CDB_REDIS_IMAGE:-redis:7.4}"
export CDB_POSTGRES_IMAGE="${CDB_POSTGRES_IMAGE:-postgres:16}"
export CDB_PROMETHEUS_IMAGE="${CDB_PROMETHEUS_IMAGE:-prom/prometheus:v2.53.2}"
export CDB_IMAGE="${CDB_IMAGE:-cdb-contracts:local}"

log() { echo "==> stack: $*" >&2; }

apt_install() {
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

compose() {  # docker compose v2 when present, else Debian's docker-compose 1.29
    if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}

ensure_docker() {
    command -v dockerd >/dev/null || apt_install docker.io
    if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
        apt_install docker-compose
    fi
    if docker info >/dev/null 2>&1; then return; fi
    log "starting dockerd (log: /tmp/cdb-dockerd.log)"
    (nohup dockerd >/tmp/cdb-dockerd.log 2>&1 &)
    for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && return; sleep 0.2; done
    echo "dockerd did not start; see /tmp/cdb-dockerd.log" >&2
    exit 1
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

pullable() {  # image: present locally or pulled now
    have_image "$1" && return 0
    [ "${CDB_OFFLINE:-0}" = 1 ] && return 1
    timeout 60 docker pull -q "$1" >/dev/null 2>&1
}

ensure_base() {
    have_image "$BASE_IMAGE" && return
    command -v debootstrap >/dev/null || apt_install debootstrap
    local rootfs
    rootfs="$(mktemp -d /tmp/cdb-rootfs.XXXXXX)"
    log "debootstrap bookworm (minbase) into $rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" >/tmp/cdb-debootstrap.log 2>&1 || {
        echo "debootstrap failed; see /tmp/cdb-debootstrap.log" >&2; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    log "imported $BASE_IMAGE"
}

local_image() {  # variable kind: use the official image if it pulls, else build cdb-local/<kind>
    local var="$1" kind="$2" tag="cdb-local/$2:bookworm"
    if pullable "${!var}"; then log "$var=${!var}"; return; fi
    if ! have_image "$tag"; then
        ensure_base
        log "building $tag from Debian packages"
        docker build -q --build-arg "CDB_BASE_IMAGE=$BASE_IMAGE" -t "$tag" \
            -f "$IMAGES_DIR/$kind.Dockerfile" "$IMAGES_DIR" >/dev/null
    fi
    export "$var=$tag"
    log "$var=$tag (offline build)"
}

ensure_images() {
    ensure_docker
    local_image CDB_PYTHON_IMAGE python
    local_image CDB_REDIS_IMAGE redis
    local_image CDB_POSTGRES_IMAGE postgres
    local_image CDB_PROMETHEUS_IMAGE prometheus
}

wheelhouse() {  # the locked wheels, fetched on the host (whose pip reaches the index) for the build
    local dir="$ROOT/var/wheelhouse" stamp
    stamp="$(sha256sum "$ROOT/requirements.lock" | cut -d' ' -f1)"
    rm -f "$dir"/cdb_contracts-*.whl
    log "building this project's wheel into var/wheelhouse"
    "${PYTHON:-python3}" -m pip wheel --quiet --disable-pip-version-check --no-deps "$ROOT" -w "$dir" >&2
    [ -f "$dir/.lock-sha256" ] && [ "$(cat "$dir/.lock-sha256")" = "$stamp" ] && return
    log "downloading the locked wheels into var/wheelhouse"
    find "$dir" -name '*.whl' ! -name 'cdb_contracts-*' -delete
    "${PYTHON:-python3}" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
        --only-binary :all: --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp \
        -r "$ROOT/requirements.lock" -d "$dir" >&2
    echo "$stamp" >"$dir/.lock-sha256"
}

build() {
    ensure_images
    wheelhouse
    log "building $CDB_IMAGE on $CDB_PYTHON_IMAGE"
    docker build -q --build-arg "CDB_PYTHON_IMAGE=$CDB_PYTHON_IMAGE" -t "$CDB_IMAGE" "$ROOT" >/dev/null
    log "built $CDB_IMAGE ($(docker image inspect -f '{{.Size}}' "$CDB_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
}

write_env() {  # the variables the running shell resolved, for later compose calls and the test
    cat >"${CDB_STACK_ENV:-$ROOT/var/stack.env}" <<EOF
CDB_PYTHON_IMAGE=$CDB_PYTHON_IMAGE
CDB_REDIS_IMAGE=$CDB_REDIS_IMAGE
CDB_POSTGRES_IMAGE=$CDB_POSTGRES_IMAGE
CDB_PROMETHEUS_IMAGE=$CDB_PROMETHEUS_IMAGE
CDB_IMAGE=$CDB_IMAGE
EOF
}

cmd="${1:-}"
shift || true
case "$cmd" in
docker) ensure_docker ;;
images) ensure_images; mkdir -p "$ROOT/var"; write_env ;;
build) build; mkdir -p "$ROOT/var"; write_env ;;
up)
    build
    [ -f "$ROOT/.env" ] || { echo "no .env: copy .env.example to .env and set the passwords" >&2; exit 1; }
    compose up -d --no-build "$@"
    compose ps
    ;;
down) ensure_docker; compose down -v "$@" ;;
test)
    build
    mkdir -p "$ROOT/var"
    CDB_STACK_ENV="$ROOT/var/stack.env" write_env
    # shellcheck source=scripts/bootstrap.sh
    source "$ROOT/scripts/bootstrap.sh"
    CDB_STACK=1 python -m pytest -p no:cacheprovider "$ROOT/tests/test_stack.py" "$@"
    ;;
*)
    sed -n '2,20p' "$0" >&2
    exit 2
    ;;
esac
