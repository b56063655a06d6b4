"""Retries are safe: the same key (or CloudEvent source+id) never stores an event twice."""

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from audit_ingest import service as service_module
from audit_ingest.domain.enrichment import RequestContext
from audit_ingest.domain.envelope import CloudEventOrigin, Envelope
from audit_ingest.domain.idempotency import fingerprint, idempotency_key, storage_key
from audit_ingest.domain.principal import Principal
from audit_ingest.domain.records import KafkaRecord
from audit_ingest.errors import SinkUnavailable, Unavailable
from audit_ingest.ports import Delivery, LateDeliveries
from audit_ingest.service import MIN_ACK_WAIT_SECONDS, Accepted, IngestService, Rejected
from tests.unit.fakes import FakeIdempotencyStore, FakePublisher
from tests.unit.samples import make_service, seed_event

NOW = datetime(2024, 12, 5, 10, 1, tzinfo=UTC)
TENANT = Principal("tenant-a", "key-a", ("events:write",), 100)
OTHER = Principal("tenant-b", "key-b", ("events:write",), 100)


def request(n: int = 1) -> RequestContext:
    return RequestContext(request_id=f"req-{n}", received_at=NOW)


def service(
    publisher: FakePublisher, store: FakeIdempotencyStore, ack_timeout: float = 3.0
) -> IngestService:
    return make_service(
        publisher, idempotency=store, ack_timeout=ack_timeout, topic="t", dlq_topic="d"
    )


def test_key_derivation() -> None:
    origin = CloudEventOrigin(id="1", source="/crm", type="t")
    assert idempotency_key(Envelope({}), None) is None
    assert idempotency_key(Envelope({}), "abc") == "key:abc"
    assert idempotency_key(Envelope({}, origin=origin), None) == "ce:/crm\x001"
    assert idempotency_key(Envelope({}, origin=origin), "abc") == "key:abc"  # explicit wins
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert storage_key("t", "x") != storage_key("u", "x")
    assert "{t}" in storage_key("t", "x")  # one hash slot per tenant


async def test_a_retry_returns_the_original_and_stores_nothing_new() -> None:
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    ingest = service(publisher, store)
    first = await ingest.ingest(
        [Envelope(seed_event())], TENANT, request(1), request_idempotency_key="k-1"
    )
    retry = await ingest.ingest(
        [Envelope(seed_event())], TENANT, request(2), request_idempotency_key="k-1"
    )
    assert first == [Accepted(0, "id-1")]
    assert retry == [Accepted(0, "id-1", "2024-12-05T10:01:00.000Z", duplicate=True)]
    assert len(publisher.published) == 1


async def test_the_same_key_in_another_tenant_is_another_event() -> None:
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    ingest = service(publisher, store)
    await ingest.ingest([Envelope(seed_event())], TENANT, request(), request_idempotency_key="k")
    (other,) = await ingest.ingest(
        [Envelope(seed_event())], OTHER, request(), request_idempotency_key="k"
    )
    assert isinstance(other, Accepted) and other.received_at is None
    assert len(publisher.published) == 2


async def test_a_reused_key_for_different_content_is_refused() -> None:
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    ingest = service(publisher, store)
    await ingest.ingest([Envelope(seed_event())], TENANT, request(), request_idempotency_key="k")
    (outcome,) = await ingest.ingest(
        [Envelope(seed_event(actor={"id": "someone-else"}))],
        TENANT,
        request(),
        request_idempotency_key="k",
    )
    assert isinstance(outcome, Rejected)
    assert outcome.errors[0].code == "idempotency_key_reused"
    assert len(publisher.published) == 1


async def test_a_failed_attempt_is_retried_normally_under_the_same_event_id() -> None:
    publisher, store = FakePublisher([Delivery(False, "timed out")]), FakeIdempotencyStore()
    ingest = service(publisher, store)
    with pytest.raises(SinkUnavailable):
        await ingest.ingest(
            [Envelope(seed_event())], TENANT, request(), request_idempotency_key="k"
        )
    publisher.deliveries = None
    (outcome,) = await ingest.ingest(
        [Envelope(seed_event())], TENANT, request(), request_idempotency_key="k"
    )
    # The first attempt may have been written after all (an ambiguous timeout): reusing its
    # event_id makes any such duplicate recognisable downstream.
    assert outcome == Accepted(0, "id-1")
    assert [orjson.loads(r.value)["event_id"] for r in publisher.published] == ["id-1"]


