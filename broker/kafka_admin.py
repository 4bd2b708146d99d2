"""Kafka topic administration shared by the relay, the executor and the tests."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from django.conf import settings

logger = logging.getLogger(__name__)


def ensure_topics(
    bootstrap_servers: str,
    topics: list[str],
    *,
    partitions: int,
    replication_factor: int | None = None,
    config: dict[str, str] | None = None,
    timeout: float = 30,
) -> None:
    """Create the topics that do not exist yet, with topic ``config`` if given;
    existing ones are left as they are. ``replication_factor`` defaults to
    KAFKA_TOPIC_REPLICATION_FACTOR (-1: the broker's default)."""
    if replication_factor is None:
        replication_factor = settings.KAFKA_TOPIC_REPLICATION_FACTOR
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in topics if t not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [
            NewTopic(
                t,
                num_partitions=partitions,
                replication_factor=replication_factor,
                config=config or {},
            )
            for t in missing
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout)
            logger.info("topic created topic=%s partitions=%s", topic, partitions)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
