"""Structured logs: one JSON object per line on stdout (python-json-logger).

Every request is logged once by `audit_ingest.access` with its request id, tenant, endpoint,
status, duration and event counts. API keys are never logged: nothing in the library passes
one to a logger (a test drives traffic and searches the logs for every issued key).

librdkafka's own log lines (`%4|…|GETPID|…` on stderr by default) come through `KafkaLog`,
which the Kafka producer is given as confluent-kafka's `logger`: they land in the same JSON log
under `audit_ingest.librdkafka`, with a plain message, and the warnings librdkafka raises for
a transient state it retries through by itself are logged at INFO.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from pythonjsonlogger.orjson import OrjsonFormatter

ACCESS = logging.getLogger("audit_ingest.access")
LIBRDKAFKA = logging.getLogger("audit_ingest.librdkafka")
_configured = False
_stdout_handler: TurnFlushedHandler | None = None  # configure_logging's, once it has run


def configure_logging(level: str) -> None:
    """Send the root logger's records to stdout as JSON (once per process)."""
    global _configured, _stdout_handler
    if _configured:
        return
    _configured = True
    handler = TurnFlushedHandler(sys.stdout)
    handler.setFormatter(json_formatter())
    _stdout_handler = handler
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # What no line here shows is not gathered for every record (the logging HOWTO's
    # "Optimization" switches): the caller's file and line (a walk up the stack per record),
    # the thread's name and the multiprocessing process name. The access line costs 21 -> 14
    # µs. The process id stays: gunicorn's own lines print it.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False


def json_formatter() -> logging.Formatter:
    """One JSON object per record: `time` (RFC 3339, UTC, milliseconds), `level`, `logger`,
    `message`, then the record's extra fields."""
    # python-json-logger's orjson backend: the same fields, about 7 µs less per access line
    # than its stdlib-json one (one line per request, on the hot path).
    formatter = _JsonLines(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        timestamp=False,
    )
    # logging's own time, in UTC with its zone ("2024-12-05T10:00:00.250Z"): the default is
    # local time without one ("2024-12-05 10:00:00,250"), which reads differently under each
    # container's TZ and which log stores cannot parse without a format hint.
    formatter.converter = time.gmtime
    formatter.default_time_format = "%Y-%m-%dT%H:%M:%S"
    formatter.default_msec_format = "%s.%03dZ"
    return formatter


