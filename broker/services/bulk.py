"""Writing many rows' changed columns in one statement.

Django's ``bulk_update`` builds a ``CASE WHEN pk = ... THEN ...`` expression per
row and column, which costs more Python than the database's work for the batches
settlement writes (it was most of the booking thread's time in a backlog drain).
This writes the same thing as ``UPDATE ... FROM (VALUES ...)``: one row of
parameters per object, each value prepared by its field exactly as a save would.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import Model


def rows_update(objects: Sequence[Model], fields: Sequence[str]) -> int:
    """Write ``fields`` of ``objects`` (all of one model, saved before) in one
    UPDATE; returns the number of rows it matched. Runs in the caller's
    transaction; takes no lock the caller does not already hold on these rows."""
    if not objects:
        return 0
    meta = type(objects[0])._meta
    pk = meta.pk
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    casts = ", ".join(f"%s::{field.db_type(connection)}" for field in [pk, *columns])
    params: list[object] = []
    for obj in objects:
        params.append(pk.get_db_prep_value(obj.pk, connection))
        params.extend(
            field.get_db_prep_save(getattr(obj, field.attname), connection)
            for field in columns
        )
    names = ", ".join(quote(field.column) for field in [pk, *columns])
    assignments = ", ".join(
        f"{quote(field.column)} = v.{quote(field.column)}" for field in columns
    )
    table = quote(meta.db_table)
    values = ", ".join([f"({casts})"] * len(objects))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {assignments} FROM (VALUES {values}) AS v({names}) "
            f"WHERE {table}.{quote(pk.column)} = v.{quote(pk.column)}",
            params,
        )
        return cursor.rowcount
