"""What a request carries before validation: one envelope per audit event."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CloudEventOrigin:
    """The attributes of the CloudEvent an audit event arrived in (CloudEvents modes only)."""

    id: str
    source: str
    type: str
    time: str | None = None
    subject: str | None = None

    def attributes(self) -> dict[str, str]:
        """The attributes that are set, by name (`id`, `source`, `type`, `time`, `subject`)."""
        present = {"id": self.id, "source": self.source, "type": self.type}
        if self.time is not None:
            present["time"] = self.time
        if self.subject is not None:
            present["subject"] = self.subject
        return present


@dataclass(frozen=True, slots=True)
class Envelope:
    """One audit event as parsed, plus where it came from.

    `payload` is the parsed JSON value (not yet validated); `raw` is the event's original bytes
    when the transport gave them separately (single events), kept for the dead-letter topic.
    """

    payload: object
    raw: bytes | None = None
    origin: CloudEventOrigin | None = None