class _JsonLines(OrjsonFormatter):
    """python-json-logger's orjson formatter, with two of its per-record costs taken out of the
    line every request writes; the line itself is the library's, byte for byte (a property
    test holds the two to it).

    - The record's extra fields: the library tests every attribute of the record (about 30)
      with `hasattr`, `startswith` and a rename lookup; here one set lookup skips the
      reserved ones and the underscore test runs only on the few left (`add_fields`, the
      library's extension point for this).
    - The time: `strftime` of the same second once per second, not once per record.

    A dict logged as the message, or a configuration this project does not use (`defaults`,
    `static_fields`, `timestamp`, `rename_fields_keep_missing`, a renamed extra field), takes
    the library's own path.
    """

    _second_text: tuple[int, str] = (-1, "")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every renamed name is one of the line's own fields (asctime, levelname, name), so
        # no extra field needs a rename lookup.
        self._library_path = bool(
            self.defaults
            or self.static_fields
            or self.timestamp
            or self.rename_fields_keep_missing
            or set(self.rename_fields) - set(self._required_fields)
        )
        # A line made without a record (`line_without_a_record`) knows these of its fields.
        self._required_fields_known = set(self._required_fields) <= {
            "asctime",
            "levelname",
            "name",
            "message",
        }

    def add_fields(
        self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        if message_dict or self._library_path:
            super().add_fields(log_record, record, message_dict)
            return
        attributes = record.__dict__
        skipped = self._skip_fields
        self._fill(
            log_record,
            attributes,
            (
                (key, value)
                for key, value in attributes.items()
                if key not in skipped and not (isinstance(key, str) and key.startswith("_"))
            ),
        )

    def _fill(
        self,
        log_record: dict[str, Any],
        own: Mapping[str, Any],
        extras: Mapping[str, Any] | Iterable[tuple[str, Any]],
    ) -> None:
        """The line's own fields (renamed) from `own`, then the extra fields: the one place
        both paths (`add_fields`, `line_without_a_record`) build a line's fields."""
        rename = self.rename_fields
        for name in self._required_fields:
            log_record[rename.get(name, name)] = own.get(name)
        log_record.update(extras)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt or not self._cached_time():
            return super().formatTime(record, datefmt)
        return self._time_text(record.created, record.msecs)

    def _cached_time(self) -> bool:
        return self.converter is time.gmtime and bool(self.default_msec_format)

    def _time_text(self, created: float, msecs: float) -> str:
        second = int(created)
        seen, text = self._second_text  # one tuple: another thread sees both parts or neither
        if seen != second:
            text = time.strftime(self.default_time_format, time.gmtime(second))
            self._second_text = (second, text)
        return self.default_msec_format % (text, msecs)  # type: ignore[operator]

    def line_without_a_record(
        self, logger: str, level: int, message: str, fields: dict[str, Any], created: float
    ) -> str | None:
        """The line `format` writes for a record of `logger` at `level` with `message` (no
        arguments), made at `created`, with `fields` as its extra fields; None when this
        formatter's configuration needs the record itself (the caller then logs one).

        `fields`' names must be what a record's extra names may be and the line keeps (see
        `log_request`)."""
        if (
            self._library_path
            or self.datefmt
            or not self._cached_time()
            or not self._required_fields_known
        ):
            return None
        # The record's attributes the line's own fields are read from; `msecs` as LogRecord
        # computes it (Python 3.11's logging/__init__.py; a test holds the two to each other).
        own = {
            "asctime": self._time_text(created, int((created - int(created)) * 1000) + 0.0),
            "levelname": logging.getLevelName(level),
            "name": logger,
            "message": message,
        }
        line: dict[str, Any] = {}
        self._fill(line, own, fields)
        return self.serialize_log_record(self.process_log_record(line))


class TurnFlushedHandler(logging.StreamHandler[TextIO]):
    """A StreamHandler whose flush, on a thread that runs an event loop, waits for the end of
    the loop's turn: the access lines of all the requests a turn answers go out in one write
    system call, not one each (a flush per line was a system call per request).

    Off a loop (librdkafka's thread, the CLI, `logging.shutdown` at exit) it flushes at once,
    and that flushes any line a turn left waiting too: lines stay in order. A line waits at
    most for its turn to end (or for the stream's buffer to fill); a process killed
    mid-turn loses that turn's lines, which a flush per line would have written.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._flush_scheduled_on: asyncio.AbstractEventLoop | None = None

    def flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            super().flush()
            return
        if self._flush_scheduled_on is not loop:
            self._flush_scheduled_on = loop
            loop.call_soon(self._flush_turn)

    def write_line(self, line: str) -> None:
        """Write one formatted line as `emit` writes a record's (a line made without one)."""
        with self.lock:  # type: ignore[union-attr]  # StreamHandler always has its lock
            try:
                self.stream.write(line + self.terminator)
                self.flush()
            except RecursionError:
                raise
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": line}))

    def _flush_turn(self) -> None:
        self._flush_scheduled_on = None
        try:
            super().flush()
        except Exception:
            # As a failed flush in `emit` is: reported on stderr by `handleError`. Raised into
            # the loop, its exception handler would log it, and that line's flush fail again,
            # once a turn for as long as stdout is broken.
            self.handleError(_FLUSH_RECORD)


_FLUSH_RECORD = logging.makeLogRecord({"msg": "flushing an event-loop turn's log lines"})


def log_request(fields: dict[str, Any]) -> None:
    """The access log line of one request (fields: request_id, endpoint, status, ...).

    Every request writes one, so when logging is set up as `configure_logging` sets it up (the
    access logger's records reach its stdout handler, and only it, through no filter) the
    line is made without a `LogRecord` and written straight to that handler: the same bytes
    (a property test holds the two paths to each other) at under half of logging's cost per
    line (docs/benchmarks.md, round sixteen). Any other set-up (a test's capture handler, a
    filter, another handler, a field named as a record's attribute) goes through logging.
    """
    if not ACCESS.isEnabledFor(logging.INFO):
        return
    handler = _only_handler_of_access()
    if handler is not None and _plain_names(fields):
        line = handler.formatter.line_without_a_record(  # type: ignore[union-attr]
            ACCESS.name, logging.INFO, "request", fields, time.time()
        )
        if line is not None:
            handler.write_line(line)
            return
    ACCESS.info("request", extra=fields)


def _only_handler_of_access() -> TurnFlushedHandler | None:
    """`configure_logging`'s handler when an access record would reach it and nothing else:
    no filter on the access logger or the handler, and no other handler on the way up."""
    handler = _stdout_handler
    if (
        handler is None
        or ACCESS.filters
        or handler.filters
        or handler.level > logging.INFO
        or not isinstance(handler.formatter, _JsonLines)
    ):
        return None
    found = False
    logger: logging.Logger | None = ACCESS
    while logger is not None:  # as `Logger.callHandlers` walks
        for each in logger.handlers:
            if each is not handler or found:
                return None
            found = True
        logger = logger.parent if logger.propagate else None
    return handler if found else None


# A record's own attribute names, and the two formatting sets: an extra field by one of them
# makes logging raise (`Logger.makeRecord`).
_RECORD_NAMES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_PLAIN_NAMES: set[str] = set()  # extra names seen to be neither those nor private


def _plain_names(fields: dict[str, Any]) -> bool:
    """True when every name of `fields` goes on the line as it is: a string, not a record's
    own attribute, not private (`_…`, which the formatter leaves out)."""
    if fields.keys() <= _PLAIN_NAMES:
        return True
    for name in fields:
        if name not in _PLAIN_NAMES:
            if not isinstance(name, str) or name.startswith("_") or name in _RECORD_NAMES:
                return False
            if len(_PLAIN_NAMES) < 1024:  # bounded: names are the code's, not the caller's
                _PLAIN_NAMES.add(name)
    return True


# librdkafka logs with syslog levels; confluent-kafka maps them before it calls `logger.log`
# (0-2 CRITICAL, 3 ERROR, 4 WARNING, 5-6 INFO, 7 DEBUG: its `log_cb`), so `KafkaLog` receives
# logging levels.

# (facility, words in librdkafka's message, level, plain message): states librdkafka reports
# as warnings but retries through by itself, e.g. the first request to a fresh broker while it
# loads the transaction coordinator (the idempotent producer asks it for a producer id; a
# broker restarted on its old data loads it again).
_TRANSIENT: tuple[tuple[str, str, int, str], ...] = (
    (
        "GETPID",
        "Coordinator load in progress",
        logging.INFO,
        "waiting for a producer id: the broker is still loading its transaction coordinator "
        "(normal just after a broker starts; librdkafka retries)",
    ),
    (
        "GETPID",
        "Coordinator not available",
        logging.INFO,
        "waiting for a producer id: no transaction coordinator is available yet "
        "(normal just after a broker starts; librdkafka retries)",
    ),
)
_THREAD_PREFIX = re.compile(r"^\[thrd:[^\]]*\]:\s*")


def librdkafka_record(level: int, facility: str, text: str) -> tuple[int, str]:
    """The level and the plain message of one librdkafka log line.

    `level` is a logging level (confluent-kafka maps syslog's); a known transient warning is
    lowered to INFO and explained, any other line keeps its level and loses only the
    `[thrd:…]: ` prefix.
    """
    for known_facility, words, lowered, message in _TRANSIENT:
        if facility == known_facility and words in text:
            return min(level, lowered), message
    return level, _THREAD_PREFIX.sub("", text)


class KafkaLog:
    """What confluent-kafka's `logger` setting needs: an object with `log(level, msg, *args)`.

    confluent-kafka calls `log(level, "%s [%s] %s", facility, client_name, message)` from the
    thread serving `poll()`; the line goes to `logger` with the facility, client and raw text
    as fields (`kafka_facility`, `kafka_client`, `kafka_detail`).
    """

    def __init__(self, logger: logging.Logger = LIBRDKAFKA) -> None:
        self.logger = logger

    def log(self, level: int, msg: str, *args: Any) -> None:
        if len(args) != 3:  # not librdkafka's shape: pass it on as it came
            self.logger.log(level, msg, *args)
            return
        facility, client, text = (str(arg) for arg in args)
        level, message = librdkafka_record(level, facility, text)
        if self.logger.isEnabledFor(level):
            self.logger.log(
                level,
                message,
                extra={"kafka_facility": facility, "kafka_client": client, "kafka_detail": text},
            )
