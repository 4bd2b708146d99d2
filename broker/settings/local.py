"""Local development and the demo: the defaults of base.py point at the local stack."""

from .base import *  # noqa: F403

# The local stack and the demo (manage.py demo): never installed in production.
INSTALLED_APPS = [*INSTALLED_APPS, "devstack"]  # noqa: F405
