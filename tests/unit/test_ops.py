"""The operator tooling's pure parts, and a replay through the real service with fake ports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from audit_ingest.domain.dead_letters import DeadLetter, build_dead_letter, parse_dead_letter
from audit_ingest.errors import FieldError
from audit_ingest.ops.dlq import DlqFilter, ScanStats, inspect, render_inspection, select_oldest
from audit_ingest.ops.keys import parse_duration
from audit_ingest.ops.replay import Replayer, ReplayResult, dry_run, parse_since
from audit_ingest.ports import Delivery
from audit_ingest.settings import Settings
from tests.unit.fakes import FakeIdempotencyStore, FakePublisher

TENANT = "22222222-2222-4222-8222-222222222222"
VALID = orjson.dumps(
    {"actor": {"id": "u-1"}, "action": {"name": "Doc.Viewed"}, "resource": {"type": "d", "id": "1"}}
)
INVALID = orjson.dumps({"actor": {"id": "u-1"}, "action": {"name": "doc.viewed"}})


def letter(
    offset: int,
    value: bytes = VALID,
    *,
    reason: str = "produce_failed",
    tenant: str = TENANT,
    received_at: str = "2026-01-01T00:00:00.000Z",
    partition: int = 0,
) -> DeadLetter:
    record = build_dead_letter(
        value,
        topic="audit.events.dlq.v1",
        reason=reason,
        errors=[FieldError("resource", "resource is required.", "required")],
        tenant_id=tenant,
        request_id=f"req-{offset}",
        received_at=received_at,
        api_key_id="key-1",
    )
    return parse_dead_letter(record.topic, partition, offset, None, record.headers, record.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("3600", 3600), ("90s", 90), ("15m", 900), ("24h", 86_400), ("1h30m", 5400)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "-5", "5x", "h", "1.5h", "1h 30m", "400d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|longer"):
        parse_duration(text)


def test_since_takes_a_time_a_date_or_a_duration() -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert parse_since("2h", now=now) == datetime(2026, 5, 1, 10, tzinfo=UTC)
    assert parse_since("2026-04-30", now=now) == datetime(2026, 4, 30, tzinfo=UTC)
    assert parse_since("2026-04-30T08:00:00+02:00", now=now) == datetime(2026, 4, 30, 6, tzinfo=UTC)
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_since("yesterday", now=now)


def test_dead_letters_read_their_headers() -> None:
    parsed = letter(7, INVALID, reason="validation_failed")
    assert (parsed.reason, parsed.tenant_id, parsed.api_key_id) == (
        "validation_failed",
        TENANT,
        "key-1",
    )
    assert parsed.position == "0@7" and parsed.first_error == "resource/required"
    assert parsed.received() == datetime(2026, 1, 1, tzinfo=UTC)
    damaged = parse_dead_letter("t", 1, 2, 1_700_000_000_000, [("dlq_errors", b"{nope")], b"")
    assert damaged.first_error == "(event)/unreadable" and damaged.reason == ""
    assert damaged.received() == datetime.fromtimestamp(1_700_000_000, UTC)


def test_inspect_counts_and_keeps_the_newest() -> None:
    letters = [
        letter(0, received_at="2026-01-01T00:00:00.000Z"),
        letter(1, INVALID, reason="validation_failed", received_at="2026-01-02T00:00:00.000Z"),
        letter(2, INVALID, reason="validation_failed", received_at="2026-01-03T00:00:00.000Z"),
        letter(3, tenant="other", received_at="2026-01-04T00:00:00.000Z"),
    ]
    result = inspect(letters, DlqFilter(tenant=TENANT), latest=2)
    assert result.matched == 3
    assert result.counts == [("validation_failed", TENANT, 2), ("produce_failed", TENANT, 1)]
    assert [item.offset for item in result.latest] == [2, 1]
    since = DlqFilter(since=datetime(2026, 1, 3, tzinfo=UTC))
    assert inspect(letters, since, latest=5).matched == 2
    lines = render_inspection(
        result, topic="dlq", stats=ScanStats(read=4, partitions=[0]), show_values=False
    )
    assert "3 matching record(s) of 4 read" in lines[0]
    assert not any("Doc.Viewed" in line for line in lines)
    shown = render_inspection(
        result, topic="dlq", stats=ScanStats(read=4, partitions=[0]), show_values=True
    )
    assert any(line.strip().startswith("value: {") for line in shown)


def test_replay_selection_is_oldest_first() -> None:
    letters = [
        letter(offset, received_at=f"2026-01-0{9 - offset}T00:00:00.000Z") for offset in range(5)
    ]
    chosen, matched = select_oldest(letters, DlqFilter(), limit=2)
    assert matched == 5 and [item.offset for item in chosen] == [4, 3]


async def test_replay_through_the_service() -> None:
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    replayer = Replayer(Settings(), publisher=publisher, idempotency=store)
    seen: list[ReplayResult] = []
    good, bad, foreign = letter(5), letter(6, INVALID, reason="validation_failed"), letter(7, b"{")
    report = await replayer.run([good, bad, foreign], seen.append)
    assert [r.status for r in report.results] == ["replayed", "still_invalid", "still_invalid"]
    assert len(seen) == 3
    (record,) = publisher.published
    value = orjson.loads(record.value)
    assert value["request_id"] == "dlq-replay:0:5" and value["tenant_id"] == TENANT
    assert value["received_at"] == "2026-01-01T00:00:00.000Z"
    assert value["processing"]["function"] == "dlq-replay"
    assert publisher.dead_letters == []  # still-invalid records are not dead-lettered again
    assert report.results[2].errors[0].code == "malformed_body"

    again = await replayer.run([good], seen.append)
    assert again.results[0].status == "already_replayed"
    assert again.results[0].event_id == report.results[0].event_id
    assert len(publisher.published) == 1


async def test_replay_stops_when_the_store_is_down_and_reports_broker_failures() -> None:
    store = FakeIdempotencyStore()
    store.down = True
    replayer = Replayer(Settings(), publisher=FakePublisher(), idempotency=store)
    report = await replayer.run([letter(1), letter(2)], lambda _: None)
    assert report.results == [] and report.aborted and "Redis" in report.aborted

    refused = FakePublisher(deliveries=[Delivery(False, "timed out")])
    replayer = Replayer(Settings(), publisher=refused, idempotency=FakeIdempotencyStore())
    (result,) = (await replayer.run([letter(3)], lambda _: None)).results
    assert result.status == "failed" and refused.published == []


async def test_the_dry_run_decides_as_the_replay_does() -> None:
    """Dry run and replay share the pipeline's one decision: a record the dry run would replay
    is replayed, one it calls still invalid is refused by the replay too, for every kind of
    record (valid, invalid, not JSON, too large, a key reused for another event)."""
    store = FakeIdempotencyStore()
    publisher = FakePublisher()
    settings = Settings(max_event_bytes=1024)
    large = orjson.dumps({**orjson.loads(VALID), "context": {"note": "x" * 5000}})
    keyed = orjson.dumps({**orjson.loads(VALID), "idempotency_key": "order-1"})
    reused = orjson.dumps(
        {**orjson.loads(VALID), "idempotency_key": "order-1", "context": {"other": True}}
    )
    letters = [letter(1), letter(2, INVALID), letter(3, b"{"), letter(4, large), letter(5, keyed)]
    dry = await dry_run(settings, letters, lambda _: None, idempotency=store)
    replayer = Replayer(settings, publisher=publisher, idempotency=store)
    real = await replayer.run(letters, lambda _: None)
    expected = {"would_replay": "replayed", "still_invalid": "still_invalid"}
    assert [expected[r.status] for r in dry.results] == [r.status for r in real.results]
    assert [r.status for r in real.results] == [
        "replayed",
        "still_invalid",
        "still_invalid",
        "still_invalid",
        "replayed",
    ]
    assert real.results[3].errors[0].code == "event_too_large"
    # Afterwards both see the same store: replayed records are already replayed, and the key
    # reused for other content is refused by both.
    later = [*letters, letter(6, reused)]
    dry_again = await dry_run(settings, later, lambda _: None, idempotency=store)
    real_again = await replayer.run(later, lambda _: None)
    assert [r.status for r in dry_again.results] == [r.status for r in real_again.results]
    assert real_again.results[5].errors[0].code == "idempotency_key_reused"
    assert len(publisher.published) == 2
