import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from broker.topics import all_topics, dead_letter_topic
from executor.db_session import bound_idle_transactions
from executor.runner import Executor, default_identity


class Command(BaseCommand):
    help = "Run an executor: compete for topic leadership and execute led topics."

    def handle(self, *args, **options) -> None:
        bound_idle_transactions(settings.EXECUTOR_IDLE_TRANSACTION_TIMEOUT)
        executor = Executor(
            identity=default_identity(),
            topics=all_topics(),
            partitions=settings.TRADE_TOPIC_PARTITIONS,
            zookeeper_hosts=settings.ZOOKEEPER_HOSTS,
            zookeeper_root=settings.ZOOKEEPER_ROOT,
            session_timeout=settings.ZOOKEEPER_SESSION_TIMEOUT,
            bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
            exchange_url=settings.EXCHANGE_URL,
            exchange_timeout=settings.EXCHANGE_TIMEOUT,
            dead_letter_topic=dead_letter_topic(),
        )
        signal.signal(signal.SIGTERM, lambda *_: executor.stop())
        signal.signal(signal.SIGINT, lambda *_: executor.stop())
        executor.run()
