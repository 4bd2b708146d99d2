from django.apps import AppConfig


class ExecutorConfig(AppConfig):
    """The executor role: ``manage.py executor``. Its tables (the topic fence,
    consumer offsets, dead letters) stay in the broker app so their migrations
    never move."""

    name = "executor"
    verbose_name = "Trade executor"
