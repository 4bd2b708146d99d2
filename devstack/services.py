"""The stack's services, in start order (they do not depend on each other: Kafka
runs KRaft, not ZooKeeper; the order only makes logs predictable)."""

from __future__ import annotations

from devstack.base import Service
from devstack.kafka import Kafka
from devstack.paths import StackPaths
from devstack.postgres import Postgres
from devstack.redis import Redis
from devstack.zookeeper import ZooKeeper

SERVICE_CLASSES: tuple[type[Service], ...] = (Postgres, Redis, ZooKeeper, Kafka)
NAMES: tuple[str, ...] = tuple(cls.name for cls in SERVICE_CLASSES)


def all_services(paths: StackPaths) -> list[Service]:
    """One instance of every service bound to ``paths``, in start order."""
    return [cls(paths) for cls in SERVICE_CLASSES]
