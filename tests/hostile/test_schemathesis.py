"""Schemathesis against `openapi.yaml` and the running functions (real Kafka, PostgreSQL, Redis).

Every operation, positive and negative data, all of Schemathesis's response checks, with four
API keys: a valid one, an unknown one (well-formed, in no database), a revoked one and a
rate-limited one (limit 1 per minute, already used). Pass: no server error, no response that
breaks the contract, no invalid input accepted, and every 202'd event in the topic (nothing
else).

Examples per operation and key: `HOSTILE_EXAMPLES` (default 25, which keeps this file around
two minutes); by hand, the figure the reliability plan asks for:

    HOSTILE_EXAMPLES=500 uv run pytest tests/hostile/test_schemathesis.py -q
"""

from __future__ import annotations

import base64
import copy
import gzip
import os
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import requests
import schemathesis
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter, ValidationError
from schemathesis.checks import negative_data_rejection, not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation

from audit_ingest.adapters.key_admin import IssuedKey, revoke_key
from audit_ingest.domain.keys import format_key
from audit_ingest.domain.model import Email
from audit_ingest.settings import Settings
from tests.hostile.harness import replay
from tests.hostile.tier import HostileFunctions, record_presented
from tests.openapi_check import load_spec
from tests.stack import KeyFactory, TopicReader
from tests.unit.samples import seed_event

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "25"))

CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {
            "max-examples": EXAMPLES,
            # The key is ours to choose (four kinds, below), never a generated string.
            "with-security-parameters": False,
            "database": "none",
        },
        "checks": {},
    }
)


def _contract() -> dict[str, Any]:
    """openapi.yaml, with the request rules the service applies, by design, differently.

    `X-Request-Id` is not validated: an id that does not match the pattern is replaced by a
    new one (documented on the parameter), never refused. So a request carrying such an id is
    not "invalid data" the service must reject; the parameter is loosened to any string here
    (the response header keeps the pattern, and that is checked).
    """
    document = copy.deepcopy(load_spec())
    parameters = document["components"]["parameters"]
    parameters["RequestId"]["schema"] = {"type": "string"}
    # HTTP content-codings are case-insensitive tokens and Content-Encoding is a list, which
    # may be empty (RFC 9110 sections 8.4 and 5.6.1): the service reads `GZIP` as gzip and an
    # empty value as no coding, as HTTP says, where the contract's enum lists two spellings.
    parameters["ContentEncoding"]["schema"] = {
        "type": "string",
        "pattern": r"^\s*([Gg][Zz][Ii][Pp]|[Ii][Dd][Ee][Nn][Tt][Ii][Tt][Yy])?\s*$",
    }
    return document


CONTRACT = _contract()
schema = schemathesis.openapi.from_dict(copy.deepcopy(CONTRACT), config=CONFIG)


class GzipSession(requests.Session):
    """Compresses the body of a request that declares `Content-Encoding: gzip`.

    Schemathesis generates the header (the contract allows `gzip`) but sends the body as is;
    the body must really be gzip for the request to be what the contract describes.
    """

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        coding = request.headers.get("Content-Encoding", "")
        if coding.strip().lower() == "gzip" and request.body:
            body = request.body
            # requests's own bodies are str or bytes here (the contract's JSON, encoded or not).
            raw = body.encode() if isinstance(body, str) else cast(bytes, body)
            request.body = gzip.compress(raw)
            request.headers["Content-Length"] = str(len(request.body))
        return super().send(request, **kwargs)


SESSION = GzipSession()


@dataclass
class Ledger:
    """What the functions answered, per key kind, and every event_id they answered 202 for."""

    accepted: dict[str, set[str]] = field(default_factory=dict)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    requests: int = 0
    known_defects: Counter[str] = field(default_factory=Counter)
    per_operation: Counter[str] = field(default_factory=Counter)


LEDGER = Ledger()
KEY_KINDS = ("valid", "unknown", "revoked", "rate_limited")
EMAIL = TypeAdapter(Email)  # exactly the service's rule (shared/audit_ingest/domain/model.py)
CE_REQUIRED = ("ce-specversion", "ce-id", "ce-source", "ce-type")
SEED = seed_event()


