"""Customer → topic routing. The hash must be stable across processes and releases
(Python's ``hash()`` is salted per process), so it is CRC-32."""

import zlib

from django.conf import settings


def topic_name(index: int) -> str:
    return f"{settings.TRADE_TOPIC_PREFIX}.{index}"


def all_topics() -> list[str]:
    return [topic_name(i) for i in range(settings.TRADE_TOPICS)]


def topic_for_customer(customer_id: int) -> str:
    """The one topic that carries every event of this customer, in commit order."""
    index = zlib.crc32(str(customer_id).encode()) % settings.TRADE_TOPICS
    return topic_name(index)


def dead_letter_topic() -> str:
    """Where the executors put messages they can never process."""
    return f"{settings.TRADE_TOPIC_PREFIX}.dlq"


def fix_sender_comp_id(topic: str) -> str:
    """The SenderCompID of the topic's FIX session: ``<FIX_SENDER_COMP_ID>-<n>``
    for topic ``<prefix>.<n>`` (docs/FIX.md)."""
    index = topic.rsplit(".", 1)[-1]
    return f"{settings.FIX_SENDER_COMP_ID}-{index}"
