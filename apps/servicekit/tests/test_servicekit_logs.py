"""JSON logs: one object per record, with app, version and the request id."""

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from servicekit.logs import JsonFormatter, configure_logging


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """configure_logging into a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    configure_logging("orders", "1.2.3", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_record_is_one_json_line_with_app_and_version(stream: io.StringIO) -> None:
    logging.getLogger("orders.db").warning("pool %s exhausted", "main")
    [entry] = lines(stream)
    assert {k: entry[k] for k in ("level", "app", "version", "logger", "message")} == {
        "level": "warning", "app": "orders", "version": "1.2.3", "logger": "orders.db",
        "message": "pool main exhausted"}


def test_uvicorn_records_are_json_even_after_another_setup_silenced_them() -> None:
    uvicorn_error = logging.getLogger("uvicorn.error")
    saved = (uvicorn_error.disabled, uvicorn_error.level)
    uvicorn_error.disabled, uvicorn_error.level = True, logging.CRITICAL
    root = logging.getLogger()
    kept = (list(root.handlers), root.level)
    buffer = io.StringIO()
    try:
        configure_logging("orders", "1.2.3", stream=buffer)
        uvicorn_error.info("Started server process [%d]", 7)
    finally:
        root.handlers[:] = kept[0]
        root.setLevel(kept[1])
        uvicorn_error.disabled, uvicorn_error.level = saved
    assert lines(buffer)[0]["message"] == "Started server process [7]"


def test_uvicorn_records_are_json_too(stream: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 7)
    assert lines(stream)[0]["message"] == "Started server process [7]"


def test_extra_fields_become_keys(stream: io.StringIO) -> None:
    logging.getLogger("x").info("done", extra={"status": 201})
    assert lines(stream)[0]["status"] == 201


def test_a_traceback_stays_inside_its_line(stream: io.StringIO) -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("x").exception("failed")
    [entry] = lines(stream)
    assert "RuntimeError: boom" in str(entry["exc"])


def test_configuring_twice_does_not_duplicate_lines(stream: io.StringIO) -> None:
    configure_logging("orders", "1.2.3", stream=stream)
    logging.getLogger("x").warning("once")
    assert len(lines(stream)) == 1


def test_the_timestamp_is_utc_iso_8601_with_milliseconds() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.created = 0.25
    entry = json.loads(JsonFormatter("a", "v").format(record))
    assert entry["ts"] == "1970-01-01T00:00:00.250+00:00"


def test_no_request_id_key_outside_a_request() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert "request_id" not in json.loads(JsonFormatter("a", "v").format(record))


def test_the_formatter_survives_values_json_cannot_encode() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.where = sys  # a module: written as its str()
    assert "module 'sys'" in json.loads(JsonFormatter("a", "v").format(record))["where"]