@dataclass(frozen=True)
class ApiKey:
    kind: str
    secret: str
    tenant_id: str | None  # None for a key that is in no database


@pytest.fixture(scope="module")
def schemathesis_keys(
    settings: Settings, hostile: HostileFunctions, issue_session_key: KeyFactory
) -> dict[str, ApiKey]:
    conninfo = settings.database_url.get_secret_value()

    def create(rate_limit: int = 10_000) -> IssuedKey:
        return issue_session_key(name="schemathesis", rate_limit=rate_limit)

    valid, revoked, limited = create(), create(), create(rate_limit=1)
    revoke_key(conninfo, uuid.UUID(revoked.stored.id))
    unknown = format_key(secrets.token_bytes(32))
    record_presented(unknown)
    used = httpx.post(
        f"{hostile.single_url}/v1/events",
        content=orjson.dumps(SEED),
        headers={"content-type": "application/json", "x-api-key": limited.secret},
        timeout=20,
    )
    assert used.status_code in (202, 429), used.text
    _record(ApiKey("rate_limited", limited.secret, limited.stored.tenant_id), used)
    return {
        "valid": ApiKey("valid", valid.secret, valid.stored.tenant_id),
        "unknown": ApiKey("unknown", unknown, None),
        "revoked": ApiKey("revoked", revoked.secret, revoked.stored.tenant_id),
        "rate_limited": ApiKey("rate_limited", limited.secret, limited.stored.tenant_id),
    }


@pytest.fixture(scope="module", params=KEY_KINDS)
def api_key(request: pytest.FixtureRequest, schemathesis_keys: dict[str, ApiKey]) -> ApiKey:
    return schemathesis_keys[request.param]


def _record(key: ApiKey, response: Any) -> None:
    """Count the answer; keep the event ids of a 202."""
    LEDGER.requests += 1
    LEDGER.statuses.setdefault(key.kind, Counter())[response.status_code] += 1
    if response.status_code != 202:
        return
    assert key.tenant_id is not None, f"202 for a key in no database: {response.text}"
    body = response.json()
    ids = {body["event_id"]} if "event_id" in body else set()
    ids |= {item["event_id"] for item in body.get("events", []) if "event_id" in item}
    LEDGER.accepted.setdefault(key.tenant_id, set()).update(ids)


# -- rules of the contract that its JSON Schema cannot express ----------------------------------
#
# A request that matches every schema of openapi.yaml can still break a rule the document states
# only in prose. Schemathesis's positive cases are made to honour those rules before they are
# sent, so that `positive_data_acceptance` checks what it should (valid requests are accepted)
# instead of flagging the documented refusals. Negative cases are sent exactly as generated.


def _header(headers: dict[str, Any], name: str) -> str | None:
    return next((k for k in headers if k.lower() == name), None)


def _unique() -> str:
    return f"st-{uuid.uuid4().hex}"


def _fix_event(event: object, key: ApiKey) -> None:
    if not isinstance(event, dict):
        return
    actor = event.get("actor")
    if isinstance(actor, dict) and isinstance(actor.get("email"), str):
        # The contract's `format: email` is the service's syntax check (email-validator:
        # quoted local parts, address literals and internal domains are accepted); a
        # generated address outside it is swapped for a plain one, and counted, so the
        # count shows any remaining gap between the two.
        try:
            EMAIL.validate_python(actor["email"])
        except ValidationError:
            actor["email"] = "user@example.com"
            LEDGER.known_defects["email-outside-the-syntax-check"] += 1
    # "tenant_id ... must equal the tenant of the API key (else 400, tenant_mismatch)".
    if isinstance(event.get("tenant_id"), str):
        event["tenant_id"] = key.tenant_id or event["tenant_id"]
    # "at most 300 s ahead of the server clock": a generated date may be any year.
    stamp = event.get("timestamp")
    if isinstance(stamp, str) and stamp[:4].isdigit() and int(stamp[:4]) >= 2025:
        event["timestamp"] = "2024-12-05T10:00:00Z"
    # "the same key with different content is refused (400 idempotency_key_reused)": the
    # service remembers keys for 24 h, so a key generated for one case must not recur.
    if isinstance(event.get("idempotency_key"), str):
        event["idempotency_key"] = _unique()


