"""The bench's bodies: the keyed variant gives every event of a request its own key."""

from __future__ import annotations

import orjson
from bench import bodies


def test_keyed_batches_carry_one_distinct_key_per_event() -> None:
    for seq in (1, 2):
        body = orjson.loads(
            bodies.template("batch100", keyed=True).replace(b"__SEQ__", b"%d" % seq)
        )
        keys = [event["idempotency_key"] for event in body["events"]]
        assert len(set(keys)) == 100 and all(str(seq) in key for key in keys)


def test_plain_bodies_carry_no_key() -> None:
    for name in bodies.SIZES:
        assert b"idempotency_key" not in bodies.template(name)
