import sys

from django.conf import settings
from django.core.management.base import BaseCommand
from prometheus_client import REGISTRY

from broker.celery import app
from broker.observability.job_health import JobHealthCollector
from broker.observability.server import celery_ready, serve_worker_endpoints


class Command(BaseCommand):
    help = (
        "Run the Celery worker of the periodic jobs (SIGTERM: finish the running "
        "jobs, exit 0). Concurrency from CELERY_CONCURRENCY."
    )

    def handle(self, *args, **options) -> None:
        REGISTRY.register(JobHealthCollector())
        serve_worker_endpoints(celery_ready)
        # What app.worker_main() runs, keeping the worker's exit code.
        code = app.start(
            argv=[
                "worker",
                f"--loglevel={settings.LOG_LEVEL}",
                f"--concurrency={settings.CELERY_WORKER_CONCURRENCY}",
                f"--queues={settings.CELERY_TASK_DEFAULT_QUEUE}",
                # Jobs-only worker: no revokes to sync, no peers to gossip with.
                "--without-mingle",
                "--without-gossip",
            ]
        )
        if code:
            sys.exit(code)
