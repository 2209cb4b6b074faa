# syntax=docker/dockerfile:1
# crdswatch container image.
#
#   docker build -t crdswatch .
#   docker run -d --name crdswatch -p 127.0.0.1:8077:8077 \
#       -v crdswatch-state:/var/lib/crdswatch \
#       -v "$PWD/config/crdswatch.toml:/etc/crdswatch/crdswatch.toml:ro" \
#       --env-file deploy/crdswatch.env crdswatch
#
# or deploy/docker-compose.yml. Configuration: the TOML file mounted at
# /etc/crdswatch/crdswatch.toml plus CRDSWATCH_* environment variables (which win over the file).

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
# Builder: wheels for crdswatch and every dependency, so the runtime stage installs offline and
# carries no compiler, build backend or pip cache.
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY . .
RUN pip wheel ".[postgres]" -w /wheels

# ---------------------------------------------------------------------------------------------
# Runtime
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="crdswatch" \
      org.opencontainers.image.description="Watch CRDS servers for newly activated contexts and notify the people whose reference files changed" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PATH=/opt/crdswatch/venv/bin:$PATH

# A fixed uid/gid so that volumes and bind mounts can be chowned predictably on the host.
RUN groupadd --system --gid 10001 crdswatch \
 && useradd --system --uid 10001 --gid crdswatch --no-create-home \
        --home-dir /var/lib/crdswatch --shell /usr/sbin/nologin crdswatch \
 && install -d -o crdswatch -g crdswatch -m 0700 /var/lib/crdswatch /var/lib/crdswatch/cache \
 && install -d -m 0755 /etc/crdswatch

# Same layout as the systemd deployment (deploy/crdswatch.service): a venv in /opt/crdswatch.
# The wheels are bind-mounted from the builder, so they never end up in a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/crdswatch/venv \
 && /opt/crdswatch/venv/bin/pip install --no-index --find-links=/wheels "crdswatch[postgres]"

# The SQLite store and the parsed-mapping cache; a named volume keeps them across containers.
# No CRDSWATCH_STATE__* / CRDSWATCH_HTTP__* here: the environment wins over the TOML file, so an
# image default would silently override the mounted config. The config defaults already put the
# database at sqlite:////var/lib/crdswatch/state.db (this volume); for the published port, set
# [http] listen = "0.0.0.0:8077" in the mounted TOML. PostgreSQL works out of the box (the
# postgres extra, psycopg, is installed): [state] database = "postgresql+psycopg://...".
ENV CRDSWATCH_CACHE=/var/lib/crdswatch/cache \
    PYTHONUNBUFFERED=1
VOLUME ["/var/lib/crdswatch"]

# Numeric, so Kubernetes runAsNonRoot and host-side chown can check it without /etc/passwd.
USER 10001:10001
# "/" so that a relative SQLite URL (sqlite:///var/lib/...) lands on the volume too, as it does
# under systemd; the default URL is absolute (sqlite:////var/lib/crdswatch/state.db).
WORKDIR /

# /healthz and /metrics; publish it on the host's loopback only (-p 127.0.0.1:8077:8077).
EXPOSE 8077

# slim has no curl: ask /healthz with the interpreter that is already there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8077/healthz', timeout=3).status == 200 else 1)"]

# crdswatch finishes the in-flight delivery on SIGTERM (docker stop's default); give it time
# with `docker stop -t 30`. Exec form: crdswatch is PID 1 and receives the signal itself.
STOPSIGNAL SIGTERM
ENTRYPOINT ["crdswatch"]
CMD ["run", "--config", "/etc/crdswatch/crdswatch.toml", "--log-format", "json"]
