"""AuditClient.send_batch: per-event outcomes, keys in each event, resending what was not stored."""

from __future__ import annotations

import httpx
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


def test_a_batch_without_any_valid_event_gives_its_reasons_as_a_batch_result(
    client: AuditClient, server: MockServer
) -> None:
    """The 400 carries the shape of a 202 (`batch_result`): one loop serves both answers."""
    server.answer(
        problem(
            400,
            errors=[
                field_error("events[0].actor.id", "type"),
                field_error("events[1]", "event_too_large"),
                field_error("events[0].resource"),
            ],
        )
    )
    with pytest.raises(ValidationError) as raised:
        client.send_batch([make_event(0), make_event(1)])
    result = raised.value.batch_result
    assert result is not None
    (sent,) = server.batch_keys()
    assert (result.accepted, result.rejected) == (0, 2)
    assert [item.idempotency_key for item in result.rejected_items] == sent
    assert [[(e.field, e.code) for e in item.errors] for item in result.rejected_items] == [
        [("actor.id", "type"), ("resource", "required")],
        [("", "event_too_large")],
    ]
    assert {item.status for item in result.items} == {"rejected"}
    assert raised.value.errors[0].field == "events[0].actor.id"  # as before


@pytest.mark.parametrize(
    "errors",
    [
        [field_error("events", "too_short")],  # the body as a whole
        [field_error("", "malformed_body")],
        [field_error("events[0].actor.id")],  # event 1 has no reason: not "no event valid"
        [field_error("events[0].actor.id"), field_error("events[7].actor.id")],  # not sent
    ],
)
def test_a_400_that_does_not_name_every_event_has_no_batch_result(
    client: AuditClient, server: MockServer, errors: list[dict[str, str]]
) -> None:
    server.answer(problem(400, errors=errors))
    with pytest.raises(ValidationError) as raised:
        client.send_batch([make_event(0), make_event(1)])
    assert raised.value.batch_result is None


def test_a_single_event_400_has_no_batch_result(client: AuditClient, server: MockServer) -> None:
    server.answer(problem(400, errors=[field_error("actor.id")]))
    with pytest.raises(ValidationError) as raised:
        client.send(make_event())
    assert raised.value.batch_result is None


def test_duplicates_in_a_batch_answer_are_marked(client: AuditClient, server: MockServer) -> None:
    """`"duplicate": true` (a retry, or a repeat of a retry key in one batch) reaches the item."""
    server.answer(
        httpx.Response(
            202,
            json={
                "accepted": 3,
                "rejected": 1,
                "received_at": "2024-12-05T10:00:00.123Z",
                "events": [
                    {
                        "index": 0,
                        "event_id": "0192d4e5-0000-7000-8000-000000000001",
                        "status": "accepted",
                    },
                    {
                        "index": 1,
                        "event_id": "0192d4e5-0000-7000-8000-000000000001",
                        "status": "accepted",
                        "duplicate": True,
                    },
                    {
                        "index": 2,
                        "status": "rejected",
                        "duplicate": True,
                        "errors": [field_error("", "idempotency_key_reused")],
                    },
                    {
                        "index": 3,
                        "event_id": "0192d4e5-0000-7000-8000-000000000002",
                        "status": "accepted",
                        "duplicate": "yes",
                    },
                ],
            },
        )
    )
    same = make_event(0, idempotency_key="k-1")
    result = client.send_batch([same, same, make_event(2, idempotency_key="k-1"), make_event(3)])
    assert [item.duplicate for item in result.items] == [False, True, False, False]
    assert result.items[1].event_id == result.items[0].event_id
    assert (result.accepted, result.rejected) == (3, 1)


def test_a_batch_that_never_gets_through_raises(
    make_client: MakeClient, server: MockServer, sleeps: list[float]
) -> None:
    client = make_client(max_retries=2)
    server.answer(*[problem(503, retry_after="1")] * 3)
    with pytest.raises(ServiceUnavailableError) as raised:
        client.send_batch([make_event()])
    assert raised.value.attempts == 3
    assert len(set(map(tuple, server.batch_keys()))) == 1
