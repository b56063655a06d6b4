"""The bench's bodies: the keyed variant gives every event of a request its own key."""

from __future__ import annotations

import gzip
from typing import Any, cast

import orjson
import pytest
from bench import bodies

from audit_ingest.http.body import decode_content
from audit_ingest.http.parsing import parse_batch, parse_single


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


def test_every_transport_carries_the_same_events_to_the_parser() -> None:
    """What bench.inproc sends over each transport parses, as the function parses it, into
    the template's own events (and CloudEvent origins for the CloudEvents modes)."""
    for name in ("single", "batch100"):
        filled = bodies.template(name).replace(b"__SEQ__", b"7")
        document = orjson.loads(filled)
        events = [document] if name == "single" else document["events"]
        for transport in bodies.TRANSPORTS:
            if transport == "ce-binary" and name != "single":
                with pytest.raises(ValueError, match="one event"):
                    bodies.encode(filled, name, transport, 7)
                continue
            body, headers = bodies.encode(filled, name, transport, 7)
            named = {key.decode(): value.decode() for key, value in headers}
            raw = decode_content(body, named.get("content-encoding"), 10 * 1024 * 1024)
            envelopes = (
                [parse_single(named, raw)]
                if name == "single"
                else parse_batch(named, raw, max_events=1000)
            )
            assert [e.payload for e in envelopes] == events, transport
            ce = transport.startswith("ce-")
            assert all((e.origin is not None) == ce for e in envelopes), transport
            if ce:
                assert len({e.origin.id for e in envelopes if e.origin}) == len(events)


@pytest.mark.parametrize(
    ("name", "transport", "keyed"),
    [
        ("single", "json", False),
        ("single", "json", True),
        ("single", "gzip", False),
        ("single", "ce-binary", False),
        ("batch100", "gzip", False),
        ("batch100", "ce-structured", False),
        ("batch100", "json", True),
    ],
)
def test_generator_requests_fill_to_what_inproc_sends(
    name: str, transport: str, keyed: bool
) -> None:
    """The Go generator's template, once it fills `__SEQ__` (in the body and in every header
    value) and compresses when told, is the request `encode` makes for that number: so
    `make bench`'s paths and `bench.inproc`'s are the same requests."""
    made = bodies.generator_request(name, transport, keyed=keyed)
    seq = "q00000000042"
    body = made.body.replace(b"__SEQ__", seq.encode())
    headers = {k: v.replace("__SEQ__", seq) for k, v in made.headers.items()}
    filled = bodies.template(name, keyed=keyed and name != "single").replace(
        b"__SEQ__", seq.encode()
    )
    expected_body, expected_pairs = bodies.encode(filled, name, transport, seq)
    expected = {k.decode(): v.decode() for k, v in expected_pairs}
    if keyed and name == "single":
        expected["idempotency-key"] = f"bench-{seq}"
    assert headers == expected
    assert made.gzip is (transport == "gzip")
    if made.gzip:
        assert gzip.decompress(expected_body) == body  # the generator compresses `body`
    else:
        assert body == expected_body


def test_every_generator_request_is_new_per_number() -> None:
    """Two numbers give two different retry identities wherever the path has one (else the
    bench would measure the duplicate answer, not the write)."""
    for name, transport, keyed in (
        ("single", "json", True),
        ("single", "ce-binary", False),
        ("batch100", "ce-structured", False),
        ("batch100", "json", True),
    ):
        made = bodies.generator_request(name, transport, keyed=keyed)
        identities = []
        for seq in ("1", "2"):
            raw = made.body.replace(b"__SEQ__", seq.encode())
            named = {k: v.replace("__SEQ__", seq) for k, v in made.headers.items()}
            envelopes = (
                [parse_single(named, raw)]
                if name == "single"
                else parse_batch(named, raw, max_events=1000)
            )
            payloads = [e.payload for e in envelopes]
            assert all(isinstance(p, dict) for p in payloads)
            keys = [
                cast(dict[str, Any], p).get("idempotency_key")
                or named.get("idempotency-key")
                or e.origin
                for p, e in zip(payloads, envelopes, strict=True)
            ]
            assert all(keys), (name, transport)
            identities.append(keys)
        assert not set(map(repr, identities[0])) & set(map(repr, identities[1]))