async def test_batch_keys_and_cloudevent_identity() -> None:
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    ingest = service(publisher, store)
    origin = CloudEventOrigin(id="ce-9", source="/crm", type="t")
    batch = [
        Envelope(seed_event(idempotency_key="a")),
        Envelope(seed_event()),
        Envelope(seed_event(), origin=origin),
    ]
    first = await ingest.ingest(batch, TENANT, request())
    again = await ingest.ingest(batch, TENANT, request())
    assert all(isinstance(o, Accepted) for o in first + again)
    # The keyed events come back with their first ids; the unkeyed one is a new event.
    keyed_first = {first[0].event_id, first[2].event_id}  # type: ignore[union-attr]
    keyed_again = {again[0].event_id, again[2].event_id}  # type: ignore[union-attr]
    assert keyed_first == keyed_again
    assert again[1].event_id != first[1].event_id  # type: ignore[union-attr]
    assert len(publisher.published) == 4


async def test_store_down_means_stored_anyway_not_refused() -> None:
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    store.down = True
    outcomes = await service(publisher, store).ingest(
        [Envelope(seed_event())], TENANT, request(), request_idempotency_key="k"
    )
    assert isinstance(outcomes[0], Accepted)
    assert len(publisher.published) == 1


class SlowPublisher(FakePublisher):
    async def publish(
        self,
        records: Sequence[KafkaRecord],
        timeout: float,
        on_late: LateDeliveries | None = None,
    ) -> list[Delivery]:
        await asyncio.sleep(0.2)
        return await super().publish(records, timeout, on_late)


async def test_concurrent_duplicates_store_once_and_agree() -> None:
    publisher, store = SlowPublisher(), FakeIdempotencyStore()
    ingest = service(publisher, store)
    results = await asyncio.gather(
        *(
            ingest.ingest([Envelope(seed_event())], TENANT, request(n), request_idempotency_key="k")
            for n in range(5)
        )
    )
    ids = {outcomes[0].event_id for outcomes in results}  # type: ignore[union-attr]
    assert len(ids) == 1
    assert len(publisher.published) == 1


async def test_a_duplicate_still_in_flight_past_the_deadline_is_503() -> None:
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    store.records[("tenant-a", "key:k")] = ("pending", "id-x", fingerprint(seed_event()))
    with pytest.raises(SinkUnavailable):
        await service(publisher, store, ack_timeout=0.1).ingest(
            [Envelope(seed_event())], TENANT, request(), request_idempotency_key="k"
        )
    assert publisher.published == []


# -- repeats inside one request --------------------------------------------------------------


def keyed(key: str, **changes: object) -> Envelope:
    return Envelope(seed_event(idempotency_key=key, **changes))


async def test_a_repeat_in_one_batch_follows_the_first_copy_without_waiting() -> None:
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    # ack_timeout far beyond the test's own timeout: a wait on the request's own claim (the
    # old behaviour: 11 s, then sink_unavailable) would fail the test, not just slow it.
    outcomes = await service(publisher, store, ack_timeout=600.0).ingest(
        [keyed("k"), keyed("k")], TENANT, request()
    )
    assert outcomes == [Accepted(0, "id-1"), Accepted(1, "id-1", duplicate=True)]
    assert len(publisher.published) == 1
    assert store.records[("tenant-a", "key:k")][0] == "done"


async def test_a_repeat_with_other_content_is_refused_as_key_reuse() -> None:
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    first, second = await service(publisher, store, ack_timeout=600.0).ingest(
        [keyed("k"), keyed("k", resource={"type": "user", "id": "other"})], TENANT, request()
    )
    assert first == Accepted(0, "id-1")
    assert isinstance(second, Rejected)
    assert [e.code for e in second.errors] == ["idempotency_key_reused"]
    assert len(publisher.published) == 1


async def test_a_repeated_cloudevent_source_and_id_is_one_event() -> None:
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    origin = CloudEventOrigin(id="ce-1", source="/crm", type="t")
    outcomes = await service(publisher, store, ack_timeout=600.0).ingest(
        [Envelope(seed_event(), origin=origin)] * 3, TENANT, request()
    )
    assert [o.event_id for o in outcomes if isinstance(o, Accepted)] == ["id-1"] * 3
    assert [o.duplicate for o in outcomes if isinstance(o, Accepted)] == [False, True, True]
    assert len(publisher.published) == 1


