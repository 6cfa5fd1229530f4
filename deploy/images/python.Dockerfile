# Offline stand-in for python:3.11-slim: Debian bookworm's Python 3.11 on the local base image.
# Built by scripts/stack.sh only when the official image cannot be pulled.
ARG CDB_BASE_IMAGE=cdb-debian:bookworm
FROM ${CDB_BASE_IMAGE}
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        python3 python3-venv python3-pip ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /usr/bin/python3 /usr/local/bin/python
CMD ["python3"]
