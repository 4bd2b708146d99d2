"""``manage.py api``: serve the REST API and admin with gunicorn (threads: most of a
request is waiting on PostgreSQL or the exchange's quote)."""

import atexit
import os
import shutil
import signal

from django.conf import settings
from django.core.management.base import BaseCommand
from gunicorn.app.base import BaseApplication


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict) -> None:
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self):
        # Imported in the worker, after PROMETHEUS_MULTIPROC_DIR is set, so the
        # metrics it registers write to the shared directory.
        from broker.wsgi import application

        return application


def _child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


class Command(BaseCommand):
    help = "Serve the API and the admin site (gunicorn)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--bind", default=None)

    def handle(self, *args, bind: str | None, **options) -> None:
        port = os.environ.get("API_PORT", "8000")
        host = os.environ.get("API_HOST", "127.0.0.1")
        signal.signal(signal.SIGINT, signal.default_int_handler)
        metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if metrics_dir:  # set by manage.py; remove the workers' files on exit
            atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
        _Gunicorn(
            {
                "bind": bind or f"{host}:{port}",
                "workers": int(os.environ.get("WEB_CONCURRENCY", "2")),
                "worker_class": "gthread",
                "threads": int(os.environ.get("API_THREADS", "8")),
                "graceful_timeout": 20,
                "accesslog": "-" if settings.DEBUG else None,
                "loglevel": settings.LOG_LEVEL.lower(),
                "child_exit": _child_exit,
                # The control socket lives under $HOME: not on a read-only root.
                "control_socket_disable": True,
            }
        ).run()
