"""Request bodies to envelopes: plain JSON and the three CloudEvents HTTP modes.

One JSON parse per body, by orjson (strict: no NaN/Infinity, valid UTF-8 only, integers within
64 bits, nesting at most 1024 deep, so a hostile body is a clean 400 and never a RecursionError).
A structured CloudEvent's attributes are checked here and, when every attribute name is in lower
case (as the spec writes them), read straight from the document: the CloudEvents SDK's reading
(v1 API: `cloudevents.http.from_dict`, 3 µs an event) would give back the same values, since
each check it makes is made here first. A name in any other case still goes through the SDK,
which reads names case-insensitively; tests/hostile/test_structured_cloudevent.py holds the two
readings to the same answers. A binary-mode CloudEvent's are its `ce-*` headers, read
here: the SDK's `from_http` cost 48 µs a request (a sixth of a whole single event) to give back
the same header values, and let a `ce-extensions` header crash it (a 500 for a client's
error). tests/hostile/test_binary_cloudevent.py holds the two to the same attributes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import orjson
from cloudevents import exceptions as ce_errors
from cloudevents.http import from_dict

from audit_ingest.domain.envelope import CloudEventOrigin, Envelope
from audit_ingest.domain.timestamps import parse_rfc3339
from audit_ingest.errors import MalformedBody, UnsupportedMediaType

JSON = "application/json"
CE_STRUCTURED = "application/cloudevents+json"
CE_BATCH = "application/cloudevents-batch+json"
SINGLE_MEDIA_TYPES = (JSON, CE_STRUCTURED)
BATCH_MEDIA_TYPES = (JSON, CE_STRUCTURED, CE_BATCH)


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_binary_cloudevent(headers: Mapping[str, str]) -> bool:
    return "ce-specversion" in headers


def parse_single(headers: Mapping[str, str], body: bytes) -> Envelope:
    """Parse the body of `POST /v1/events`.

    :param headers: request headers, names lower-cased.
    :raises UnsupportedMediaType: for anything but JSON, a structured or a binary CloudEvent.
    :raises MalformedBody: for bodies that are not JSON or not a valid CloudEvent.
    """
    kind = media_type(headers.get("content-type"))
    if is_binary_cloudevent(headers):
        return _binary_cloudevent(headers, body, kind)
    if kind == JSON:
        return Envelope(payload=_loads(body), raw=body)
    if kind == CE_STRUCTURED:
        return _structured_cloudevent(_loads(body), "")
    raise UnsupportedMediaType(kind, SINGLE_MEDIA_TYPES)


def parse_batch(headers: Mapping[str, str], body: bytes, *, max_events: int) -> list[Envelope]:
    """Parse the body of `POST /v1/events/batch` into 1..max_events envelopes.

    Plain JSON is ``{"events": [...]}``; batched CloudEvents are a JSON array of structured
    CloudEvents; a single binary or structured CloudEvent is a batch of one.
    """
    kind = media_type(headers.get("content-type"))
    if is_binary_cloudevent(headers):
        return [_binary_cloudevent(headers, body, kind)]
    if kind == CE_STRUCTURED:
        return [_structured_cloudevent(_loads(body), "")]
    if kind == JSON:
        document = _loads(body)
        if not isinstance(document, dict) or set(document) != {"events"}:
            raise MalformedBody(
                'The batch body must be a JSON object with one key, "events": {"events": [ ... ]}.',
                field="events",
            )
        items = document["events"]
        _check_count(items, max_events, "events")
        return [Envelope(payload=item) for item in items]
    if kind == CE_BATCH:
        items = _loads(body)
        _check_count(items, max_events, "")
        return [_structured_cloudevent(item, f"[{index}]") for index, item in enumerate(items)]
    raise UnsupportedMediaType(kind, BATCH_MEDIA_TYPES)


def _check_count(items: object, max_events: int, field: str) -> None:
    if not isinstance(items, list):
        raise MalformedBody(f"{field or 'The body'} must be a JSON array of events.", field=field)
    if not 1 <= len(items) <= max_events:
        raise MalformedBody(
            f"A batch holds 1 to {max_events} events; this one has {len(items)}.", field=field
        )


def _loads(body: bytes) -> Any:
    if not body:
        raise MalformedBody("The request body is empty; send a JSON document.")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"The body is not valid JSON: {exc}.") from None
    if not plainly_unambiguous(body, document):
        refuse_ambiguous_json(body)
    return document


# Every digit -> "0", every other byte -> " ": a run of 19 digits becomes 19 zeros.
_DIGIT_RUNS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_NINETEEN_DIGITS = b"0" * 19


def plainly_unambiguous(body: bytes, document: Any) -> bool:
    """True when orjson's one parse is already exact: no duplicate key, no integer past 64 bits.

    The usual body needs no second, validating parse (`refuse_ambiguous_json`, about 3.5x
    orjson's time: 9% of a batch's CPU). Cheap, exact tests over bytes:

    - a body that is exactly orjson's writing of what it parsed (compact JSON, as our SDK,
      `JSON.stringify` and Go write it) lost nothing: the same text holds the same keys, and
      an integer orjson had rounded to a float, or could not write back (past 64 bits), would
      read differently. One comparison instead of the scans below (1.1 µs an event of a batch);
    - integers: an integer of at most 18 digits is within 64 bits; a run of 19 digits anywhere
      (even inside a string) sends the body to the full check;
    - duplicate keys: outside strings every `:` separates a key from its value, and inside them
      a `:` is a literal `:` unless written `\\u003a` (a body with `\\u` goes to the full check).
      So the body's `:` count is its keys plus the `:` in its strings, and orjson's output of
      what it parsed (keys, then strings verbatim) has the same count exactly when no key was
      dropped, since a duplicate key loses itself and the value it carried.
    """
    try:
        parsed = orjson.dumps(document)
    except orjson.JSONEncodeError:  # deeper than orjson writes: the full check decides
        return False
    if parsed == body:
        return True
    if body.find(b"\\") >= 0 and b"\\u" in body:
        return False
    if _NINETEEN_DIGITS in body.translate(_DIGIT_RUNS):
        return False
    return body.count(b":") == parsed.count(b":")


class _Ambiguous(ValueError):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Ambiguous(f"The key {key!r} appears twice in one object.")
            seen.add(key)
    return document


def _int64(text: str) -> int:
    # Past 20 digits int() itself gets slow (and past 4,300 Python refuses); no 64-bit
    # integer is that long anyway.
    value = int(text) if len(text) <= 21 else None
    if value is None or not -(2**63) <= value < 2**64:
        raise _Ambiguous(
            f"The number {text[:24]}{'...' if len(text) > 24 else ''} is beyond "
            "64 bits; send it as a string."
        )
    return value


def refuse_ambiguous_json(body: bytes) -> None:
    """What orjson accepts but an audit record must not hold.

    Duplicate keys (orjson keeps the last value, another reader may keep the first: the stored
    record and what the sender's gateway saw would disagree) and integers beyond 64 bits
    (orjson turns them into floats, silently losing digits). A second, validating pass by the
    standard library's parser: orjson has no option for either.
    """
    try:
        json.loads(body, object_pairs_hook=_unique_keys, parse_int=_int64)
    except _Ambiguous as exc:
        raise MalformedBody(str(exc)) from None
    except RecursionError:
        raise MalformedBody("The body nests too deeply.") from None


_REQUIRED = ("specversion", "id", "source", "type")


def _binary_cloudevent(headers: Mapping[str, str], body: bytes, kind: str) -> Envelope:
    if kind not in ("", JSON):
        raise UnsupportedMediaType(kind, (JSON,))
    # The four required attributes, checked here (the headers are the attributes: no SDK
    # reading follows), each missing one named.
    missing = [f"ce-{name}" for name in _REQUIRED if not headers.get(f"ce-{name}")]
    if not missing and headers["ce-specversion"] != "1.0":
        raise MalformedBody("Only CloudEvents specversion 1.0 is accepted.", field="ce-specversion")
    if missing:
        raise MalformedBody(
            f"A binary-mode CloudEvent needs the headers {', '.join(missing)}.",
            field=missing[0],
        )
    origin = _origin(binary_attributes(headers), headers.get("ce-time"), "")
    return Envelope(payload=_loads(body), raw=body, origin=origin)


def binary_attributes(headers: Mapping[str, str]) -> dict[str, str]:
    """A binary-mode CloudEvent's context attributes: each `ce-<name>` header as `<name>`.

    `headers` are named in lower case (as ASGI gives them). As in the SDK's reading, values are
    taken as sent (no percent-decoding).
    """
    return {name[3:]: value for name, value in headers.items() if name.startswith("ce-")}


def _structured_cloudevent(document: object, where: str) -> Envelope:
    if not isinstance(document, dict):
        raise MalformedBody(f"{where or 'The body'} must be a CloudEvent JSON object.", field=where)
    # The SDK would make up a missing id or specversion; the spec requires them, and the
    # (source, id) pair is what identifies a retried event.
    missing = [name for name in _REQUIRED if name not in document]
    if missing:
        raise MalformedBody(
            f"{where or 'The CloudEvent'} lacks the required attribute(s) {', '.join(missing)}.",
            field=f"{where}.{missing[0]}".lstrip("."),
        )
    for name in _REQUIRED:
        if not isinstance(document[name], str):
            raise MalformedBody(
                f"CloudEvent attribute {name!r} must be a string.",
                field=f"{where}.{name}".lstrip("."),
            )
    if document["specversion"] != "1.0":
        raise MalformedBody(
            "Only CloudEvents specversion 1.0 is accepted.",
            field=f"{where}.specversion".lstrip("."),
        )
    declared = document.get("datacontenttype")
    if declared is not None and not isinstance(declared, str):
        raise MalformedBody(
            "CloudEvent attribute 'datacontenttype' must be a string.",
            field=f"{where}.datacontenttype".lstrip("."),
        )
    content_type = media_type(declared)
    if content_type not in ("", JSON):
        raise MalformedBody(
            f"{where}datacontenttype must be application/json: audit events are JSON.",
            field=f"{where}.datacontenttype".lstrip("."),
        )
    payload: object = document.get("data")
    if "data_base64" in document:
        encoded = document.pop("data_base64")
        try:
            if not isinstance(encoded, str):
                raise ValueError("not a string")
            # binascii.Error and a non-ASCII string's ValueError are both ValueErrors.
            payload = _loads(base64.b64decode(encoded, validate=True))
        except (ValueError, MalformedBody):
            raise MalformedBody(
                f"{where}data_base64 must be base64 of a JSON object.",
                field=f"{where}.data_base64".lstrip("."),
            ) from None
    time = document.get("time")
    return Envelope(payload=payload, origin=_origin(_attributes(document, where), time, where))


def _attributes(document: dict[str, object], where: str) -> Mapping[str, object]:
    """A checked structured CloudEvent's attributes, as the SDK's `from_dict` reads them."""
    if all(name.islower() for name in document):
        # What the SDK would make of it: the same names and values (JSON holds none of the
        # enums or datetimes it would encode), and no refusal (the version and the required
        # attributes are checked first). Its default id and time are never read here.
        return document
    try:
        return from_dict(document).get_attributes()
    # TypeError: the SDK crashes on a version it cannot hash (`"SPECVERSION": []`, which its
    # lower-casing puts in place of the checked one): a client's error, not a 500.
    except (ce_errors.GenericException, TypeError) as exc:
        raise MalformedBody(f"{where or 'The body'} is not a valid CloudEvent: {exc}.") from None


def _origin(event: Mapping[str, object], time: object, where: str) -> CloudEventOrigin:
    values: dict[str, str] = {}
    for name in ("id", "source", "type"):
        value = event.get(name)
        if not isinstance(value, str) or not value or len(value) > 1024:
            raise MalformedBody(
                f"CloudEvent attribute {name!r} must be a non-empty string of at most 1024 "
                "characters.",
                field=f"{where}.{name}".lstrip("."),
            )
        values[name] = value
    if time is not None:
        if not isinstance(time, str):
            raise MalformedBody(
                "CloudEvent attribute 'time' must be an RFC 3339 string.",
                field=f"{where}.time".lstrip("."),
            )
        try:
            parse_rfc3339(time)
        except ValueError:
            raise MalformedBody(
                "CloudEvent attribute 'time' must be an RFC 3339 date-time, such as "
                "2024-12-05T10:00:00Z.",
                field=f"{where}.time".lstrip("."),
            ) from None
    subject = event.get("subject")
    if isinstance(subject, str) and len(subject) > 1024:
        raise MalformedBody(
            "CloudEvent attribute 'subject' must be at most 1024 characters.",
            field=f"{where}.subject".lstrip("."),
        )
    return CloudEventOrigin(
        id=values["id"],
        source=values["source"],
        type=values["type"],
        time=time if isinstance(time, str) else None,
        subject=subject if isinstance(subject, str) else None,
    )
