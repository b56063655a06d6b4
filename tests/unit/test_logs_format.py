"""The JSON log line: its own fields (`time` in RFC 3339, UTC, whatever the process's TZ), the
library's line byte for byte, and one write per event-loop turn."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pythonjsonlogger.orjson import OrjsonFormatter
from typing_extensions import Buffer as ReadableBuffer

from audit_ingest import logs
from audit_ingest.logs import TurnFlushedHandler, _JsonLines, json_formatter

pytestmark = pytest.mark.unit

CREATED = 1733392800.25  # 2024-12-05T10:00:00.250Z


@pytest.fixture(params=["UTC", "America/Sao_Paulo", "Asia/Kolkata"])
def local_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    try:
        yield request.param
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def _line(**extra: object) -> dict[str, object]:
    record = logging.LogRecord("audit_ingest.access", logging.INFO, "", 1, "request", (), None)
    record.created, record.msecs = CREATED, 250.0
    record.__dict__.update(extra)
    return dict(orjson.loads(json_formatter().format(record)))


def test_time_is_rfc3339_utc_in_any_local_zone(local_zone: str) -> None:
    line = _line(request_id="r1", status=202)
    assert line["time"] == "2024-12-05T10:00:00.250Z"
    assert (line["level"], line["logger"], line["message"]) == (
        "INFO",
        "audit_ingest.access",
        "request",
    )
    assert (line["request_id"], line["status"]) == ("r1", 202)


# The line every request writes goes through `_JsonLines`, a faster path through
# python-json-logger's formatter; the reference it must match byte for byte is the same
# configured formatter (a copy) run by the library's own class.
def _library_formatter() -> logging.Formatter:
    reference = copy.copy(json_formatter())
    reference.__class__ = OrjsonFormatter
    return reference


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
# Extra names as callers pass them, the names a line's own fields have in and out of it
# (replaced through __dict__, as the test above does; not those formatting reads, whose
# replacement breaks the library too), and private ones.
_READ_BY_FORMATTING = {"msg", "msecs", "created", "args", "exc_info", "stack_info"}
_EXTRA_NAMES = st.text(min_size=1, max_size=12).filter(
    lambda name: name not in _READ_BY_FORMATTING
) | st.sampled_from(
    [
        "_private",
        "__x",
        "message",
        "asctime",
        "name",
        "levelname",
        "time",
        "level",
        "logger",
        "status",
        "request_id",
        "process",
        "exc_text",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(
        st.tuples(
            # Times around a few seconds, out of order too: the cached second must follow.
            st.floats(min_value=1733392798.0, max_value=1733392803.0),
            st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR]),
            st.sampled_from(["request", "a %s message", "ünïcode ✓"]),
            st.dictionaries(_EXTRA_NAMES, _JSON_VALUES, max_size=8),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_the_line_is_the_librarys_byte_for_byte(
    records: list[tuple[float, int, str, dict[str, object]]],
) -> None:
    ours, reference = json_formatter(), _library_formatter()
    for created, level, message, extra in records:
        record = logging.LogRecord(
            "audit_ingest.access", level, "", 1, message, ("x",) if "%s" in message else (), None
        )
        record.created, record.msecs = created, (created - int(created)) * 1000
        record.__dict__.update(extra)
        assert ours.format(record) == reference.format(record)


def test_an_exception_and_a_dict_message_are_the_librarys_too() -> None:
    ours, reference = json_formatter(), _library_formatter()
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, "", 1, "failed", (), sys.exc_info())
    as_dict = logging.LogRecord("x", logging.INFO, "", 1, {"k": 1, "time": "t"}, (), None)
    for record in (failed, as_dict):
        assert ours.format(record) == reference.format(record)


class _Writes(io.RawIOBase):
    """A raw stream that keeps each write system call it would make."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        self.calls.append(bytes(data))
        return len(bytes(data))


def _handler() -> tuple[TurnFlushedHandler, _Writes]:
    raw = _Writes()
    stream = io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8")
    handler = TurnFlushedHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler, raw


def _emit(handler: logging.Handler, message: str) -> None:
    handler.handle(logging.LogRecord("audit_ingest.access", logging.INFO, "", 1, message, (), None))


def test_a_turns_lines_go_out_in_one_write_at_its_end_in_order() -> None:
    handler, raw = _handler()

    async def turn() -> list[bytes]:
        for n in range(50):
            _emit(handler, f"line {n}")
        before_the_end = list(raw.calls)
        await asyncio.sleep(0)  # the turn ends; the flush scheduled in it runs
        assert raw.calls == [b"".join(f"line {n}\n".encode() for n in range(50))]
        for n in range(50, 53):  # the next turn's lines: one more write
            _emit(handler, f"line {n}")
        await asyncio.sleep(0)
        return before_the_end

    assert asyncio.run(turn()) == []
    assert len(raw.calls) == 2
    assert raw.calls[1] == b"line 50\nline 51\nline 52\n"