def _fix_cloudevent(document: object, key: ApiKey) -> None:
    if not isinstance(document, dict):
        return
    # Without an idempotency key, a CloudEvent's source + id identify retries (see above).
    if isinstance(document.get("id"), str):
        document["id"] = _unique()
    if "data_base64" in document:
        # `contentSchema` (base64 of an AuditEvent) is an annotation generators do not honour.
        document["data_base64"] = base64.b64encode(orjson.dumps(SEED)).decode()
    _fix_event(document.get("data"), key)


def _fit_integers(value: Any) -> Any:
    """Integers beyond 64 bits as strings: "send big numbers as strings" (docs/api.md); the
    JSON Schema of free-form parts (`context`, CloudEvent extensions) cannot say it."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)
    if isinstance(value, dict):
        return {name: _fit_integers(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_fit_integers(item) for item in value]
    return value


def satisfy_prose_rules(case: Any, key: ApiKey) -> None:
    """Make a positive case honour the rules openapi.yaml states in prose (see above)."""
    headers = case.headers if case.headers is not None else {}
    body = case.body
    media = (case.media_type or "").split(";")[0].strip().lower()
    batch = case.path.endswith("/batch")
    present = {name: _header(headers, name) for name in CE_REQUIRED}
    # Binary mode (ce-specversion present) takes the four ce-* headers and one audit event
    # as an `application/json` body; without ce-specversion, a batch body is `{"events": ...}`.
    one_event = isinstance(body, dict) and "events" not in body
    binary_fits = media == "application/json" and (one_event or not batch)
    if present["ce-specversion"] is not None and not binary_fits:
        for name in list(headers):
            if name.lower().startswith("ce-"):
                del headers[name]
    elif present["ce-specversion"] is not None or (
        batch and media == "application/json" and one_event
    ):
        headers.setdefault(present["ce-specversion"] or "ce-specversion", "1.0")
        for name in CE_REQUIRED[1:]:
            if present[name] is None:
                headers[name] = _unique()
    if present["ce-id"] is not None and present["ce-id"] in headers:
        headers[present["ce-id"]] = _unique()
    name = _header(headers, "idempotency-key")
    if name is not None:
        headers[name] = _unique()
    if case.headers is None and headers:
        case.headers = headers
    body = case.body = _fit_integers(body)
    if media == "application/cloudevents+json":
        _fix_cloudevent(body, key)
    elif media == "application/cloudevents-batch+json" and isinstance(body, list):
        for item in body:
            _fix_cloudevent(item, key)
    elif isinstance(body, dict) and isinstance(body.get("events"), list):
        for item in body["events"]:
            _fix_event(item, key)
    else:
        _fix_event(body, key)


def _invalid_headers(case: Any) -> set[str]:
    """The declared header parameters whose value breaks the parameter's schema."""
    parameters = CONTRACT["components"]["parameters"]
    declared = {
        parameter["name"].lower(): parameter["schema"]
        for parameter in (
            parameters[p["$ref"].rsplit("/", 1)[-1]] if "$ref" in p else p
            for p in _operation(case).get("parameters", [])
        )
        if parameter["in"] == "header"
    }
    bad = set()
    for name, value in (case.headers or {}).items():
        schema_of = declared.get(name.lower())
        if schema_of is not None and not Draft202012Validator(
            schema_of, format_checker=Draft202012Validator.FORMAT_CHECKER
        ).is_valid(value):
            bad.add(name.lower())
    return bad


def _operation(case: Any) -> dict[str, Any]:
    operation: dict[str, Any] = CONTRACT["paths"][case.path][case.method.lower()]
    return operation


def ce_attributes_outside_binary_mode(case: Any) -> bool:
    """A negative case whose only invalid parts are ce-* headers of a request that is not a
    binary-mode CloudEvent.

    The contract: `ce-specversion` "selects binary mode; then ce-id, ce-source and ce-type are
    required too". Without it the request is not a CloudEvent (CloudEvents HTTP binding), and
    the other ce-* headers are not attributes: the service ignores them, as it should, so an
    over-long `ce-type` on a plain JSON request is not invalid data it must refuse. With
    ce-specversion present the same header is refused (400), and that stays checked.
    """
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return False
    if any(
        meta.is_negative_at(location)
        for location in (ParameterLocation.BODY, ParameterLocation.QUERY, ParameterLocation.PATH)
    ):
        return False
    if _header(case.headers or {}, "ce-specversion") is not None:
        return False
    bad = _invalid_headers(case)
    return bool(bad) and all(name.startswith("ce-") for name in bad)


