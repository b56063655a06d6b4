"""What the spool does with the server's answer to a batch, written once for both clients.

`plan` is a generator: it yields the events to send, receives the answer (a `BatchResult`, or
the exception the send raised) and decides each event's fate in a `Verdict`. `drive` and
`drive_async` are the only I/O: they call the client's `send_prepared` (which already retries
by the client's `RetryPolicy`, re-sending `sink_unavailable` events with the same keys).

The rule: an event leaves the spool when the server stored it (202, `accepted`), or goes to
the dead letters when the server refused *that event* for good (a per-event rejection other
than `sink_unavailable`; a 400 naming it; a 413 for it alone). Anything about the request or
the service (429, 5xx, no answer, 401/403/415: the key or the setup, not the event) keeps the
event in the spool, to be sent again after a backoff. A 413 or a body-level 400 for several
events splits the batch in halves to find the event at fault.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Union

from audit_ingest_sdk._delivery import RESEND_CODE
from audit_ingest_sdk._errors import AuditIngestError, PayloadTooLargeError, ValidationError
from audit_ingest_sdk._prepare import PreparedEvent
from audit_ingest_sdk._results import BatchItem, BatchResult, FieldError
from audit_ingest_sdk._spool_store import Rejection, SpooledEvent

logger = logging.getLogger("audit_ingest_sdk")

# (`Union`, not `|`: this line runs on Python 3.9.)
Answer = Union[BatchResult, AuditIngestError]  # noqa: UP007
Plan = Generator[list[PreparedEvent], Answer, None]


@dataclass
class Verdict:
    """Each event's fate after one round: stored, refused for good, or to be sent again."""

    delivered: list[SpooledEvent] = field(default_factory=list)
    refused: list[Rejection] = field(default_factory=list)
    kept: list[SpooledEvent] = field(default_factory=list)
    error: AuditIngestError | None = None  # the last request-level failure, if any

    @property
    def retry_after(self) -> float | None:
        """The server's advice (`Retry-After`) from the failure that kept events, if any."""
        value = getattr(self.error, "retry_after", None)
        return float(value) if isinstance(value, (int, float)) else None


def plan(batch: Sequence[SpooledEvent], verdict: Verdict) -> Plan:
    """Send `batch` (splitting it when the server blames its size or one event) into `verdict`."""
    answer = yield [spooled.event for spooled in batch]
    if isinstance(answer, BatchResult):
        _judge_items(batch, answer, verdict)
    elif isinstance(answer, ValidationError) and answer.batch_result is not None:
        _judge_items(batch, answer.batch_result, verdict, answer)  # every event was invalid
    elif isinstance(answer, (PayloadTooLargeError, ValidationError)):
        if len(batch) > 1:
            middle = len(batch) // 2
            yield from plan(batch[:middle], verdict)
            yield from plan(batch[middle:], verdict)
        else:
            verdict.refused.append(_rejection(batch[0], _request_errors(answer), answer))
    else:
        verdict.kept.extend(batch)
        verdict.error = answer


def drive(
    batch: Sequence[SpooledEvent], send: Callable[[list[PreparedEvent]], BatchResult]
) -> Verdict:
    """Run `plan` with a blocking `send` (the sync client's `send_prepared`)."""
    verdict = Verdict()
    steps = plan(batch, verdict)
    events = next(steps)
    while True:
        answer: Answer
        try:
            answer = send(events)
        except AuditIngestError as exc:
            answer = exc
        except Exception as exc:  # a bug or an odd transport: keep the events, say so
            logger.exception("audit-ingest: sending from the spool failed unexpectedly")
            answer = AuditIngestError(f"unexpected error: {exc!r}")
        try:
            events = steps.send(answer)
        except StopIteration:
            return verdict


async def drive_async(
    batch: Sequence[SpooledEvent], send: Callable[[list[PreparedEvent]], Awaitable[BatchResult]]
) -> Verdict:
    """Run `plan` with an async `send` (the async client's `send_prepared`)."""
    verdict = Verdict()
    steps = plan(batch, verdict)
    events = next(steps)
    while True:
        answer: Answer
        try:
            answer = await send(events)
        except AuditIngestError as exc:
            answer = exc
        except Exception as exc:
            logger.exception("audit-ingest: sending from the spool failed unexpectedly")
            answer = AuditIngestError(f"unexpected error: {exc!r}")
        try:
            events = steps.send(answer)
        except StopIteration:
            return verdict


def backoff(failures: int, retry_after: float | None, initial: float, ceiling: float) -> float:
    """Seconds before the next round after `failures` failed rounds in a row.

    The server's `Retry-After` when it sent one (capped by `ceiling`), else full jitter: a
    uniform draw in [0, min(ceiling, initial * 2**(failures - 1))].
    """
    if retry_after is not None:
        return min(retry_after, ceiling)
    return random.uniform(0, min(ceiling, initial * 2 ** max(failures - 1, 0)))


def _judge_items(
    batch: Sequence[SpooledEvent],
    result: BatchResult,
    verdict: Verdict,
    error: AuditIngestError | None = None,
) -> None:
    for item in result.items:
        spooled = batch[item.index]
        if item.accepted:
            verdict.delivered.append(spooled)
        elif _resend(item):
            verdict.kept.append(spooled)
        else:
            verdict.refused.append(_rejection(spooled, item.errors, error))


def _resend(item: BatchItem) -> bool:
    """Not stored, and not the event's fault: the broker did not acknowledge it in time."""
    return bool(item.errors) and all(error.code == RESEND_CODE for error in item.errors)


def _request_errors(error: AuditIngestError) -> tuple[FieldError, ...]:
    if isinstance(error, ValidationError) and error.errors:
        return tuple(error.errors)
    code = "payload_too_large" if isinstance(error, PayloadTooLargeError) else "invalid"
    return (FieldError("", error.message, code),)


def _rejection(
    spooled: SpooledEvent, errors: tuple[FieldError, ...], error: AuditIngestError | None
) -> Rejection:
    return Rejection(
        spooled=spooled,
        errors=errors,
        status=error.status if error is not None else 202,
        request_id=error.request_id if error is not None else None,
    )