def test_off_a_loop_a_line_goes_out_at_once_with_any_line_a_turn_left() -> None:
    handler, raw = _handler()
    _emit(handler, "no loop here")
    assert raw.calls == [b"no loop here\n"]

    async def a_turn_then_another_thread() -> None:
        _emit(handler, "on the loop")
        # librdkafka's thread logs while the loop's turn is not over: its flush writes both,
        # in the order they were logged.
        thread = threading.Thread(target=_emit, args=(handler, "from a thread"))
        thread.start()
        thread.join()
        assert raw.calls[1:] == [b"on the loop\nfrom a thread\n"]
        await asyncio.sleep(0)  # the turn's own flush finds nothing left

    asyncio.run(a_turn_then_another_thread())
    assert raw.calls[1:] == [b"on the loop\nfrom a thread\n"]


def test_a_flush_left_on_a_finished_loop_does_not_hold_the_next_loops_lines() -> None:
    handler, raw = _handler()

    async def log_and_leave() -> None:
        _emit(handler, "first loop")

    loop = asyncio.new_event_loop()
    loop.run_until_complete(log_and_leave())  # returns before the scheduled flush runs
    loop.close()

    async def next_loop() -> None:
        _emit(handler, "second loop")
        await asyncio.sleep(0)

    asyncio.run(next_loop())
    assert b"".join(raw.calls) == b"first loop\nsecond loop\n"


def test_a_configuration_the_fast_path_does_not_cover_takes_the_librarys_path() -> None:
    renames = {"asctime": "time", "levelname": "level", "name": "logger", "status": "code"}
    ours = _JsonLines("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields=renames)
    reference = OrjsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields=renames
    )
    record = logging.LogRecord("audit_ingest.access", logging.INFO, "", 1, "request", (), None)
    record.__dict__.update(status=202, request_id="r1")
    assert orjson.loads(ours.format(record))["code"] == 202
    assert ours.format(record) == reference.format(record)


class _BrokenPipe(_Writes):
    def write(self, data: ReadableBuffer) -> int:
        raise BrokenPipeError("the log reader is gone")


def test_a_failed_turn_flush_is_reported_as_emit_reports_one_not_raised_into_the_loop() -> None:
    stream = io.TextIOWrapper(io.BufferedWriter(_BrokenPipe()), encoding="utf-8")
    handler = TurnFlushedHandler(stream)
    reported: list[BaseException | None] = []
    handler.handleError = lambda record: reported.append(sys.exc_info()[1])  # type: ignore[method-assign]
    raised_into_the_loop: list[dict[str, object]] = []

    async def turns() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda _loop, context: raised_into_the_loop.append(context)
        )
        _emit(handler, "a line stdout will not take")
        for _ in range(3):
            await asyncio.sleep(0)

    asyncio.run(turns())
    assert raised_into_the_loop == []
    assert len(reported) == 1 and isinstance(reported[0], BrokenPipeError)


# The access line without a LogRecord (`log_request`, when logging is set up as
# `configure_logging` sets it up) must write what logging writes for the same call,
# `ACCESS.info("request", extra=fields)`, in every set-up.
@contextlib.contextmanager
def _configured_like_the_service() -> Iterator[tuple[TurnFlushedHandler, io.StringIO]]:
    """The access logger's records reach one stdout-like handler (configure_logging's), at
    INFO; pytest's own capture handlers are set aside for the block."""
    stream = io.StringIO()
    handler = TurnFlushedHandler(stream)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    saved = (root.handlers, root.level, logs._stdout_handler)
    root.handlers = [handler]
    root.setLevel(logging.INFO)  # setLevel, not an assignment: it clears the loggers' caches
    logs._stdout_handler = handler
    try:
        yield handler, stream
    finally:
        root.handlers, logs._stdout_handler = saved[0], saved[2]
        root.setLevel(saved[1])