@schema.include(tag="ingestion").parametrize()
def test_ingestion_operations(case: Any, api_key: ApiKey, hostile: HostileFunctions) -> None:
    if case.meta is not None and case.meta.generation.mode.is_positive:
        satisfy_prose_rules(case, api_key)
    excluded = [negative_data_rejection] if ce_attributes_outside_binary_mode(case) else []
    call_and_validate(
        case, hostile.url_for(case.path), {"X-API-Key": api_key.secret}, excluded, api_key
    )


def call_and_validate(
    case: Any,
    base_url: str,
    headers: dict[str, str],
    excluded: list[Any],
    key: ApiKey | None = None,
) -> Any:
    """`case.call_and_validate`, except for a 500 that is a known, reproduced defect.

    Such a 500 is replayed through the pure pipeline (tests/hostile/harness.py): when the same
    request raises the exception of a defect already reproduced by an xfail(strict=True)
    test, the answer is counted under that defect instead of failing here again; every other
    check still runs on it. Any other 500 fails.
    """
    response = case.call(base_url=base_url, headers=headers, session=SESSION, timeout=30)
    LEDGER.per_operation[f"{case.method} {case.path} [{key.kind if key else '-'}]"] += 1
    if key is not None:
        _record(key, response)  # before the checks: a 202 they fail is still in the topic
    if response.status_code == 500:
        sent = response.request
        body = sent.body.encode() if isinstance(sent.body, str) else sent.body or b""
        path = urlsplit(sent.url or "").path
        defect = replay(path, dict(sent.headers), body)
        if defect is not None:
            LEDGER.known_defects[defect.name] += 1
            excluded = [*excluded, not_a_server_error]
    transport = {"timeout": 30, "base_url": base_url, "session": SESSION, "headers": headers}
    case.validate_response(
        response, headers=headers, excluded_checks=excluded, transport_kwargs=transport
    )
    return response


@schema.include(tag="operations").parametrize()
def test_operations_endpoints(case: Any, hostile: HostileFunctions) -> None:
    call_and_validate(case, hostile.single_url, {}, [])


def test_topic_holds_exactly_the_accepted_events(
    hostile: HostileFunctions, settings: Settings, schemathesis_keys: dict[str, ApiKey]
) -> None:
    """I1 and I2 for fuzzed traffic: every 202'd event_id is in the topic (no loss), and the
    topic holds nothing else for these keys' tenants (no phantoms, no rejection written)."""
    if not LEDGER.requests:
        pytest.skip("the Schemathesis tests above did not run in this session")
    reader = TopicReader(settings.kafka_bootstrap_servers, hostile.topic)
    try:
        messages = reader.drain()
    finally:
        reader.close()
    stored: dict[str, list[str]] = {}
    for message in messages:
        tenant = (message.key() or b"").decode()
        stored.setdefault(tenant, []).append(orjson.loads(message.value() or b"")["event_id"])
    for key in schemathesis_keys.values():
        if key.tenant_id is None:
            continue
        in_topic = stored.get(key.tenant_id, [])
        accepted = LEDGER.accepted.get(key.tenant_id, set())
        assert len(in_topic) == len(set(in_topic)), f"duplicates for the {key.kind} key"
        assert set(in_topic) == accepted, (key.kind, len(in_topic), len(accepted))
    assert not stored.get(schemathesis_keys["revoked"].tenant_id or "")
    print(
        f"\nschemathesis: {LEDGER.requests} requests, answers by key: "
        + "; ".join(f"{kind} {dict(sorted(c.items()))}" for kind, c in LEDGER.statuses.items())
        + f"; known defects hit: {dict(LEDGER.known_defects) or 'none'}"
        + "".join(f"\n  {name}: {count}" for name, count in sorted(LEDGER.per_operation.items()))
    )
