# One image for all four services; the command picks the service (cdb service <name>).
# The base is the official python image unless scripts/stack.sh had to build an offline
# equivalent from Debian packages (CDB_PYTHON_IMAGE). Dependencies come from the committed,
# hash-checked requirements.lock; the project is installed as a package (not run from a checkout),
# so the bundled data is read from site-packages like any installed user would.
ARG CDB_PYTHON_IMAGE=python:3.11-slim
FROM ${CDB_PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python3 -m venv /opt/cdb
# var/wheelhouse (filled by scripts/stack.sh: the locked wheels and this project's own wheel) lets
# the build run with no package index reachable; without it pip fetches the same locked,
# hash-checked files from the index and builds the project from the sources copied here.
COPY requirements.lock var/wheelhouse* /tmp/wheels/
COPY pyproject.toml README.md /src/
COPY core /src/core
COPY cdb /src/cdb
COPY harness /src/harness
COPY services /src/services
COPY migration /src/migration
RUN set -e; \
    if ls /tmp/wheels/cdb_contracts-*.whl >/dev/null 2>&1; then \
        /opt/cdb/bin/pip install --no-index --find-links /tmp/wheels --require-hashes --no-deps \
            -r /tmp/wheels/requirements.lock; \
        /opt/cdb/bin/pip install --no-index --no-deps /tmp/wheels/cdb_contracts-*.whl; \
    else \
        /opt/cdb/bin/pip install --require-hashes --no-deps -r /tmp/wheels/requirements.lock; \
        /opt/cdb/bin/pip install --no-deps /src; \
    fi; \
    rm -rf /src /tmp/wheels

FROM ${CDB_PYTHON_IMAGE}
COPY --from=build /opt/cdb /opt/cdb
RUN (getent passwd cdb >/dev/null || useradd --system --create-home --home-dir /home/cdb cdb) \
    && mkdir -p /var/lib/cdb && chown cdb /var/lib/cdb
ENV PATH=/opt/cdb/bin:$PATH PYTHONUNBUFFERED=1
WORKDIR /var/lib/cdb
USER cdb
ENTRYPOINT ["cdb"]
CMD ["--help"]