async def test_repeats_follow_a_retry_of_a_stored_event() -> None:
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    ingest = service(publisher, store, ack_timeout=600.0)
    await ingest.ingest([keyed("k")], TENANT, request(1))
    again = await ingest.ingest([keyed("k"), keyed("k")], TENANT, request(2))
    stored_at = "2024-12-05T10:01:00.000Z"
    assert again == [
        Accepted(0, "id-1", stored_at, duplicate=True),
        Accepted(1, "id-1", stored_at, duplicate=True),
    ]
    assert len(publisher.published) == 1


async def test_repeats_share_the_first_copys_failure() -> None:
    publisher = FakePublisher([Delivery(False, "timed out")])
    store = FakeIdempotencyStore()
    with pytest.raises(SinkUnavailable):
        await service(publisher, store, ack_timeout=600.0).ingest(
            [keyed("k"), keyed("k")], TENANT, request()
        )


async def test_a_full_batch_of_repeats_stores_each_key_once() -> None:
    """1000 events, 500 keys each sent twice (a client that double-sends a whole buffer)."""
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    envelopes = [keyed(f"k-{n % 500}", context={"n": n % 500}) for n in range(1000)]
    outcomes = await service(publisher, store, ack_timeout=600.0).ingest(
        envelopes, TENANT, request()
    )
    assert all(isinstance(o, Accepted) for o in outcomes)
    ids = [o.event_id for o in outcomes if isinstance(o, Accepted)]
    assert ids[:500] == ids[500:]
    assert len(set(ids)) == 500
    assert len(publisher.published) == 500
    assert [o.duplicate for o in outcomes if isinstance(o, Accepted)] == [False] * 500 + [
        True
    ] * 500


async def test_repeats_are_settled_in_the_request_when_the_store_is_down() -> None:
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    store.down = True
    outcomes = await service(publisher, store).ingest([keyed("k"), keyed("k")], TENANT, request())
    assert outcomes == [Accepted(0, "id-1"), Accepted(1, "id-1", duplicate=True)]
    assert len(publisher.published) == 1


PENDING = Delivery(False, "not acknowledged within 3.0 s", pending=True)


async def settled(store: FakeIdempotencyStore, key: tuple[str, str]) -> tuple[str, ...]:
    """The record once the late settlement (a task on the loop) has run."""
    for _ in range(100):
        if store.records[key][0] != "pending":
            break
        await asyncio.sleep(0)
    return store.records[key]


async def test_a_record_that_outlives_its_request_keeps_its_claim_until_it_lands() -> None:
    publisher, store = FakePublisher([PENDING]), FakeIdempotencyStore()
    ingest = service(publisher, store)
    with pytest.raises(SinkUnavailable):  # 503: the producer still holds the record
        await ingest.ingest(
            [Envelope(seed_event())], TENANT, request(), request_idempotency_key="k"
        )
    key = ("tenant-a", "key:k")
    # Not released for a retry: a retry now would write a second copy beside the first.
    assert store.records[key][:2] == ("pending", "id-1")
    assert store.held == [key]
    assert publisher.on_late is not None
    publisher.on_late({0: Delivery(True)})  # the producer's report, after the 503
    assert (await settled(store, key))[:2] == ("done", "id-1")
    publisher.deliveries = None
    (retry,) = await ingest.ingest(
        [Envelope(seed_event())], TENANT, request(2), request_idempotency_key="k"
    )
    # The retry learns the stored event's id and writes nothing.
    assert isinstance(retry, Accepted) and retry.event_id == "id-1" and retry.duplicate
    assert publisher.published == []


def _resumed() -> float:
    labels = {"result": "resumed"}
    return REGISTRY.get_sample_value("audit_ingest_idempotency_total", labels) or 0.0


async def test_a_record_that_fails_after_its_request_releases_its_claim() -> None:
    before = _resumed()
    publisher, store = FakePublisher([PENDING]), FakeIdempotencyStore()
    ingest = service(publisher, store)
    with pytest.raises(SinkUnavailable):
        await ingest.ingest(
            [Envelope(seed_event())], TENANT, request(), request_idempotency_key="k"
        )
    assert publisher.on_late is not None
    publisher.on_late({0: Delivery(False, "Local: Message timed out")})
    assert (await settled(store, ("tenant-a", "key:k")))[:2] == ("retry", "id-1")
    publisher.deliveries = None
    resumed = _resumed()
    assert resumed == before  # a first attempt is not a resumption
    (retry,) = await ingest.ingest(
        [Envelope(seed_event())], TENANT, request(2), request_idempotency_key="k"
    )
    assert retry == Accepted(0, "id-1")  # written now, under the first attempt's event_id
    assert len(publisher.published) == 1
    # Counted for operators: such a retry may write a second record under that id.
    assert _resumed() == resumed + 1


