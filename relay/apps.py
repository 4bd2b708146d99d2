from django.apps import AppConfig


class RelayConfig(AppConfig):
    """The relay role: ``manage.py relay``. It owns no models (the outbox is the
    broker's)."""

    name = "relay"
    verbose_name = "Outbox relay"
