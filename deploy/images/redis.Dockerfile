# Offline stand-in for the official redis image: Debian bookworm's redis-server (7.0) with the
# entrypoint name the compose file calls (docker-entrypoint.sh runs its arguments).
ARG CDB_BASE_IMAGE=cdb-debian:bookworm
FROM ${CDB_BASE_IMAGE}
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server", "--protected-mode", "no"]