async def test_in_a_batch_only_the_pending_records_stay_claimed() -> None:
    publisher = FakePublisher([Delivery(True), PENDING, Delivery(False, "queue full")])
    store = FakeIdempotencyStore()
    outcomes = await service(publisher, store).ingest(
        [keyed("a"), keyed("b"), keyed("c")], TENANT, request()
    )
    assert isinstance(outcomes[0], Accepted)
    assert [store.records[("tenant-a", f"key:{k}")][0] for k in "abc"] == [
        "done",
        "pending",
        "retry",
    ]
    assert store.held == [("tenant-a", "key:b")]
    assert publisher.on_late is not None
    publisher.on_late({1: Delivery(True)})
    assert (await settled(store, ("tenant-a", "key:b")))[0] == "done"


async def test_without_a_retry_key_nothing_waits_for_late_reports() -> None:
    publisher, store = FakePublisher([PENDING]), FakeIdempotencyStore()
    with pytest.raises(SinkUnavailable):
        await service(publisher, store).ingest([Envelope(seed_event())], TENANT, request())
    assert publisher.on_late is None and store.records == {} and store.held == []


async def test_waiting_on_another_requests_claim_shares_the_requests_deadline() -> None:
    # "busy" is being stored by another request; "new" is claimed at once. The wait on "busy"
    # uses up the deadline, so "new" gets only the minimum wait: the request never holds its
    # own claims longer than its deadline plus that minimum (their pending TTL counts on it).
    publisher, store = FakePublisher(), FakeIdempotencyStore()
    busy = keyed("busy")
    store.records[("tenant-a", "key:busy")] = ("pending", "id-x", fingerprint(seed_event()))
    outcomes = await service(publisher, store, ack_timeout=0.2).ingest(
        [busy, keyed("new")], TENANT, request()
    )
    assert isinstance(outcomes[0], Rejected) and outcomes[0].errors[0].code == "sink_unavailable"
    assert isinstance(outcomes[1], Accepted)
    assert publisher.timeouts == [MIN_ACK_WAIT_SECONDS]


async def test_the_deadline_runs_from_the_start_of_the_request() -> None:
    # What came before the service (authentication, the rate limit, the body) used 2.9 s of a
    # 3 s deadline: the publish gets the minimum wait, not another 3 s.
    publisher = FakePublisher()
    await service(publisher, FakeIdempotencyStore(), ack_timeout=3.0).ingest(
        [Envelope(seed_event())], TENANT, request(), started=time.monotonic() - 2.9
    )
    assert publisher.timeouts == [MIN_ACK_WAIT_SECONDS]


class FlakySettleStore(FakeIdempotencyStore):
    """Claims work; the first `fail_settles` settlements fail (a breaker tripped by a burst)."""

    def __init__(self, fail_settles: int) -> None:
        super().__init__()
        self.fail_settles = fail_settles

    async def settle(self, *args: Any, **kwargs: Any) -> None:
        if self.fail_settles:
            self.fail_settles -= 1
            raise Unavailable("failed moments ago")
        await super().settle(*args, **kwargs)


async def test_a_refused_settlement_is_tried_again_in_the_background(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service_module, "SETTLE_RETRY_PAUSES", (0.01, 0.01, 0.01))
    publisher, store = FakePublisher([PENDING]), FlakySettleStore(fail_settles=2)
    with pytest.raises(SinkUnavailable):
        await service(publisher, store).ingest(
            [Envelope(seed_event())], TENANT, request(), request_idempotency_key="k"
        )
    for _ in range(100):  # the third try holds the claim
        if store.held:
            break
        await asyncio.sleep(0.01)
    assert store.held == [("tenant-a", "key:k")] and store.fail_settles == 0


async def test_settlement_gives_up_after_its_retries(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(service_module, "SETTLE_RETRY_PAUSES", (0.01, 0.01))
    publisher, store = FakePublisher(), FlakySettleStore(fail_settles=10)
    (outcome,) = await service(publisher, store).ingest(
        [Envelope(seed_event())], TENANT, request(), request_idempotency_key="k"
    )
    assert isinstance(outcome, Accepted)
    for _ in range(100):
        if "left to expire" in caplog.text:
            break
        await asyncio.sleep(0.01)
    assert "1 claim(s) left to expire" in caplog.text
    assert store.fail_settles == 7  # the first try and two retries, then nothing more
    assert store.records[("tenant-a", "key:k")][0] == "pending"  # expires on its own
