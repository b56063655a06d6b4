"""Successful answers, shaped exactly as the API contract (docs/api.md, openapi.yaml) says."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from audit_ingest.errors import InvalidEvent
from audit_ingest.service import Accepted, Outcome, Rejected


def single_body(outcome: Outcome, received_at: str) -> dict[str, Any]:
    """`{"event_id", "received_at"}`; a rejected single event is an `InvalidEvent` (400)."""
    if isinstance(outcome, Rejected):
        raise InvalidEvent(list(outcome.errors))
    return {"event_id": outcome.event_id, "received_at": outcome.received_at or received_at}


def batch_body(outcomes: Sequence[Outcome], received_at: str) -> dict[str, Any]:
    """The batch answer, one entry per event by index.

    :raises InvalidEvent: when no event was valid (400), naming every failing field as
        ``events[i].field``.
    """
    items: list[dict[str, Any]] = []
    accepted = 0
    for outcome in outcomes:
        if isinstance(outcome, Accepted):
            accepted += 1
            item: dict[str, Any] = {
                "index": outcome.index,
                "event_id": outcome.event_id,
                "status": "accepted",
            }
            if outcome.duplicate:  # stored earlier, or earlier in this batch: nothing new
                item["duplicate"] = True
            items.append(item)
        else:
            items.append(
                {
                    "index": outcome.index,
                    "status": "rejected",
                    "errors": [error.as_dict() for error in outcome.errors],
                }
            )
    if accepted == 0:
        raise InvalidEvent(
            [
                type(error)(_indexed(outcome.index, error.field), error.message, error.code)
                for outcome in outcomes
                if isinstance(outcome, Rejected)
                for error in outcome.errors
            ]
        )
    return {
        "accepted": accepted,
        "rejected": len(outcomes) - accepted,
        "received_at": received_at,
        "events": items,
    }


def _indexed(index: int, field: str) -> str:
    return f"events[{index}].{field}" if field else f"events[{index}]"
