"""``Idempotency-Key`` for POSTs: the first response to a key is stored and replayed
byte for byte to any retry with the same key and body, for IDEMPOTENCY_TTL_HOURS.

The whole request runs in one transaction holding the key's row lock: the stored
response commits together with whatever the request wrote (or neither does), and a
concurrent request with the same key waits on the lock, then replays. A request
that crashed left nothing behind, so its retry simply runs.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.http import HttpResponse
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from broker.api.parsers import json_too_deep
from broker.errors import BrokerError
from broker.models import Customer, IdempotencyRecord

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


class InvalidIdempotencyKey(BrokerError):
    status = 400
    code = "invalid_idempotency_key"
    title = "Invalid Idempotency-Key header"


class IdempotencyKeyReused(BrokerError):
    status = 409
    code = "idempotency_key_reused"
    title = "Idempotency-Key reused with a different request"


class _Replay(Exception):
    def __init__(self, record: IdempotencyRecord) -> None:
        self.record = record


def fingerprint(request: Request) -> str:
    """Method, path and body; JSON bodies are compared by content, not layout. A
    body nested too deep to decode safely is compared as sent (the parser refuses
    it with a 400 anyway)."""
    raw = request.body
    try:
        if json_too_deep(raw):
            raise ValueError("nested too deep")
        body = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"))
        canonical = body.encode()
    except (ValueError, UnicodeDecodeError):
        canonical = raw
    digest = hashlib.sha256()
    digest.update(request.method.encode() + b" " + request.path.encode() + b"\n")
    digest.update(canonical)
    return digest.hexdigest()


def _claim(customer: Customer, key: str, print_: str) -> IdempotencyRecord:
    """Insert the key (or find it) and lock its row for this transaction. Waits
    while another request with the same key is in flight."""
    ttl = timedelta(hours=settings.IDEMPOTENCY_TTL_HOURS)
    with connection.cursor() as cursor:
        # An expired key is free again.
        cursor.execute(
            "DELETE FROM broker_idempotencyrecord "
            "WHERE customer_id = %s AND key = %s AND created_at < %s",
            [customer.pk, key, timezone.now() - ttl],
        )
        cursor.execute(
            """
            INSERT INTO broker_idempotencyrecord
                   (customer_id, key, fingerprint, response_content_type, created_at)
            VALUES (%s, %s, %s, '', now())
            ON CONFLICT (customer_id, key) DO NOTHING
            """,
            [customer.pk, key, print_],
        )
    return IdempotencyRecord.objects.select_for_update().get(customer=customer, key=key)


class IdempotentPostMixin:
    """For APIViews whose POST may carry ``Idempotency-Key``. Requires an
    authenticated customer (keys are per customer)."""

    def dispatch(self, request, *args, **kwargs):
        if request.method != "POST" or HEADER not in request.headers:
            return super().dispatch(request, *args, **kwargs)
        self._idempotency_record = None
        with transaction.atomic():
            response = super().dispatch(request, *args, **kwargs)
            record = self._idempotency_record
            if record is None:  # refused (401, 429, 409) or a replay: store nothing
                return response
            if response.status_code >= 500 or connection.needs_rollback:
                transaction.set_rollback(True)
                return response
            if isinstance(response, Response):
                response.render()
            record.response_status = response.status_code
            record.response_content_type = response["Content-Type"]
            record.response_body = response.content
            record.save(
                update_fields=[
                    "response_status",
                    "response_content_type",
                    "response_body",
                ]
            )
        return response

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication, throttles
        if request.method != "POST" or HEADER not in request.headers:
            return
        key = request.headers[HEADER]
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise InvalidIdempotencyKey(
                f"1 to {MAX_KEY_LENGTH} printable characters expected"
            )
        customer = getattr(request.user, "customer", None)
        if customer is None:
            return
        print_ = fingerprint(request)
        record = _claim(customer, key, print_)
        if record.fingerprint != print_:
            raise IdempotencyKeyReused(
                "this key was used for a different request; use a new key"
            )
        if record.response_status is not None:
            raise _Replay(record)
        # First request with this key: dispatch() stores what the view answers.
        self._idempotency_record = record

    def handle_exception(self, exc):
        if isinstance(exc, _Replay):
            record = exc.record
            response = HttpResponse(
                bytes(record.response_body),
                status=record.response_status,
                content_type=record.response_content_type,
            )
            response["Idempotent-Replayed"] = "true"
            return response
        return super().handle_exception(exc)
