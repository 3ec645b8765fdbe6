# syntax=docker/dockerfile:1
# Production image of the LLM gateway (docs/deploy.md).
#
#   docker build -t llm-gateway:local .
#   docker run --rm -p 127.0.0.1:8080:8080 --env-file .env \
#     -v "$PWD/deploy/compose/gateway.yaml:/etc/gateway/gateway.yaml:ro" \
#     llm-gateway:local --config /etc/gateway/gateway.yaml
#
# No secret is baked in: provider keys, client keys and the admin token come from the environment at run
# time. The base image is pinned by tag; pin it by digest too for reproducible builds
# (python:3.11-slim-bookworm@sha256:...).

# ---- builder: wheels for the project and every dependency --------------------------------------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src

# Dependencies first (from pyproject.toml alone), so a code change does not rebuild them.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt

COPY gateway/ gateway/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# ---- runtime -----------------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="llm-gateway" \
      org.opencontainers.image.description="Health-aware LLM gateway: AgentOS and OpenAI-compatible APIs with failover" \
      org.opencontainers.image.licenses="MIT"

# GATEWAY_AUTH_ENABLED=true: the image listens on 0.0.0.0, which the gateway refuses without client auth.
# Client keys come from the configuration (auth.clientKeys with keyEnv or keySha256; docs/deploy.md).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    GATEWAY_AUTH_ENABLED=true \
    GATEWAY_PORT=8080 \
    GATEWAY_STORAGE_URL=sqlite+aiosqlite:////app/data/gateway.db

RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin gateway

# Installed as root into the system site-packages (bytecode compiled now): the code is read-only to the
# service user, and the container runs with a read-only root filesystem on Kubernetes.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/llm_gateway-*.whl

WORKDIR /app
COPY config/default.yaml /app/config/default.yaml
# /app/data: the default SQLite store (single replica only; several replicas need PostgreSQL).
RUN mkdir -p /app/data && chown 10001:10001 /app/data && chmod 0750 /app/data

USER 10001:10001

EXPOSE 8080
# SIGTERM: /ready turns unhealthy, in-flight requests (streams included) finish up to server.drainTimeout.
STOPSIGNAL SIGTERM

# No curl in the slim image: python's urllib. Any non-2xx answer or connection error raises: exit 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('GATEWAY_PORT', '8080'), timeout=4)"]

# Arguments given to `docker run IMAGE ...` are appended: `--workers 2`, `--config /etc/gateway/x.yaml`
# (the last --config wins).
ENTRYPOINT ["gateway", "serve", "--config", "/app/config/default.yaml", "--host", "0.0.0.0"]
CMD []
