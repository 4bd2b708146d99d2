from django.apps import AppConfig


class BrokerConfig(AppConfig):
    name = "broker"
    verbose_name = "Brokerage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from broker import signals

        signals.connect()
