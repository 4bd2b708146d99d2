import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from broker.celery import app
from broker.observability.server import celery_broker_ready, serve_worker_endpoints


class Command(BaseCommand):
    help = (
        "Run Celery beat, which sends the periodic jobs on their schedule (run "
        "exactly one). Its schedule file is CELERY_BEAT_SCHEDULE_FILE. SIGTERM: "
        "save the schedule, exit 0."
    )

    def handle(self, *args, **options) -> None:
        serve_worker_endpoints(celery_broker_ready)
        schedule = Path(settings.CELERY_BEAT_SCHEDULE_FILENAME)
        schedule.parent.mkdir(parents=True, exist_ok=True)
        code = app.start(
            argv=[
                "beat",
                f"--loglevel={settings.LOG_LEVEL}",
                f"--schedule={schedule}",
            ]
        )
        if code:
            sys.exit(code)
