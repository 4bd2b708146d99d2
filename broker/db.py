"""Dedicated psycopg connections, for work that must stay on one session (LISTEN,
session advisory locks) rather than go through Django's per-thread connection."""

from __future__ import annotations

import psycopg
from django.conf import settings


def raw_connect(
    *, autocommit: bool = True, application_name: str = "broker"
) -> psycopg.Connection:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        application_name=application_name,
        dbname=db["NAME"],
        user=db["USER"],
        password=db["PASSWORD"],
        host=db["HOST"],
        port=db["PORT"] or None,
        autocommit=autocommit,
        connect_timeout=10,
    )
