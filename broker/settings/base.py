"""Settings shared by every environment. Everything comes from environment variables
with safe local defaults (12-factor); the local stack writes them to ``.stack/env``."""

import ipaddress
from decimal import Decimal
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from broker.money import MAX_BUY_COLLAR

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
    # /admin/ only from ADMIN_ALLOWED_NETWORKS, its login throttled.
    "broker.admin_access.AdminAccessMiddleware",
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

# Every path that sets a password runs these: the admin's forms, changepassword,
# createsuperuser, and customer_create (create_customer, the demo).
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
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
    # DRF's JSONParser, refusing bodies nested deeper than a flat request needs.
    "DEFAULT_PARSER_CLASSES": ["broker.api.parsers.BoundedJSONParser"],
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
# How many proxies in front of the api append to X-Forwarded-For (the client
# address is the entry the outermost of them wrote). 0: no proxy, the peer address
# is the client and the header is ignored; anything the client itself puts in the
# header is never believed. k8s (ingress-nginx): 1. docker-compose: 0.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# Per-username login backoff (broker/api/throttling.py): after LOGIN_LOCKOUT_AFTER
# failed logins a username is locked for LOGIN_LOCKOUT_SECONDS, doubling with each
# further failure up to LOGIN_LOCKOUT_MAX_SECONDS. Failures are forgotten after
# LOGIN_FAILURE_MEMORY_HOURS without one, or at a successful login.
LOGIN_LOCKOUT_AFTER = env.int("LOGIN_LOCKOUT_AFTER", default=5)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=30)
LOGIN_LOCKOUT_MAX_SECONDS = env.int("LOGIN_LOCKOUT_MAX_SECONDS", default=900)
LOGIN_FAILURE_MEMORY_HOURS = env.int("LOGIN_FAILURE_MEMORY_HOURS", default=24)
# API tokens expire after this long unused (sliding: each use extends it).
TOKEN_TTL_HOURS = env.int("TOKEN_TTL_HOURS", default=168)
# Live tokens per customer; a login beyond it revokes the least recently used one.
TOKEN_MAX_PER_USER = env.int("TOKEN_MAX_PER_USER", default=10)
if TRUSTED_PROXY_COUNT < 0 or min(TOKEN_TTL_HOURS, TOKEN_MAX_PER_USER) < 1:
    raise ImproperlyConfigured(
        "TRUSTED_PROXY_COUNT must be >= 0, TOKEN_TTL_HOURS and TOKEN_MAX_PER_USER >= 1"
    )
if min(LOGIN_LOCKOUT_AFTER, LOGIN_LOCKOUT_SECONDS, LOGIN_FAILURE_MEMORY_HOURS) < 1:
    raise ImproperlyConfigured("LOGIN_LOCKOUT_* and LOGIN_FAILURE_MEMORY_HOURS >= 1")

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

# --- Operations admin (broker/admin_access.py, broker/admin.py) -----------------
# Networks (CIDRs) the admin answers; everyone else gets a 404. The client address
# is the API's (TRUSTED_PROXY_COUNT). Loopback: a local run, kubectl port-forward.
ADMIN_ALLOWED_NETWORKS = env.list(
    "ADMIN_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"]
)
for _network in ADMIN_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network.strip(), strict=False)
    except ValueError as _exc:
        raise ImproperlyConfigured(f"ADMIN_ALLOWED_NETWORKS: {_exc}") from _exc
# Admin login POSTs per client address and per username (counted in Redis; if
# Redis is down, admin logins are refused).
ADMIN_LOGIN_IP_RATE = env("ADMIN_LOGIN_IP_RATE", default="60/hour")
ADMIN_LOGIN_USERNAME_RATE = env("ADMIN_LOGIN_USERNAME_RATE", default="10/hour")
# A balance adjustment larger than this (either sign) needs a second staff
# member's approval before it posts.
ADMIN_ADJUSTMENT_APPROVAL_LIMIT = Decimal(
    env.str("ADMIN_ADJUSTMENT_APPROVAL_LIMIT", default="10000.00")
)
if not ADMIN_ADJUSTMENT_APPROVAL_LIMIT >= 0:
    raise ImproperlyConfigured("ADMIN_ADJUSTMENT_APPROVAL_LIMIT must be >= 0")

# Idempotency-Key responses are replayed for this long.
IDEMPOTENCY_TTL_HOURS = env.int("IDEMPOTENCY_TTL_HOURS", default=24)
# POST /api/v1/account/deposits credits cash out of thin air: sandbox only.
SANDBOX_FUNDING = env.bool("SANDBOX_FUNDING", default=False)

# --- Trading -----------------------------------------------------------------
# Market buys reserve quantity x last price x (1 + collar); the exchange refuses
# to fill above that price, so a fill can never cost more than its hold.
BUY_COLLAR = Decimal(env.str("BUY_COLLAR", default="0.05"))
# The order bounds (broker.money) keep every hold within its columns up to this
# collar.
if not 0 <= BUY_COLLAR <= MAX_BUY_COLLAR:
    raise ImproperlyConfigured(f"BUY_COLLAR={BUY_COLLAR}: 0 to {MAX_BUY_COLLAR}")
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

# Quotes only (the api's last prices); orders go over FIX (below).
EXCHANGE_URL = env("EXCHANGE_URL", default="http://127.0.0.1:8100")
# Where the api asks for quotes: the exchange's market-data endpoint when it has
# its own (exchange_mock's EXCHANGE_QUOTES_PORT), so the internet-facing api
# reaches neither order entry nor the simulator's admin routes.
EXCHANGE_QUOTES_URL = env("EXCHANGE_QUOTES_URL", default="") or EXCHANGE_URL
EXCHANGE_TIMEOUT = env.float("EXCHANGE_TIMEOUT", default=5.0)

# --- FIX order entry (docs/FIX.md): one session per topic, the leader initiates.
EXCHANGE_FIX_HOST = env("EXCHANGE_FIX_HOST", default="127.0.0.1")
EXCHANGE_FIX_PORT = env.int("EXCHANGE_FIX_PORT", default=8101)
FIX_SENDER_COMP_ID = env("FIX_SENDER_COMP_ID", default="BROKER")
FIX_TARGET_COMP_ID = env("FIX_TARGET_COMP_ID", default="EXCHANGE")
FIX_HEARTBEAT_SECONDS = env.int("FIX_HEARTBEAT_SECONDS", default=30)
FIX_USERNAME = env("FIX_USERNAME", default="")
FIX_PASSWORD = env("FIX_PASSWORD", default="")
# Orders a leader may have sent and not yet seen acknowledged.
FIX_WINDOW = env.int("FIX_WINDOW", default=256)
# Journaled messages older than this are pruned (resends reach back this far).
FIX_JOURNAL_RETENTION_HOURS = env.int("FIX_JOURNAL_RETENTION_HOURS", default=72)
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
