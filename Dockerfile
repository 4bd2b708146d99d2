# syntax=docker/dockerfile:1
#
# One image for every role; the role is the command (ENTRYPOINT is manage.py):
#
#   docker run IMAGE                       # api (gunicorn on API_HOST:API_PORT)
#   docker run IMAGE relay | executor | celery_worker | celery_beat
#   docker run IMAGE migrate --noinput     # one-shot: schema migrations
#   docker run --entrypoint python IMAGE -m exchange_mock
#
# Production settings are the default: the container refuses to start without
# DJANGO_SECRET_KEY, DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, ZOOKEEPER_HOSTS,
# REDIS_URL, EXCHANGE_URL and DJANGO_ALLOWED_HOSTS (README, "Configuration").
# Tested by tests/deploy/test_dockerfile.py.

# --- builder: compilers + every runtime dependency, in a venv ---------------------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Build tools, only for a dependency without a wheel for this platform; the final
# stage never gets them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
# The dependencies come from pyproject.toml alone, so this layer is rebuilt only
# when they change. The project itself is not pip-installed: its templates are
# not package data; the source is copied into /app below.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
    && pip install --upgrade pip \
    && pip install -r requirements.txt

# --- runtime: python:3.11-slim, no compilers, non-root ----------------------------
FROM python:3.11-slim AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=broker.settings.production \
    STATIC_ROOT=/app/static \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    METRICS_PORT=9100 \
    CELERY_BEAT_SCHEDULE_FILE=/tmp/celerybeat-schedule

# Fixed UID/GID (the Kubernetes securityContext says runAsUser: 10001).
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Code stays owned by root: the app user can read it, never change it.
COPY manage.py pyproject.toml ./
# The roles only: devstack/ (local stack and demo), tests and benchmarks stay out.
COPY broker ./broker
COPY relay ./relay
COPY executor ./executor
COPY exchange_mock ./exchange_mock

# Bytecode now (the root filesystem is read-only at run time), then the admin's and
# Swagger UI's static files into STATIC_ROOT (served by whitenoise). collectstatic
# needs settings, not services: the production settings get placeholder values that
# exist only in this RUN. /data is exchange_mock's store directory (a volume).
RUN python -m compileall -q manage.py broker relay executor exchange_mock \
    && DJANGO_SECRET_KEY=collectstatic-at-build-only \
       DATABASE_URL=postgres://build:build@localhost:5432/build \
       KAFKA_BOOTSTRAP_SERVERS=localhost:9092 \
       ZOOKEEPER_HOSTS=localhost:2181 \
       REDIS_URL=redis://localhost:6379/0 \
       EXCHANGE_URL=http://localhost:8100 \
       DJANGO_ALLOWED_HOSTS=localhost \
       python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p /data \
    && chown 10001:10001 /data

USER 10001:10001

# 8000: api (/healthz, /readyz, /metrics). 9100: METRICS_PORT of relay, executor
# and celery (/metrics, /healthz, /readyz). 8100: exchange_mock.
EXPOSE 8000 8100 9100

ENTRYPOINT ["python", "manage.py"]
CMD ["api"]
