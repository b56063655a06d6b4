"""Run the gateway scenario against a live APISIX in front of the three functions.

    DATABASE_URL=... KAFKA_BOOTSTRAP_SERVERS=... \\
      uv run python apisix/live_check.py --gateway http://127.0.0.1:9080 \\
        --metrics http://127.0.0.1:9091/apisix/prometheus/metrics --access-log PATH

APISIX is on no package registry this project's machines reach, so this is not part of
`make test`: it is how the routes in apisix/standalone/ were proven on real APISIX releases
(apisix/README.md has the versions and the results), and how an operator can prove a
deployment. It issues its own API keys in the key store (`DATABASE_URL`), sends requests
through the gateway, reads the stored records back from Kafka, and prints one line per check
and the figures; it exits 1 when a check fails.

Checks: a valid key is answered 202 on both paths and the records land under the key's
tenant; unknown, missing and revoked keys get the authorize function's 401/403 problem+json;
spoofed X-Audit-* headers change nothing; one quota per key across both paths, then 429 with
`Retry-After` in whole seconds; bodies over a path's limit (with Content-Length or chunked)
are 413 before any quota is spent; batch partial success; the gateway's /health; the
Prometheus export; JSON access-log lines. Load is measured separately, with the project's
open-loop generator (apisix/README.md gives the command).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from audit_ingest.adapters.kafka_reader import read_records
from audit_ingest.adapters.key_admin import IssuedKey, create_key, revoke_key
from audit_ingest.settings import Settings

EVENT: dict[str, Any] = {
    "actor": {"id": "user-123", "type": "user"},
    "action": {"name": "user.created"},
    "resource": {"type": "user", "id": "user-456"},
    "result": {"success": True},
}
JSON = {"content-type": "application/json"}


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failed: int = 0

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.lines.append(f"{'PASS' if ok else 'FAIL'}  {name}{'  ' + detail if detail else ''}")
        self.failed += not ok
        print(self.lines[-1], flush=True)


def issue(settings: Settings, rate_limit: int) -> IssuedKey:
    return create_key(
        settings.database_url.get_secret_value(),
        tenant_id=uuid.uuid4(),
        name="live-check",
        scopes=("events:write",),
        rate_limit=rate_limit,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )


def post(
    client: httpx.Client, path: str, body: object, key: str | None, **headers: str
) -> httpx.Response:
    sent = {**JSON, **headers}
    if key is not None:
        sent["x-api-key"] = key
    return client.post(path, content=orjson.dumps(body), headers=sent)


def chunks(data: bytes, size: int = 16_384) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def stored_for(settings: Settings, tenant: str, expected: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for record in read_records(
        settings.kafka_connection(),
        settings.kafka_topic,
        from_beginning=True,
        limit=1_000_000,
        idle_seconds=3.0,
    ):
        if record.key == tenant.encode():
            found.append(orjson.loads(record.value))
            if len(found) >= expected:
                break
    return found


def whole_seconds(value: str | None) -> bool:
    return value is not None and value.isdigit() and int(value) >= 1


def scenario(args: argparse.Namespace, settings: Settings, report: Report) -> None:
    client = httpx.Client(base_url=args.gateway, timeout=20)
    main = issue(settings, rate_limit=100_000)
    tenant = main.stored.tenant_id

    # Valid key, both paths, records read back.
    single = post(client, "/v1/events", EVENT, main.secret, **{"x-request-id": "live-1"})
    report.check(
        "valid key: POST /v1/events -> 202",
        single.status_code == 202,
        f"{single.status_code} {single.text[:120]}",
    )
    batch = post(
        client, "/v1/events/batch", {"events": [EVENT, {"actor": {"id": "x"}}]}, main.secret
    )
    body = batch.json() if batch.status_code == 202 else {}
    report.check(
        "batch partial success: 202, 1 accepted, 1 rejected",
        batch.status_code == 202 and (body.get("accepted"), body.get("rejected")) == (1, 1),
        f"{batch.status_code} {batch.text[:160]}",
    )
    report.check(
        "X-RateLimit-* on a 202",
        all(h in single.headers for h in ("x-ratelimit-limit", "x-ratelimit-remaining")),
        ", ".join(f"{k}={v}" for k, v in single.headers.items() if k.startswith("x-ratelimit")),
    )
    records = stored_for(settings, tenant, 2)
    ids = {record["event_id"] for record in records}
    expected_ids = {single.json().get("event_id")} | {
        item["event_id"] for item in body.get("events", []) if "event_id" in item
    }
    functions = sorted({record["processing"]["function"] for record in records})
    report.check(
        "records in the topic under the key's tenant (both paths)",
        expected_ids <= ids,
        f"{len(records)} record(s); written by {functions}",
    )
    report.check(
        "request id kept end to end",
        any(r.get("request_id") == "live-1" for r in records),
    )

    # Keys the gateway must refuse, with authorize's problem+json.
    for label, key, status in (
        ("no key", None, 401),
        ("unknown key", "aik_" + "0" * 40, 401),
    ):
        answer = post(client, "/v1/events", EVENT, key)
        report.check(
            f"{label} -> {status} problem+json",
            answer.status_code == status
            and answer.headers.get("content-type", "").startswith("application/problem+json"),
            f"{answer.status_code} {answer.headers.get('content-type')} {answer.text[:100]}",
        )
    revoked = issue(settings, rate_limit=100)
    revoke_key(settings.database_url.get_secret_value(), uuid.UUID(revoked.stored.id))
    time.sleep(args.revocation_wait)
    answer = post(client, "/v1/events", EVENT, revoked.secret)
    report.check("revoked key -> 403", answer.status_code == 403, answer.text[:100])

    # Spoofed gateway headers change nothing.
    spoofed = post(
        client,
        "/v1/events",
        EVENT,
        main.secret,
        **{
            "x-audit-tenant-id": "00000000-0000-4000-8000-000000000000",
            "x-audit-key-id": "spoofed",
            "x-audit-rate-limit": "999999999",
            "x-audit-principal": "forged.token.value",
            "x-request-id": "live-spoof",
        },
    )
    stored = [r for r in stored_for(settings, tenant, 3) if r.get("request_id") == "live-spoof"]
    report.check(
        "spoofed X-Audit-* headers are overwritten",
        spoofed.status_code == 202
        and bool(stored)
        and stored[0]["tenant_id"] == tenant
        and stored[0]["api_key_id"] == main.stored.id
        and spoofed.headers.get("x-ratelimit-limit") == "100000",
        f"{spoofed.status_code}, stored tenant {stored[0]['tenant_id'] if stored else None}",
    )

    # One quota per key across both paths; 429 with Retry-After in whole seconds.
    small = issue(settings, rate_limit=5)
    statuses = [
        post(client, path, payload, small.secret).status_code
        for path, payload in (
            ("/v1/events", EVENT),
            ("/v1/events/batch", {"events": [EVENT]}),
            ("/v1/events", EVENT),
            ("/v1/events/batch", {"events": [EVENT]}),
            ("/v1/events", EVENT),
        )
    ]
    over = post(client, "/v1/events/batch", {"events": [EVENT]}, small.secret)
    report.check(
        "one quota for both paths: 5 x 202, then 429",
        statuses == [202] * 5 and over.status_code == 429,
        f"{statuses} then {over.status_code}",
    )
    report.check(
        "429 Retry-After in whole seconds",
        whole_seconds(over.headers.get("retry-after")),
        f"Retry-After={over.headers.get('retry-after')!r} "
        f"X-RateLimit-Reset={over.headers.get('x-ratelimit-reset')!r}",
    )

    # Too large: 413 before authorize or the quota (an unknown key gets 413, not 401; a valid
    # key's remaining quota does not move).
    meter = issue(settings, rate_limit=100)
    before = post(client, "/v1/events", EVENT, meter.secret).headers.get("x-ratelimit-remaining")
    big = {**EVENT, "context": {"blob": "x" * 70_000}}
    big_bytes = orjson.dumps(big)
    cases = (
        ("Content-Length over 64 KiB on /v1/events", "/v1/events", big_bytes, False),
        ("chunked over 64 KiB on /v1/events", "/v1/events", big_bytes, True),
        (
            "Content-Length over 5 MiB on /v1/events/batch",
            "/v1/events/batch",
            orjson.dumps({"events": [{**EVENT, "context": {"b": "y" * 5_300_000}}]}),
            False,
        ),
        (
            "chunked over 5 MiB on /v1/events/batch",
            "/v1/events/batch",
            orjson.dumps({"events": [{**EVENT, "context": {"b": "y" * 5_300_000}}]}),
            True,
        ),
    )
    for label, path, data, chunked in cases:
        for key_label, key in (("valid key", meter.secret), ("unknown key", "aik_" + "1" * 40)):
            content: bytes | Iterator[bytes] = chunks(data) if chunked else data
            try:
                answer = client.post(path, content=content, headers={**JSON, "x-api-key": key})
            except httpx.HTTPError as exc:  # the gateway may close before the body is sent
                report.check(f"413 {label} ({key_label})", False, f"{type(exc).__name__}: {exc}")
                continue
            report.check(f"413 {label} ({key_label})", answer.status_code == 413, answer.text[:80])
    after = post(client, "/v1/events", EVENT, meter.secret).headers.get("x-ratelimit-remaining")
    report.check(
        "no quota spent by the 413s",
        before is not None and after is not None and int(before) - int(after) == 1,
        f"remaining before {before}, after {after}",
    )
    # Three events of ~40 KB each: over the single path's limit, well under the batch path's.
    roomy = {"events": [{**EVENT, "context": {"b": ["z" * 1000] * 40}}] * 3}
    chunked_ok = client.post(
        "/v1/events/batch",
        content=chunks(orjson.dumps(roomy)),
        headers={**JSON, "x-api-key": main.secret},
    )
    report.check(
        "chunked ~120 KB batch, under its path's limit -> 202",
        chunked_ok.status_code == 202,
        chunked_ok.text[:100],
    )

    # The gateway's own health, metrics and access log.
    health = client.get("/health")
    report.check(
        "GET /health -> 200 {status: ok}",
        health.status_code == 200 and health.json() == {"status": "ok"},
    )
    if args.metrics:
        text = httpx.get(args.metrics, timeout=10).text
        series = [line for line in text.splitlines() if line.startswith("apisix_")]
        report.check("Prometheus export", len(series) > 0, f"{len(series)} apisix_* series")
    client.close()
    if args.access_log:
        time.sleep(args.log_flush_wait)  # APISIX buffers its access log (flush=3 s)
        # Lines that start an object are access-log lines (the file may also hold other
        # output written to the same stdout, such as the APISIX CLI's).
        lines = [
            line
            for line in Path(args.access_log).read_text(errors="replace").splitlines()
            if line.startswith("{")
        ]
        bad = 0
        for line in lines:
            try:
                json.loads(line)
            except ValueError:
                bad += 1
        report.check(
            "access log: every line is JSON",
            bool(lines) and bad == 0,
            f"{len(lines)} lines, {bad} not JSON",
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", required=True, help="APISIX's public URL")
    parser.add_argument("--metrics", help="APISIX's Prometheus export URL")
    parser.add_argument("--access-log", help="APISIX's access log file")
    parser.add_argument(
        "--log-flush-wait",
        type=float,
        default=4.0,
        help="seconds to wait before reading the access log (APISIX flushes it every 3 s)",
    )
    parser.add_argument(
        "--revocation-wait",
        type=float,
        default=0.0,
        help="seconds to wait after revoking a key (authorize's key cache TTL)",
    )
    args = parser.parse_args()
    report = Report()
    scenario(args, Settings(), report)
    print(f"{len(report.lines) - report.failed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
