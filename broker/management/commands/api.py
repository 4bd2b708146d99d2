"""``manage.py api``: serve the REST API and admin with gunicorn (threads: most of a
request is waiting on PostgreSQL or the exchange's quote)."""

import os
import signal

from django.conf import settings
from django.core.management.base import BaseCommand
from gunicorn.app.base import BaseApplication

from broker.wsgi import application


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict) -> None:
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        return application


class Command(BaseCommand):
    help = "Serve the API and the admin site (gunicorn)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--bind", default=None)

    def handle(self, *args, bind: str | None, **options) -> None:
        port = os.environ.get("API_PORT", "8000")
        host = os.environ.get("API_HOST", "127.0.0.1")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _Gunicorn(
            {
                "bind": bind or f"{host}:{port}",
                "workers": int(os.environ.get("WEB_CONCURRENCY", "2")),
                "worker_class": "gthread",
                "threads": int(os.environ.get("API_THREADS", "8")),
                "graceful_timeout": 20,
                "accesslog": "-" if settings.DEBUG else None,
                "loglevel": settings.LOG_LEVEL.lower(),
            }
        ).run()
