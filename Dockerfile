# PHR server image.
#
#   docker build -t phr-server .
#   docker run -p 8080:8080 -v phr-data:/data phr-server                      # embedded SecantusDB in /data
#   docker run -p 8080:8080 -e PHR_MONGODB_URI='mongodb://...' phr-server     # external MongoDB replica set
#
# Without PHR_MONGODB_URI the launcher starts the embedded database (SecantusDB, GPL-2.0) as a
# separate process with its files in the /data volume (PHR_DATA_DIR=/data/db, log in /data).
# Give `docker stop` time to let it shut down cleanly: `docker stop -t 30` (compose: stop_grace_period).
# secantusdb 0.7.0b3 publishes manylinux wheels for x86_64 and aarch64 (CPython 3.11).
# Not built on the development machine (it has no container engine); review before first use.

# ---- build: install the project and its runtime dependencies into a virtual environment ----------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies first, from the metadata alone (no packages yet), so code changes reuse this layer.
COPY pyproject.toml constraints.txt ./
RUN pip install -c constraints.txt '.[embedded]'

# Then the project itself (pip rebuilds and reinstalls a local directory every time).
COPY . .
RUN pip install -c constraints.txt '.[embedded]' \
    && python -m compileall -q /opt/venv/lib/python3.11/site-packages

# ---- runtime: the virtual environment only, run as an unprivileged user --------------------------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="phr-server" \
      org.opencontainers.image.description="FHIR R4 personal health record server with SMART-on-FHIR authorization" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 phr \
    && useradd --system --uid 10001 --gid phr --home-dir /app --shell /usr/sbin/nologin phr \
    && mkdir -p /app /data/db \
    && chown -R phr:phr /app /data

COPY --from=build /opt/venv /opt/venv
COPY LICENSE NOTICE /app/

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PHR_HOST=0.0.0.0 \
    PHR_PORT=8080 \
    PHR_DATA_DIR=/data/db

WORKDIR /app
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# Declared after the chown so a new named volume starts owned by the phr user.
VOLUME /data
EXPOSE 8080

# Liveness only (the process answers); /readyz also checks the database.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('PHR_PORT', '8080'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

CMD ["python", "-m", "fhir_server", "serve"]
