"""Removing what a test run left on the shared local stack: the local services
outlive the suite, so its Kafka topics and ZooKeeper subtree must not."""

from __future__ import annotations

import contextlib

from confluent_kafka.admin import AdminClient
from django.conf import settings
from kazoo.client import KazooClient


def drop_topics_and_znodes(topics: list[str], zk_root: str) -> None:
    """Best effort: a topic or znode already gone (or never created) is fine."""
    admin = AdminClient({"bootstrap.servers": settings.KAFKA_BOOTSTRAP_SERVERS})
    for future in admin.delete_topics(topics, operation_timeout=10).values():
        with contextlib.suppress(Exception):
            future.result(timeout=15)
    zk = KazooClient(hosts=settings.ZOOKEEPER_HOSTS)
    try:
        zk.start(timeout=10)
        zk.delete(zk_root, recursive=True)
    except Exception:
        pass
    finally:
        zk.stop()
        zk.close()
