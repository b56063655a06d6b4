"""What the API answers, as typed values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One reason an event was refused: the dotted `field` path, a `message`, a stable `code`.

    Codes include `required`, `type`, `too_long`, `unknown_field`, `timestamp_in_future`, and
    in batch items `sink_unavailable` (not stored: send again) and `sink_rejected` (refused by
    the broker for good).
    """

    field: str
    message: str
    code: str

    @classmethod
    def from_json(cls, raw: Any) -> FieldError:
        """Read one entry of a problem's or batch item's `errors` list (lenient on shape)."""
        if not isinstance(raw, Mapping):
            return cls(field="", message=str(raw), code="invalid")
        return cls(
            field=str(raw.get("field", "")),
            message=str(raw.get("message", "")),
            code=str(raw.get("code", "invalid")),
        )


# A batch's 400 names fields `events[3].actor.id` (`events[3]` for the whole event).
_EVENT_FIELD = re.compile(r"^events\[(\d+)\]\.?(.*)$")


def split_event_field(error: FieldError) -> tuple[int, FieldError] | None:
    """`events[3].actor.id` in a batch's 400 -> (3, the error on `actor.id`); None when the
    error does not name one event (the body or the `events` list as a whole)."""
    match = _EVENT_FIELD.match(error.field)
    if match is None:
        return None
    return int(match.group(1)), FieldError(match.group(2), error.message, error.code)


@dataclass(frozen=True)
class Accepted:
    """`202` for one event: it is durably stored under `event_id` (a UUIDv7)."""

    event_id: str
    received_at: str


@dataclass(frozen=True)
class BatchItem:
    """The outcome of one event of a batch, at its position (`index`) in what was sent.

    `duplicate` is True for an accepted event of which nothing new was stored: it repeats an
    event stored earlier under the same idempotency key (a retry), or an earlier event of the
    same batch with the same key and content. `event_id` is then that event's.
    """

    index: int
    status: str
    idempotency_key: str
    event_id: str | None = None
    errors: tuple[FieldError, ...] = ()
    duplicate: bool = False

    @property
    def accepted(self) -> bool:
        """True when the event is stored."""
        return self.status == "accepted"


@dataclass(frozen=True)
class BatchResult:
    """A batch's outcome: how many events were stored and refused, and each one's outcome.

    `items` follow the order of the events given to `send_batch`. `accepted` counts the
    duplicates too (they are stored, once). A 202 gives one; so does a 400 in which no event
    was valid, as `ValidationError.batch_result` (`accepted` 0).
    """

    accepted: int
    rejected: int
    items: tuple[BatchItem, ...]

    @property
    def rejected_items(self) -> list[BatchItem]:
        """The events that were not stored, with the reasons."""
        return [item for item in self.items if not item.accepted]
