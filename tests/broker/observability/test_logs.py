import json
import logging

from broker.observability.logs import JsonFormatter


def record(message: str, *args) -> logging.LogRecord:
    return logging.LogRecord(
        "executor.handlers", logging.INFO, __file__, 1, message, args, None
    )


def test_json_lines_carry_the_ids_as_fields():
    line = JsonFormatter().format(
        record(
            "fill applied trade=%s customer=%s topic=%s epoch=%s",
            "t-1",
            7,
            "trades.2",
            42,
        )
    )
    body = json.loads(line)
    assert body["level"] == "INFO"
    assert body["logger"] == "executor.handlers"
    assert (body["trade"], body["customer"], body["topic"], body["epoch"]) == (
        "t-1",
        "7",
        "trades.2",
        "42",
    )
    assert body["message"].startswith("fill applied")


def test_exceptions_are_kept_in_the_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    body = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in body["exception"]
