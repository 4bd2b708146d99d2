"""Test settings: the real services of the local stack, a fast password hasher."""

from .base import *  # noqa: F403

# The local stack and the demo (manage.py demo): never installed in production.
INSTALLED_APPS = [*INSTALLED_APPS, "devstack"]  # noqa: F405

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# No collectstatic before tests: plain storage needs no manifest.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

import os  # noqa: E402
import uuid  # noqa: E402

# One run of the suite gets its own topics and ZooKeeper subtree, so runs never see
# each other's messages or elections on a shared local stack. Exported so the child
# processes the integration tests start inherit the same names.
TEST_RUN_ID = os.environ.setdefault("TEST_RUN_ID", uuid.uuid4().hex[:8])
TRADE_TOPIC_PREFIX = f"test-{TEST_RUN_ID}.trades"
ZOOKEEPER_ROOT = f"/broker-test-{TEST_RUN_ID}"
ZOOKEEPER_SESSION_TIMEOUT = 4.0
# Serve static files from the apps' folders; no collected STATIC_ROOT in tests.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
CACHES["default"]["KEY_PREFIX"] = f"test-{TEST_RUN_ID}"  # noqa: F405
# Parallel runs on one machine must not drop each other's test database.
DATABASES["default"]["TEST"] = {"NAME": f"test_broker_{TEST_RUN_ID}"}  # noqa: F405
# Tests fake the exchange's quotes per test: no price may outlive its test.
QUOTE_MAX_AGE_SECONDS = 0.0
