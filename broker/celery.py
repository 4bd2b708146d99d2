"""The Celery app of the periodic-jobs role (worker + beat). Configured from the
Django settings named ``CELERY_*``; the tasks live in ``broker.tasks``.

Start the roles with ``python manage.py celery_worker`` and
``python manage.py celery_beat`` (or ``celery -A broker worker|beat``)."""

from __future__ import annotations

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings.local")

app = Celery("broker")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["broker"])


@signals.setup_logging.connect
def _keep_django_logging(**kwargs: object) -> None:
    """Leave logging to Django's LOGGING: every role logs the same line format to
    stderr at LOG_LEVEL. (A receiver stops Celery from configuring its own.)"""
