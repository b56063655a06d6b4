"""The verifier fails on doctored ledgers and record sets (no services needed).

A harness whose checker never fails proves nothing: each invariant is broken here on purpose
and the gate must refuse it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest

from audit_ingest.settings import Settings
from tests.fault import replay
from tests.fault.ledger import (
    Attempt,
    EventSpec,
    ItemResult,
    Ledger,
    Outcome,
    content_hash,
)
from tests.fault.loadgen import KEEPALIVE_S
from tests.fault.verifier import (
    NEW_EVENT_ID,
    Record,
    Verdict,
    check_gate,
    keeps_claims,
    max_gap,
    percentile,
    verify,
)

TENANT = "11111111-1111-4111-8111-111111111111"
OTHER = "22222222-2222-4222-8222-222222222222"


def body(marker: str) -> dict[str, object]:
    return {
        "actor": {"id": "u-1", "type": "user"},
        "action": {"name": "doc.viewed"},
        "resource": {"type": "doc", "id": "d-1"},
        "result": {"success": True},
        "context": {"marker": marker},
    }


def spec(marker: str, *, expect_reject: bool = False) -> EventSpec:
    return EventSpec(
        marker=marker,
        idempotency_key=f"idem-{marker}",
        tenant=TENANT,
        key_label="k0",
        kind="single",
        expect_reject=expect_reject,
        content=content_hash(body(marker)),
    )


def attempt(marker: str, outcome: Outcome, at: float, event_id: str | None = None) -> Attempt:
    status = {
        Outcome.ACK: 202,
        Outcome.REJECT: 400,
        Outcome.AMBIGUOUS: 503,
        Outcome.THROTTLED: 429,
        Outcome.REFUSED: None,
    }[outcome]
    return Attempt(
        kind="single",
        sent=at,
        done=at + 0.01,
        status=status,
        items=[ItemResult(marker, outcome, event_id)],
    )


def record(marker: str, event_id: str, offset: int, partition: int = 0, **changes: Any) -> Record:
    base = Record(
        partition=partition,
        offset=offset,
        key=TENANT,
        event_id=event_id,
        ce_id=event_id,
        tenant=TENANT,
        marker=marker,
        content=content_hash(body(marker)),
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def honest() -> tuple[Ledger, list[Record]]:
    """a: acked; b: rejected (400); c: ambiguous, retried, acked, stored twice; d: invalid."""
    ledger = Ledger(run="unit", load_started=0.0, load_ended=10.0)
    for marker in ("a", "b", "c"):
        ledger.add_event(spec(marker))
    ledger.add_event(spec("d", expect_reject=True))
    ledger.record(attempt("a", Outcome.ACK, 1.0, "id-a"))
    ledger.record(attempt("b", Outcome.REJECT, 2.0))
    ledger.record(attempt("c", Outcome.AMBIGUOUS, 3.0))
    ledger.record(attempt("c", Outcome.ACK, 5.0, "id-c"))
    ledger.record(attempt("d", Outcome.REJECT, 6.0))
    records = [record("a", "id-a", 0), record("c", "id-c", 1), record("c", "id-c", 2)]
    return ledger, records


def test_an_honest_run_passes_and_counts_duplicates(honest: tuple[Ledger, list[Record]]) -> None:
    ledger, records = honest
    verdict = verify(ledger, records)
    check_gate(verdict, strict_duplicates=True)
    assert verdict.ok
    assert (verdict.acked, verdict.rejected, verdict.ambiguous) == (2, 2, 1)
    assert verdict.duplicates == verdict.duplicates_same_event_id == 1
    assert verdict.unexplained_duplicates == 0
    assert verdict.unresolved == 0


def _fails(verdict: Verdict, invariant: str) -> None:
    assert not verdict.ok
    assert any(name.startswith(invariant) for name in verdict.violations), verdict.violations
    with pytest.raises(AssertionError, match=invariant):
        check_gate(verdict, strict_duplicates=False)


def test_a_lost_ack_fails(honest: tuple[Ledger, list[Record]]) -> None:
    ledger, records = honest
    verdict = verify(ledger, [r for r in records if r.marker != "a"])
    assert verdict.lost == 1
    _fails(verdict, "I1")


def test_an_ack_stored_under_another_event_id_is_lost(honest: tuple[Ledger, list[Record]]) -> None:
    ledger, records = honest
    records[0] = record("a", "id-other", 0)
    verdict = verify(ledger, records)
    assert verdict.lost == 1
    _fails(verdict, "I1")


def test_a_phantom_fails(honest: tuple[Ledger, list[Record]]) -> None:
    ledger, records = honest
    verdict = verify(ledger, [*records, record("never-sent", "id-x", 3)])
    assert verdict.phantoms == 1
    _fails(verdict, "I2")


def test_an_unreadable_record_is_a_phantom(honest: tuple[Ledger, list[Record]]) -> None:
    ledger, records = honest
    garbage = Record.parse(0, 3, b"k", b"not json", [])
    verdict = verify(ledger, [*records, garbage])
    assert verdict.phantoms == 1
    _fails(verdict, "I2")


def test_a_stored_rejection_fails(honest: tuple[Ledger, list[Record]]) -> None:
    ledger, records = honest
    verdict = verify(ledger, [*records, record("b", "id-b", 3)])
    assert verdict.written_rejections == 1
    _fails(verdict, "I3")


def test_an_acknowledged_invalid_event_fails(honest: tuple[Ledger, list[Record]]) -> None:
    ledger, records = honest
    ledger.record(attempt("d", Outcome.ACK, 7.0, "id-d"))
    verdict = verify(ledger, [*records, record("d", "id-d", 3)])
    assert verdict.written_rejections == 1
    _fails(verdict, "I3")


def test_a_duplicate_without_ambiguity_is_reported_and_fails_strict_mode(
    honest: tuple[Ledger, list[Record]],
) -> None:
    ledger, records = honest
    verdict = verify(ledger, [*records, record("a", "id-a", 3)])
    assert verdict.unexplained_duplicates == 1
    assert "I4 unexplained duplicate" in verdict.violations
    check_gate(verdict, strict_duplicates=False)  # counted and reported, not gated
    with pytest.raises(AssertionError, match="I4"):
        check_gate(verdict, strict_duplicates=True)


def test_strict_duplicates_are_the_default(
    honest: tuple[Ledger, list[Record]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, records = honest
    verdict = verify(ledger, [*records, record("a", "id-a", 3)])
    monkeypatch.delenv("FAULT_STRICT_DUPLICATES", raising=False)
    with pytest.raises(AssertionError, match="I4 unexplained"):
        check_gate(verdict)
    monkeypatch.setenv("FAULT_STRICT_DUPLICATES", "0")  # report only
    check_gate(verdict)


def test_a_retried_event_stored_under_a_new_event_id_fails_where_claims_are_kept(
    honest: tuple[Ledger, list[Record]],
) -> None:
    # c was ambiguous and retried, so a second copy is explained; but the retry must reuse the
    # first attempt's event_id unless its claim was lost (Redis down or stalled).
    ledger, records = honest
    doubled = [records[0], record("c", "id-c", 1), record("c", "id-other", 2)]
    verdict = verify(ledger, doubled)
    assert verdict.unexplained_duplicates == 0
    assert verdict.duplicates == 1 and verdict.duplicates_new_event_id == 1
    check_gate(verdict, strict_duplicates=True)  # a fault that may take claims: reported
    check_gate(verdict, strict_duplicates=False, claims_kept=True)  # report-only mode
    with pytest.raises(AssertionError, match="new event_id"):
        check_gate(verdict, strict_duplicates=True, claims_kept=True)
    # The honest run's duplicate shares its event_id: nothing to report.
    assert verify(*honest).duplicates_new_event_id == 0


def test_a_copy_stored_without_an_event_id_is_reported_not_a_crash(
    honest: tuple[Ledger, list[Record]],
) -> None:
    # The report sorted the copies' event_ids: a None among strings raised TypeError, so the
    # gate died on exactly the run it had to report.
    ledger, records = honest
    doubled = [records[0], record("c", "id-c", 1), dataclasses.replace(records[2], event_id=None)]
    verdict = verify(ledger, doubled)
    assert verdict.duplicates_new_event_id == 1
    with pytest.raises(AssertionError, match="new event_id"):
        check_gate(verdict, strict_duplicates=True, claims_kept=True)
    assert any("'None', 'id-c'" in detail for detail in verdict.violations[NEW_EVENT_ID])


def test_which_runs_keep_their_claims() -> None:
    assert keeps_claims("leader_kill", "")
    assert not keeps_claims("redis_down", "")
    assert not keeps_claims("redis_pause", "")
    # A killed function's claims pass to the retries that take them over, under their ids.
    assert keeps_claims("function_kill", "")
    assert keeps_claims("function_sigterm", "")
    # A store call that failed under load took a claim too.
    assert not keeps_claims("leader_kill", '{"message":"idempotency store unavailable; 3 ..."}')


def test_wrong_tenant_or_content_fails(honest: tuple[Ledger, list[Record]]) -> None:
    ledger, records = honest
    changes: list[dict[str, Any]] = [
        {"tenant": OTHER},
        {"key": OTHER},
        {"content": "x"},
        {"ce_id": "other"},
    ]
    for change in changes:
        doctored = [record("a", "id-a", 0, **change), *records[1:]]
        verdict = verify(ledger, doctored)
        assert verdict.integrity_errors == 1, change
        _fails(verdict, "I5")


def test_offsets_going_backwards_fail(honest: tuple[Ledger, list[Record]]) -> None:
    ledger, records = honest
    verdict = verify(ledger, [records[1], records[0], records[2]])
    assert verdict.offset_errors == 1
    _fails(verdict, "I6")


def test_unresolved_events_are_counted_not_hidden(honest: tuple[Ledger, list[Record]]) -> None:
    ledger, records = honest
    ledger.add_event(spec("e"))
    ledger.record(attempt("e", Outcome.AMBIGUOUS, 8.0))
    verdict = verify(ledger, records)
    assert verdict.unresolved == 1
    with pytest.raises(AssertionError, match="unresolved"):
        check_gate(verdict)
    check_gate(verdict, allow_unresolved=True)


def test_ledger_round_trips_through_jsonl(
    honest: tuple[Ledger, list[Record]], tmp_path: Path
) -> None:
    ledger, records = honest
    ledger.mark("fault", 4.0)
    ledger.dump(tmp_path / "ledger.jsonl")
    again = Ledger.load(tmp_path / "ledger.jsonl")
    assert again.events == ledger.events
    assert again.attempts == ledger.attempts
    assert again.marks == {"fault": 4.0}
    assert verify(again, records).summary() == verify(ledger, records).summary()


def test_figures() -> None:
    assert max_gap([2.0, 3.0, 9.0], 0.0, 10.0) == pytest.approx(6.0)
    assert max_gap([], 0.0, 10.0) == pytest.approx(10.0)
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0


def test_replay_reads_what_the_harness_keeps(
    honest: tuple[Ledger, list[Record]], tmp_path: Path
) -> None:
    ledger, records = honest
    ledger.dump(tmp_path / "ledger.jsonl")
    (tmp_path / "records.jsonl").write_bytes(
        b"".join(orjson.dumps(r.as_json()) + b"\n" for r in records)
    )
    assert replay.main([str(tmp_path)]) == 0
    (tmp_path / "records.jsonl").write_bytes(orjson.dumps(records[1].as_json()) + b"\n")
    assert replay.main([str(tmp_path)]) == 1  # a's record is gone: lost


def test_the_generator_retires_idle_connections_before_the_functions_do() -> None:
    """A pooled connection the server closes first is a reset nobody caused (the keep-alive
    race); the generator's expiry stays below the functions' keep-alive."""
    functions_keepalive = Settings.model_fields["http_keepalive_seconds"].default
    assert functions_keepalive > KEEPALIVE_S
