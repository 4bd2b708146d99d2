import signal

from django.conf import settings
from django.core.management.base import BaseCommand

from broker.topics import all_topics
from relay.runner import Relay


class Command(BaseCommand):
    help = "Run the outbox relay: publish committed outbox events to Kafka."

    def handle(self, *args, **options) -> None:
        relay = Relay(
            bootstrap_servers=settings.KAFKA_BOOTSTRAP_SERVERS,
            topics=all_topics(),
            partitions=settings.TRADE_TOPIC_PARTITIONS,
            batch_size=settings.RELAY_BATCH_SIZE,
            poll_seconds=settings.RELAY_POLL_SECONDS,
        )
        signal.signal(signal.SIGTERM, lambda *_: relay.stop())
        signal.signal(signal.SIGINT, lambda *_: relay.stop())
        relay.run()
