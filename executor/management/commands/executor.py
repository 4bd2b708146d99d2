import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from broker.topics import all_topics, dead_letter_topic, fix_sender_comp_id
from executor.db_session import bound_idle_transactions
from executor.fix.session import SessionConfig
from executor.runner import Executor, default_identity


def fix_session_config(topic: str) -> SessionConfig:
    """The FIX session of a topic, from the environment (docs/FIX.md)."""
    return SessionConfig(
        sender_comp_id=fix_sender_comp_id(topic),
        target_comp_id=settings.FIX_TARGET_COMP_ID,
        host=settings.EXCHANGE_FIX_HOST,
        port=settings.EXCHANGE_FIX_PORT,
        heartbeat_seconds=settings.FIX_HEARTBEAT_SECONDS,
        username=settings.FIX_USERNAME,
        password=settings.FIX_PASSWORD,
    )


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
            fix_config=fix_session_config,
            fix_window=settings.FIX_WINDOW,
            dead_letter_topic=dead_letter_topic(),
        )
        signal.signal(signal.SIGTERM, lambda *_: executor.stop())
        signal.signal(signal.SIGINT, lambda *_: executor.stop())
        executor.run()
