from django.apps import AppConfig


class DevstackConfig(AppConfig):
    """Local tooling: ``manage.py demo``. Installed by the local and test settings
    only; production neither installs nor ships it."""

    name = "devstack"
    verbose_name = "Local stack and demo"
