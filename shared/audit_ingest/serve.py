"""Serve one function: functions-framework's ASGI app on its own gunicorn + uvicorn server,
with an HTTP keep-alive that outlives the connection pools in front of it.

Why not `functions-framework --asgi`: its server keeps an idle connection open for gunicorn's
default 2 s and offers no setting for it, while every proxy in front of a function pools
connections far longer (Knative's queue-proxy, APISIX's upstream pool: 60 s, a cloud load
balancer: 60-600 s). When the function closes an idle connection just as the proxy writes the
next request on it, the request dies on the wire and the proxy answers 502 for a POST it may
not replay (APISIX routes here have `retries: 0`). The rule for pooled connections is that the
server side idles longer than the client side, so the server is never the one to close:
`HTTP_KEEPALIVE_SECONDS` (Settings, default 620 s, above the longest common pool).

Everything else is functions-framework's: the same options and environment variables as its
CLI (`--target`/FUNCTION_TARGET, `--source`/FUNCTION_SOURCE, `--host`/HOST, `--port`/PORT,
WORKERS, ...), the same app factory (`create_asgi_app`) and the same server class, given one
more gunicorn option. `--asgi` is accepted and implied: the functions are ASGI apps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from audit_ingest.settings import get_settings


@click.command()
@click.option("--target", envvar="FUNCTION_TARGET", type=click.STRING, required=True)
@click.option("--source", envvar="FUNCTION_SOURCE", type=click.Path(), default=None)
@click.option(
    "--signature-type",
    envvar="FUNCTION_SIGNATURE_TYPE",
    type=click.Choice(["http"]),
    default="http",
)
@click.option("--host", envvar="HOST", type=click.STRING, default="0.0.0.0")  # noqa: S104
@click.option("--port", envvar="PORT", type=click.INT, default=8080)
@click.option("--asgi", is_flag=True, help="Accepted for functions-framework compatibility.")
def main(
    target: str, source: str | None, signature_type: str, host: str, port: int, asgi: bool
) -> None:
    """Run `target` from `source` until SIGTERM (gunicorn arbiter, uvicorn worker(s))."""
    # Imported here: `--help` and a bad option answer without loading the server.
    from functions_framework._http import gunicorn

    keepalive = get_settings().http_keepalive_seconds
    # functions-framework ships no type hints: its server class is untyped.
    server: Any = gunicorn.UvicornApplication
    # The options functions-framework's CLI gives (debug off), plus gunicorn's `keepalive`.
    server(asgi_app(target, source, signature_type), host, port, False, keepalive=keepalive).run()


def asgi_app(target: str, source: str | None, signature_type: str = "http") -> Any:
    """functions-framework's ASGI app for `target`, as `main` serves it (the bench builds it
    here too, so it measures what runs)."""
    from functions_framework.aio import create_asgi_app

    from audit_ingest.http.edge import new_request_id

    # functions-framework ships no type hints: its factory is untyped.
    factory: Any = create_asgi_app
    return ExecutionIds(factory(target, source, signature_type), new_request_id)


_EXECUTION_ID = b"function-execution-id"


class ExecutionIds:
    """Gives a request that has no `Function-Execution-Id` one, before functions-framework does.

    functions-framework's middleware draws that id as 12 characters, one `random.randrange`
    call each, for every request without the header (all of ours: no client sends it). An id
    from `new_request_id` (a per-process random prefix and a counter) costs a fraction of that.
    functions-framework then finds the header and keeps it as its execution id, as for a
    caller that sent one.
    """

    def __init__(self, app: Any, new_id: Callable[[], str]) -> None:
        self.app = app
        self.new_id = new_id

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            # ASGI servers give header names in lower case.
            if not any(name == _EXECUTION_ID for name, _ in headers):
                scope["headers"] = [*headers, (_EXECUTION_ID, self.new_id().encode())]
        await self.app(scope, receive, send)