@contextlib.contextmanager
def _records_counted() -> Iterator[list[logging.LogRecord]]:
    made: list[logging.LogRecord] = []
    factory = logging.getLogRecordFactory()

    def counting(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made.append(factory(*args, **kwargs))
        return made[-1]

    logging.setLogRecordFactory(counting)
    try:
        yield made
    finally:
        logging.setLogRecordFactory(factory)


def _written_at(
    created: float, call: Callable[[], None], *streams: io.StringIO
) -> tuple[type[BaseException] | None, tuple[str, ...]]:
    """What `call` raises and writes to `streams` at the time `created` (logging and
    log_request read `time.time`); the streams are emptied after."""
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(time, "time", lambda: created)
        raised: type[BaseException] | None = None
        try:
            call()
        except Exception as exc:
            raised = type(exc)
    written = tuple(stream.getvalue() for stream in streams)
    for stream in streams:
        stream.seek(0)
        stream.truncate()
    return raised, written


_FIELDS = {"request_id": "r1", "endpoint": "ingest-event", "status": 202, "duration_ms": 0.5}


@settings(max_examples=300, deadline=None)
@given(
    calls=st.lists(
        st.tuples(
            st.floats(min_value=1733392798.0, max_value=1733392803.0),
            st.dictionaries(_EXTRA_NAMES, _JSON_VALUES, max_size=8),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_the_access_line_without_a_record_is_loggings_byte_for_byte(
    calls: list[tuple[float, dict[str, Any]]],
) -> None:
    with _configured_like_the_service() as (_, out):
        for created, fields in calls:
            with _records_counted() as made:
                ours = _written_at(created, functools.partial(logs.log_request, dict(fields)), out)
            theirs = _written_at(
                created, functools.partial(logs.ACCESS.info, "request", extra=dict(fields)), out
            )
            assert ours == theirs
            plain = all(not name.startswith("_") and name not in _RECORD for name in fields)
            # A line of plain names is made without a record; any other takes logging's path.
            assert len(made) == (0 if plain else 1)


_RECORD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _drop(record: logging.LogRecord) -> bool:
    return False


@pytest.mark.parametrize(
    "set_up",
    [
        "as configured",
        "a filter on the access logger",
        "a filter on the handler",
        "the handler above INFO",
        "the access logger disabled",
        "the access logger above INFO",
        "a second handler on the root",
        "a handler on the access logger's parent",
        "the access logger's own handler, not propagating",
        "the access logger not propagating, with no handler",
        "the same handler on the access logger too",
        "the formatter replaced",
    ],
)
def test_the_access_line_goes_where_logging_sends_it_in_any_set_up(set_up: str) -> None:
    second_out = io.StringIO()
    second = logging.StreamHandler(second_out)
    second.setFormatter(json_formatter())
    parent = logging.getLogger("audit_ingest")
    with _configured_like_the_service() as (handler, out), pytest.MonkeyPatch.context() as changes:
        changes.setattr(logs.ACCESS, "filters", [])
        changes.setattr(handler, "filters", [])
        changes.setattr(parent, "handlers", [])
        changes.setattr(logs.ACCESS, "handlers", [])
        changes.setattr(logs.ACCESS, "propagate", True)
        if set_up == "a filter on the access logger":
            changes.setattr(logs.ACCESS, "filters", [_drop])
        elif set_up == "a filter on the handler":
            changes.setattr(handler, "filters", [_drop])
        elif set_up == "the handler above INFO":
            changes.setattr(handler, "level", logging.WARNING)
        elif set_up == "the access logger disabled":
            changes.setattr(logs.ACCESS, "disabled", True)
        elif set_up == "the access logger above INFO":
            changes.setattr(logs.ACCESS, "isEnabledFor", lambda level: level >= logging.WARNING)
        elif set_up == "a second handler on the root":
            changes.setattr(logging.getLogger(), "handlers", [handler, second])
        elif set_up == "a handler on the access logger's parent":
            changes.setattr(parent, "handlers", [second])
        elif set_up == "the access logger's own handler, not propagating":
            changes.setattr(logs.ACCESS, "handlers", [second])
            changes.setattr(logs.ACCESS, "propagate", False)
        elif set_up == "the access logger not propagating, with no handler":
            changes.setattr(logs.ACCESS, "propagate", False)  # logging's last resort: WARNING+
        elif set_up == "the same handler on the access logger too":
            changes.setattr(logs.ACCESS, "handlers", [handler])  # logging writes it twice
        elif set_up == "the formatter replaced":
            changes.setattr(handler, "formatter", logging.Formatter("%(message)s %(status)s"))
        written = [
            _written_at(CREATED, call, out, second_out)
            for call in (
                lambda: logs.log_request(dict(_FIELDS)),
                lambda: logs.ACCESS.info("request", extra=dict(_FIELDS)),
            )
        ]
    ours, theirs = written
    assert ours == theirs
    assert ours[0] is None  # nothing raised
    if set_up == "as configured":
        assert orjson.loads(ours[1][0])["time"] == "2024-12-05T10:00:00.250Z"
    if (
        "filter" in set_up
        or "above INFO" in set_up
        or "disabled" in set_up
        or "no handler" in set_up
    ):
        assert ours[1] == ("", "")
    else:
        assert "request" in "".join(ours[1])  # written somewhere


def test_a_line_written_without_a_record_that_fails_is_reported_as_emit_reports_one() -> None:
    stream = io.TextIOWrapper(io.BufferedWriter(_BrokenPipe()), encoding="utf-8")
    handler = TurnFlushedHandler(stream)
    reported: list[tuple[str, BaseException | None]] = []
    handler.handleError = lambda record: reported.append(  # type: ignore[method-assign]
        (record.getMessage(), sys.exc_info()[1])
    )
    handler.write_line('{"message":"request"}')
    assert len(reported) == 1
    assert reported[0][0] == '{"message":"request"}'
    assert isinstance(reported[0][1], BrokenPipeError)
