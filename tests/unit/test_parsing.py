import base64

import orjson
import pytest

from audit_ingest.errors import MalformedBody, UnsupportedMediaType
from audit_ingest.http.parsing import parse_batch, parse_single
from tests.unit.samples import seed_event

EVENT = seed_event()
BODY = orjson.dumps(EVENT)
CE_HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "ce-1",
    "ce-source": "/crm",
    "ce-type": "com.crm.user",
    "content-type": "application/json",
}


def structured(**changes: object) -> dict[str, object]:
    document: dict[str, object] = {
        "specversion": "1.0",
        "id": "ce-1",
        "source": "/crm",
        "type": "com.crm.user",
        "datacontenttype": "application/json",
        "data": EVENT,
    }
    document.update(changes)
    return document


def test_plain_json_keeps_raw_bytes() -> None:
    envelope = parse_single({"content-type": "application/json; charset=utf-8"}, BODY)
    assert envelope.payload == EVENT and envelope.raw == BODY and envelope.origin is None


def test_binary_cloudevent() -> None:
    envelope = parse_single({**CE_HEADERS, "ce-time": "2024-12-05T10:00:00Z"}, BODY)
    assert envelope.payload == EVENT
    assert envelope.origin is not None
    assert (envelope.origin.id, envelope.origin.source, envelope.origin.type) == (
        "ce-1",
        "/crm",
        "com.crm.user",
    )
    assert envelope.origin.time == "2024-12-05T10:00:00Z"


def test_binary_cloudevent_missing_attributes_is_400() -> None:
    with pytest.raises(MalformedBody, match="CloudEvent"):
        parse_single({"ce-specversion": "1.0", "content-type": "application/json"}, BODY)


def test_structured_cloudevent_and_base64_data() -> None:
    headers = {"content-type": "application/cloudevents+json"}
    envelope = parse_single(headers, orjson.dumps(structured()))
    assert envelope.payload == EVENT and envelope.origin is not None
    encoded = base64.b64encode(BODY).decode()
    document = structured(data_base64=encoded)
    del document["data"]
    assert parse_single(headers, orjson.dumps(document)).payload == EVENT


def test_structured_cloudevent_must_carry_json() -> None:
    with pytest.raises(MalformedBody, match="datacontenttype"):
        parse_single(
            {"content-type": "application/cloudevents+json"},
            orjson.dumps(structured(datacontenttype="text/plain")),
        )


@pytest.mark.parametrize(
    "content_type", ["text/plain", "", "application/xml", "application/cloudevents-batch+json"]
)
def test_single_refuses_other_media_types(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        parse_single({"content-type": content_type}, BODY)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"a": NaN}',
        b"\xff\xfe",
        b"[" * 5000 + b"]" * 5000,
        b'{"n": 1' + b"0" * 400 + b"}",
    ],
)
def test_hostile_bodies_are_malformed_not_crashes(body: bytes) -> None:
    with pytest.raises(MalformedBody):
        parse_single({"content-type": "application/json"}, body)


def test_plain_batch() -> None:
    body = orjson.dumps({"events": [EVENT, {"bad": 1}]})
    envelopes = parse_batch({"content-type": "application/json"}, body, max_events=10)
    assert [e.payload for e in envelopes] == [EVENT, {"bad": 1}]


@pytest.mark.parametrize(
    "document",
    [
        {"events": []},
        {"events": [EVENT] * 11},
        {"events": EVENT},
        [EVENT],
        {"events": [EVENT], "extra": 1},
    ],
)
def test_batch_shape_and_count_limits(document: object) -> None:
    with pytest.raises(MalformedBody):
        parse_batch({"content-type": "application/json"}, orjson.dumps(document), max_events=10)


def test_batched_cloudevents() -> None:
    body = orjson.dumps([structured(id="a"), structured(id="b")])
    envelopes = parse_batch(
        {"content-type": "application/cloudevents-batch+json"}, body, max_events=10
    )
    assert [e.origin.id for e in envelopes if e.origin] == ["a", "b"]


