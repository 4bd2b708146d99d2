"""Settings shared by every environment. Everything comes from environment variables
with safe local defaults (12-factor); the local stack writes them to ``.stack/env``."""

from decimal import Decimal
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-development-only-not-a-secret")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "broker",
    # The roles that run from this image, each owning its management command.
    "relay",
    "executor",
]

MIDDLEWARE = [
    "broker.observability.middleware.HealthEndpointsMiddleware",
    "broker.observability.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "broker.urls"
WSGI_APPLICATION = "broker.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": env.db(
        "DATABASE_URL", default="postgres://broker:broker@127.0.0.1:55432/broker"
    )
}
# Persistent connections: every role is a long-running process.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Parameters bound by the server, and a statement run 5 times on a connection
# prepared there (psycopg's prepare_threshold): PostgreSQL stops parsing and
# planning the same few statements of every placement and settlement, which
# was 40 % of its CPU per PlaceTrade. Turn it off (DB_PREPARED_STATEMENTS=false)
# behind a transaction-mode connection pooler, which cannot keep a prepared
# statement with its connection.
if env.bool("DB_PREPARED_STATEMENTS", default=True):
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=5
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / ".stack" / "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "broker.api.authentication.BearerTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "broker.api.errors.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": ["broker.api.throttling.ApiRateThrottle"],
    "COERCE_DECIMAL_TO_STRING": True,
    "UNAUTHENTICATED_USER": None,
}

# Rates as "<count>/<second|minute|hour|day>"; counters live in Redis, so every api
# process shares them.
THROTTLE_CUSTOMER_RATE = env("THROTTLE_CUSTOMER_RATE", default="1200/minute")
THROTTLE_IP_RATE = env("THROTTLE_IP_RATE", default="6000/minute")
THROTTLE_LOGIN_RATE = env("THROTTLE_LOGIN_RATE", default="30/minute")

SPECTACULAR_SETTINGS = {
    "TITLE": "Trade execution API",
    "DESCRIPTION": "Place, follow and cancel trades; read the account, positions "
    "and ledger. Errors are RFC 9457 problem details with a stable `code`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Idempotency-Key responses are replayed for this long.
IDEMPOTENCY_TTL_HOURS = env.int("IDEMPOTENCY_TTL_HOURS", default=24)
# POST /api/v1/account/deposits credits cash out of thin air: sandbox only.
SANDBOX_FUNDING = env.bool("SANDBOX_FUNDING", default=False)

# --- Trading -----------------------------------------------------------------
# Market buys reserve quantity x last price x (1 + collar); the exchange refuses
# to fill above that price, so a fill can never cost more than its hold.
BUY_COLLAR = Decimal(env.str("BUY_COLLAR", default="0.05"))
TRADE_TOPICS = env.int("TRADE_TOPICS", default=4)
TRADE_TOPIC_PREFIX = env("TRADE_TOPIC_PREFIX", default="trades")
TRADE_TOPIC_PARTITIONS = env.int("TRADE_TOPIC_PARTITIONS", default=1)
# Replication of the topics the relay/executor create when missing; -1 takes the
# broker's default (production: 3, or topics declared by the platform).
KAFKA_TOPIC_REPLICATION_FACTOR = env.int("KAFKA_TOPIC_REPLICATION_FACTOR", default=1)

# --- External services -------------------------------------------------------
KAFKA_BOOTSTRAP_SERVERS = env("KAFKA_BOOTSTRAP_SERVERS", default="127.0.0.1:59092")
ZOOKEEPER_HOSTS = env("ZOOKEEPER_HOSTS", default="127.0.0.1:52181")
ZOOKEEPER_ROOT = env("ZOOKEEPER_ROOT", default="/broker")
ZOOKEEPER_SESSION_TIMEOUT = env.float("ZOOKEEPER_SESSION_TIMEOUT", default=6.0)
# An executor's transaction idle longer than this is ended by PostgreSQL: a leader
# frozen inside a fenced transaction (GC pause, SIGSTOP, frozen VM) must not hold
# its FOR SHARE fence lock (which would block the successor's claim) nor commit
# after waking. Executors never wait on the network inside a transaction.
EXECUTOR_IDLE_TRANSACTION_TIMEOUT = env.float(
    "EXECUTOR_IDLE_TRANSACTION_TIMEOUT", default=ZOOKEEPER_SESSION_TIMEOUT / 2
)
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:56379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="broker"),
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

EXCHANGE_URL = env("EXCHANGE_URL", default="http://127.0.0.1:8100")
EXCHANGE_TIMEOUT = env.float("EXCHANGE_TIMEOUT", default=5.0)
# How old a last price placement may hold against (0: ask the exchange every time).
QUOTE_MAX_AGE_SECONDS = env.float("QUOTE_MAX_AGE_SECONDS", default=1.0)

# --- Relay -------------------------------------------------------------------
RELAY_BATCH_SIZE = env.int("RELAY_BATCH_SIZE", default=500)
# Fallback poll when no NOTIFY arrives (missed wake-ups, relay restarts).
RELAY_POLL_SECONDS = env.float("RELAY_POLL_SECONDS", default=1.0)

LOG_LEVEL = env("LOG_LEVEL", default="INFO")
# "text" for people, "json" (one object per line) for log pipelines.
LOG_FORMAT = env("LOG_FORMAT", default="text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "broker.observability.logs.JsonFormatter"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
    },
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        "kazoo": {"level": "WARNING"},
        "django.db.backends": {"level": "WARNING"},
    },
}

# --- Celery: periodic jobs (worker + beat) ----------------------------------------
# Redis is the broker; no result backend (every job logs what it did). Tasks are
# acknowledged after they run, so a killed worker's task is delivered again: every
# job is idempotent. Run exactly one beat per deployment.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
# Own queue name, so deployments (and test runs) sharing a Redis never swap jobs.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", default="broker.jobs")
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_CONCURRENCY = env.int("CELERY_CONCURRENCY", default=2)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = env(
    "CELERY_BEAT_SCHEDULE_FILE",
    default=str(BASE_DIR / ".stack" / "celerybeat-schedule"),
)

# Thresholds of the jobs.
STUCK_TRADE_SECONDS = env.int("STUCK_TRADE_SECONDS", default=120)
OUTBOX_RETENTION_HOURS = env.int("OUTBOX_RETENTION_HOURS", default=72)

# How often beat sends each job. A run not started within its interval expires:
# the next one does the same work.
RECONCILE_INTERVAL_SECONDS = env.float("RECONCILE_INTERVAL_SECONDS", default=30)
EXPIRE_INTERVAL_SECONDS = env.float("EXPIRE_INTERVAL_SECONDS", default=60)
PRUNE_INTERVAL_SECONDS = env.float("PRUNE_INTERVAL_SECONDS", default=3600)
AUDIT_INTERVAL_SECONDS = env.float("AUDIT_INTERVAL_SECONDS", default=300)


def _every(task: str, seconds: float) -> dict:
    return {"task": task, "schedule": seconds, "options": {"expires": seconds}}


CELERY_BEAT_SCHEDULE = {
    "reconcile-stuck-trades": _every(
        "broker.reconcile_stuck_trades", RECONCILE_INTERVAL_SECONDS
    ),
    "expire-day-orders": _every("broker.expire_day_orders", EXPIRE_INTERVAL_SECONDS),
    "prune-outbox": _every("broker.prune_outbox", PRUNE_INTERVAL_SECONDS),
    "audit-ledger": _every("broker.audit_ledger", AUDIT_INTERVAL_SECONDS),
}
# --- end Celery ------------------------------------------------------------------
