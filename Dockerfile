# One image for all four services; the command picks the service (cdb service <name>).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY services ./services
COPY migration ./migration
COPY data ./data
RUN pip install --no-cache-dir . && useradd --create-home cdb && mkdir -p /app/var && chown cdb /app/var
USER cdb
ENTRYPOINT ["cdb"]
