# Offline stand-in for the official postgres image: Debian bookworm's PostgreSQL 15 with an
# entrypoint that honours POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB like the official one.
ARG CDB_BASE_IMAGE=cdb-debian:bookworm
FROM ${CDB_BASE_IMAGE}
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