def test_batched_cloudevents_name_the_bad_index() -> None:
    body = orjson.dumps([structured(), {"specversion": "1.0", "data": EVENT}])
    with pytest.raises(MalformedBody, match=r"\[1\]"):
        parse_batch({"content-type": "application/cloudevents-batch+json"}, body, max_events=10)


def test_batch_endpoint_takes_one_binary_or_structured_cloudevent() -> None:
    assert len(parse_batch(CE_HEADERS, BODY, max_events=10)) == 1
    body = orjson.dumps(structured())
    assert (
        len(parse_batch({"content-type": "application/cloudevents+json"}, body, max_events=10)) == 1
    )


@pytest.mark.parametrize("missing", ["id", "specversion", "source", "type"])
def test_structured_cloudevent_requires_its_attributes(missing: str) -> None:
    document = structured()
    del document[missing]
    with pytest.raises(MalformedBody, match=missing) as caught:
        parse_single({"content-type": "application/cloudevents+json"}, orjson.dumps(document))
    assert caught.value.field == missing


def test_binary_cloudevent_names_the_missing_headers() -> None:
    headers = {"ce-specversion": "1.0", "ce-source": "/crm", "content-type": "application/json"}
    with pytest.raises(MalformedBody, match="ce-id, ce-type") as caught:
        parse_single(headers, BODY)
    assert caught.value.field == "ce-id"


@pytest.mark.parametrize("time", ["yesterday", 12, "2024-12-05"])
def test_cloudevent_time_must_be_rfc3339(time: object) -> None:
    with pytest.raises(MalformedBody, match="time"):
        parse_single(
            {"content-type": "application/cloudevents+json"}, orjson.dumps(structured(time=time))
        )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"actor": {"id": "a"}, "actor": {"id": "mallory"}}', "appears twice"),
        (b'{"context": {"n": 18446744073709551616}}', "beyond 64 bits"),
        (b'{"context": {"n": -9223372036854775809}}', "beyond 64 bits"),
        (b'{"context": {"n": 1' + b"0" * 300 + b"}}", "beyond 64 bits"),
        (b'{"context": {"n": 1' + b"0" * 5000 + b"}}", "not valid JSON"),  # orjson: infinity
    ],
)
def test_ambiguous_json_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(MalformedBody, match=message):
        parse_single({"content-type": "application/json"}, body)


def test_64_bit_integers_are_kept_exact() -> None:
    body = b'{"context": {"max": 18446744073709551615, "min": -9223372036854775808}}'
    envelope = parse_single({"content-type": "application/json"}, body)
    assert envelope.payload == {"context": {"max": 2**64 - 1, "min": -(2**63)}}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"specversion": ["1.0"]}, "specversion"),
        ({"specversion": "0.3"}, "specversion"),
        ({"id": 7}, "id"),
        ({"datacontenttype": 5}, "datacontenttype"),
        ({"datacontenttype": {}}, "datacontenttype"),
    ],
)
def test_structured_cloudevent_attribute_types(changes: dict[str, object], field: str) -> None:
    with pytest.raises(MalformedBody) as caught:
        parse_single(
            {"content-type": "application/cloudevents+json"}, orjson.dumps(structured(**changes))
        )
    assert caught.value.field == field


@pytest.mark.parametrize("encoded", ["é", 12, "bm90IGpzb24=", "e30gZXh0cmE="])
def test_bad_data_base64_is_400(encoded: object) -> None:
    document = structured(data_base64=encoded)
    del document["data"]
    with pytest.raises(MalformedBody, match="data_base64"):
        parse_single({"content-type": "application/cloudevents+json"}, orjson.dumps(document))


def test_binary_mode_accepts_only_specversion_1() -> None:
    with pytest.raises(MalformedBody, match=r"1\.0"):
        parse_single({**CE_HEADERS, "ce-specversion": "0.3"}, BODY)
