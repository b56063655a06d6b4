"""AuditClient.send_batch: per-event outcomes, keys in each event, resending what was not stored."""

from __future__ import annotations

import pytest
from mock_server import MakeClient, MockServer, field_error, make_event, problem

from audit_ingest_sdk import AuditClient, ServiceUnavailableError, ValidationError

UNAVAILABLE = [field_error("", "sink_unavailable")]


def test_batch_items_follow_the_events_and_carry_their_keys(
    client: AuditClient, server: MockServer
) -> None:
    server.answer(server.rejecting({1: [field_error("resource")]}))
    result = client.send_batch([make_event(i) for i in range(3)])
    (sent,) = server.batches()
    assert (result.accepted, result.rejected) == (2, 1)
    assert [item.index for item in result.items] == [0, 1, 2]
    assert [item.idempotency_key for item in result.items] == [e["idempotency_key"] for e in sent]
    assert len({item.idempotency_key for item in result.items}) == 3
    (rejected,) = result.rejected_items
    assert rejected.index == 1
    assert rejected.errors[0].field == "resource"
    assert rejected.event_id is None
    assert result.items[0].event_id is not None
    assert "idempotency-key" not in server.seen[0].headers


def test_a_503_batch_is_resent_whole_with_the_same_keys(
    client: AuditClient, server: MockServer, sleeps: list[float]
) -> None:
    server.answer(problem(503, retry_after="2"))
    result = client.send_batch([make_event(i) for i in range(4)])
    assert result.accepted == 4
    first, second = server.batch_keys()
    assert first == second
    assert sleeps == [2.0]


def test_events_the_broker_did_not_acknowledge_are_resent_alone(
    client: AuditClient, server: MockServer, sleeps: list[float]
) -> None:
    server.answer(
        server.rejecting({1: UNAVAILABLE, 3: UNAVAILABLE, 4: [field_error("actor.id", "type")]}),
        server.rejecting({1: UNAVAILABLE}),
    )
    result = client.send_batch([make_event(i) for i in range(5)])
    first, second, third = server.batch_keys()
    assert second == [first[1], first[3]]
    assert third == [first[3]]  # index 1 of the second batch
    assert len(sleeps) == 2
    assert [item.status for item in result.items] == [
        "accepted",
        "accepted",
        "accepted",
        "accepted",
        "rejected",
    ]
    assert result.items[4].errors[0].code == "type"
    assert (result.accepted, result.rejected) == (4, 1)


def test_unacknowledged_events_stay_rejected_when_retries_run_out(
    make_client: MakeClient, server: MockServer, sleeps: list[float]
) -> None:
    client = make_client(max_retries=1)
    server.answer(server.rejecting({0: UNAVAILABLE}), problem(503, retry_after="1"))
    result = client.send_batch([make_event(0), make_event(1)])
    assert len(server.seen) == 2
    assert [item.status for item in result.items] == ["rejected", "accepted"]
    assert result.items[0].errors[0].code == "sink_unavailable"


def test_a_batch_without_any_valid_event_raises_validation_error(
    client: AuditClient, server: MockServer
) -> None:
    server.answer(problem(400, errors=[field_error("events[0].actor.id")]))
    with pytest.raises(ValidationError) as raised:
        client.send_batch([make_event()])
    assert raised.value.errors[0].field == "events[0].actor.id"
    assert len(server.seen) == 1


def test_a_batch_that_never_gets_through_raises(
    make_client: MakeClient, server: MockServer, sleeps: list[float]
) -> None:
    client = make_client(max_retries=2)
    server.answer(*[problem(503, retry_after="1")] * 3)
    with pytest.raises(ServiceUnavailableError) as raised:
        client.send_batch([make_event()])
    assert raised.value.attempts == 3
    assert len(set(map(tuple, server.batch_keys()))) == 1
