"""CPU per request of the function's own code, without the HTTP server: for A/B of a change.

    uv run python -m bench.inproc --env /path/stack.env [--body single] [--requests 20000]
        [--concurrency 32] [--profile out.pstats] [--mode inline|gateway|authorize] [--keyed]
        [--transport json|gzip|ce-structured|ce-binary]

Drives the function's ASGI app exactly as `audit-ingest-serve` builds it (`serve.asgi_app`:
functions-framework's `create_asgi_app` on `functions/<name>/main.py`, its requests handed to
the function directly, our edge, the service) with real adapters
(Kafka, Redis, PostgreSQL of a running stack: `python -m devstack up` writes the env file), and
`concurrency` requests in flight at once, as the server would hand them over. The HTTP server
(uvicorn, httptools, the socket writes) is the part left out: it is the same for every change
to our code, and `make bench` measures it with the rest.

Prints process CPU per request (every thread: the librdkafka threads' share of producing is in
it) and wall time per request. Figures move with the machine's load and with the stack's state
(a restarted devstack moved a keyed batch by 15 µs an event): compare before and after
interleaved (before, after, before, after) on one stack, or count instructions instead
(`valgrind --tool=callgrind` around this command). An A/B of another checkout:
`PYTHONPATH=<tree>/shared:<tree>` in front of this command.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench import bodies

REPO = Path(__file__).resolve().parent.parent
# A throwaway secret for an in-process run: it signs tokens this process alone checks.
GATEWAY_SECRET = "bench-inproc-gateway-secret-0123456789abcdef"  # noqa: S105
TARGETS = {
    "single": ("ingest_event", "/v1/events"),
    "batch100": ("ingest_batch", "/v1/events/batch"),
    "batch1000": ("ingest_batch", "/v1/events/batch"),
    # APISIX forward-auth's call: GET /authorize with the client's X-API-Key, no body.
    "authorize": ("authorize", "/authorize"),
}


def _load_env(path: Path) -> None:
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            os.environ.setdefault(name.strip(), value.strip())


Request = tuple[bytes, list[tuple[bytes, bytes]]]


def _bodies(
    name: str, count: int, *, keyed: bool = False, transport: str = "json"
) -> list[Request]:
    """`count` requests (body, headers) from the generator's template, each with its own
    numbers, sent over `transport` (bodies.encode)."""
    if name == "authorize":
        return [(b"", [])] * count
    template = bodies.template(name, keyed=keyed and name != "single")
    return [
        bodies.encode(template.replace(b"__SEQ__", str(seq).encode()), name, transport, seq)
        for seq in range(count)
    ]


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET" if path == TARGETS["authorize"][1] else "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }


async def _one(app: Any, scope: dict[str, Any], body: bytes) -> int:
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # a disconnect never comes
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _drive(args: argparse.Namespace, app: Any, headers: list[tuple[bytes, bytes]]) -> None:
    path = TARGETS[args.body][1]
    expected = 200 if args.body == "authorize" else 202
    # Bodies made up front: their building is the generator's cost, not the function's.
    payloads = _bodies(
        args.body, args.requests + args.warmup, keyed=args.keyed, transport=args.transport
    )
    statuses: dict[int, int] = {}
    queue = iter(payloads)
    # A single event's key is a header; a batch's are in its events (bodies.template).
    header_keys = args.keyed and args.body == "single"
    keys = (f"bench-{uuid.uuid4().hex}-{n}".encode() for n in itertools.count())

    async def worker() -> None:
        for body, body_headers in queue:
            h = [*headers, *body_headers, (b"content-length", str(len(body)).encode())]
            if header_keys:
                h.append((b"idempotency-key", next(keys)))
            code = await _one(app, _scope(path, h), body)
            statuses[code] = statuses.get(code, 0) + 1
            if code != expected:
                raise SystemExit(f"answered {code}, not {expected}")

    warm = iter(payloads[: args.warmup])
    queue = warm
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    queue = iter(payloads[args.warmup :])
    statuses.clear()
    profiler = cProfile.Profile() if args.profile else None
    cpu0, main0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    main_thread = time.thread_time() - main0
    events = args.requests * bodies.SIZES.get(args.body, 1)
    print(
        f"{args.body} mode={args.mode} transport={args.transport} requests={args.requests} "
        f"concurrency={args.concurrency}: "
        f"cpu {cpu / args.requests * 1e6:.1f} us/request, "
        f"{cpu / events * 1e6:.2f} us/event (event loop thread {main_thread / events * 1e6:.2f}), "
        f"wall {wall / args.requests * 1e6:.1f} us/request; "
        f"statuses {statuses}",
        file=sys.__stdout__,
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", type=Path, required=True, help="a devstack stack.env")
    parser.add_argument("--body", choices=sorted(TARGETS), default="single")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--mode", choices=("inline", "gateway"), default="inline")
    parser.add_argument("--noop", action="store_true", help="the framework floor (B0f's handler)")
    parser.add_argument("--transport", choices=bodies.TRANSPORTS, default="json")
    parser.add_argument(
        "--keyed",
        action="store_true",
        help="every event carries its own idempotency key (claimed and settled in Redis)",
    )
    parser.add_argument("--profile", default="", help="write cProfile stats of the measured part")
    args = parser.parse_args()
    _load_env(args.env)
    # The function's own log level (an access line per request) and its line writes, to
    # /dev/null: the figures below go to the real stdout.
    os.environ.setdefault("LOG_LEVEL", "INFO")
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  # the process's lifetime
    os.environ["AUTH_MODE"] = "inline" if args.body == "authorize" else args.mode
    os.environ.setdefault("RATE_LIMIT_DEFAULT", "100000000")
    sys.path.insert(0, str(REPO / "shared"))

    from audit_ingest.adapters.key_admin import create_key
    from audit_ingest.domain.gateway_token import PRINCIPAL_HEADER, sign_principal
    from audit_ingest.domain.principal import Principal
    from audit_ingest.settings import Settings

    headers = [(b"user-agent", b"bench-inproc")]
    if args.mode == "gateway" or args.body == "authorize":
        os.environ.setdefault("GATEWAY_SIGNING_SECRET", GATEWAY_SECRET)
    if args.mode == "gateway" and args.body != "authorize":
        settings = Settings()
        secret = settings.signing_secret()
        assert secret is not None
        principal = Principal(str(uuid.uuid4()), str(uuid.uuid4()), ("events:write",), 10**8)
        token = sign_principal(principal, secret=secret, now=int(time.time()), ttl=3600)
        headers.append((PRINCIPAL_HEADER.lower().encode(), token.encode()))
    else:
        settings = Settings()
        issued = create_key(
            settings.database_url.get_secret_value(),
            tenant_id=uuid.uuid4(),
            name="bench-inproc",
            scopes=("events:write",),
            rate_limit=10**8,
            expires_at=None,
        )
        headers.append((b"x-api-key", issued.secret.encode()))
    target, _ = TARGETS[args.body]
    source = REPO / "functions" / target / "main.py"
    if args.noop:
        target, source = "noop", REPO / "bench" / "functions" / "noop" / "main.py"
    app = _asgi_app(target, str(source))
    import uvloop  # what uvicorn runs (uvicorn[standard])

    uvloop.run(_drive(args, app, headers))


def _asgi_app(target: str, source: str) -> Any:
    """The app as `audit-ingest-serve` serves it; functions-framework's own for older code
    (an A/B against a checkout from before `serve.asgi_app`)."""
    try:
        from audit_ingest.serve import asgi_app
    except ImportError:
        from functions_framework.aio import create_asgi_app

        # functions-framework ships no type hints: its factory is untyped.
        factory: Any = create_asgi_app
        return factory(target=target, source=source, signature_type="http")
    return asgi_app(target, source)


if __name__ == "__main__":
    main()
