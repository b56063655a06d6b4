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

The worker is uvicorn's, with one change to its HTTP protocol: a response's head and body
go out in one socket write, not two (`http.one_write`).

Everything else is functions-framework's: the same options and environment variables as its
CLI (`--target`/FUNCTION_TARGET, `--source`/FUNCTION_SOURCE, `--host`/HOST, `--port`/PORT,
WORKERS, ...), the same app factory (`create_asgi_app`) and the same server class, given one
more gunicorn option. `--asgi` is accepted and implied: the functions are ASGI apps.

One departure per request, for speed: a request functions-framework would route to the
function is handed to it directly (`DirectCalls`), skipping a framework stack whose work here
no one reads; the framework's own routes, other methods and its execution-id logging mode
still go through its app.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import click
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
    # The options functions-framework's CLI gives (debug off), plus gunicorn's `keepalive` and
    # a worker whose responses go out in one write (`http.one_write`).
    server(
        asgi_app(target, source, signature_type),
        host,
        port,
        False,
        keepalive=keepalive,
        worker_class=WORKER_CLASS,
    ).run()


# uvicorn's gunicorn worker, with the HTTP protocol that writes each response at once.
WORKER_CLASS = "audit_ingest.http.one_write.Worker"


def asgi_app(target: str, source: str | None, signature_type: str = "http") -> Any:
    """The ASGI app `main` serves for `target` (the bench and `make run` build it here too, so
    they measure and run what production serves): functions-framework's app, with the
    function's own requests handed straight to the function (`DirectCalls`)."""
    from functions_framework.aio import create_asgi_app

    # functions-framework ships no type hints: its factory is untyped.
    factory: Any = create_asgi_app
    framework_app = factory(target, source, signature_type)
    route = _catch_all(framework_app)
    if route is None:  # not laid out as the pinned version lays it out: its own stack serves
        return framework_app
    function = direct_function(route, target)
    if function is None:
        return framework_app
    return DirectCalls(framework_app, route, function)


_CATCH_ALL = "/{path:path}"  # functions-framework's route for every path of an HTTP function


def _catch_all(framework_app: Any) -> Route | None:
    for route in getattr(framework_app, "routes", ()):
        if isinstance(route, Route) and route.path == _CATCH_ALL:
            return route
    return None


def direct_function(route: Route, target: str) -> Callable[..., Any] | None:
    """The user's coroutine function behind functions-framework's catch-all `route`, or None
    where requests must keep going through the framework's own stack.

    None when functions-framework's per-request execution-id logging is on (`LOG_EXECUTION_ID`:
    its wrapper redirects stdout and stderr per request, which only its stack does), or when
    its app is not laid out as the pinned version lays it out (a catch-all `Route` whose
    endpoint unwraps to `target`): then an upgrade costs speed, never behaviour.
    """
    import functions_framework

    logging_on: Callable[[], bool] | None = getattr(
        functions_framework, "_enable_execution_id_logging", None
    )
    if logging_on is None or logging_on():
        return None
    function: Callable[..., Any] = inspect.unwrap(route.endpoint)
    if inspect.iscoroutinefunction(function) and function.__name__ == target:
        return function
    return None


class DirectCalls:
    """Hands each request functions-framework would route to the function straight to it.

    For an HTTP function, functions-framework's app (Starlette, its two middlewares, a router
    that tries four routes, its endpoint wrapper) does three things per request beyond calling
    the function: it draws a `Function-Execution-Id` (12 `random.randrange` calls) and parses
    `traceparent` into a context that only its execution-id logging reads, and it answers 500
    for an exception the function lets out. That stack cost 175k of the 967k instructions a
    single event took on the event-loop thread (docs/benchmarks.md); our edge already names
    each request and answers every error itself.

    So a request the catch-all route would take (an HTTP request with one of its methods, on
    any path but the framework's own routes: `/robots.txt`, `/favicon.ico`; no ASGI root path)
    calls the function here, inside functions-framework's own crash handler (the same 500 and
    log line for an escaping exception). Everything else (those routes, other methods, a root
    path, lifespan) goes to functions-framework's app unchanged. tests/unit/test_serve_direct.py
    holds the two paths to the same answers.
    """

    def __init__(self, framework_app: Any, catch_all: Route, function: Callable[..., Any]) -> None:
        from functions_framework.aio import ExceptionHandlerMiddleware

        self.framework_app = framework_app
        self.function = function
        # The methods its catch-all route takes (Starlette adds HEAD to GET).
        self.methods = frozenset(catch_all.methods or ())
        # The framework's other routes (robots.txt, favicon.ico) stay the framework's.
        self.framework_paths = frozenset(
            route.path
            for route in framework_app.routes
            if isinstance(route, Route) and route.path not in (_CATCH_ALL, "/")
        )
        # functions-framework ships no type hints: its middleware is untyped.
        crash_handler: Any = ExceptionHandlerMiddleware
        self._guarded = crash_handler(self._call)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in self.methods
            and scope["path"] not in self.framework_paths
            # Starlette routes on the path below a root path; ours never sets one, so a request
            # with one goes the framework's way rather than being matched here differently.
            and not scope.get("root_path")
        ):
            await self._guarded(scope, receive, send)
        else:
            await self.framework_app(scope, receive, send)

    async def _call(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        response = await self.function(Request(scope, receive))
        if not isinstance(response, Response):
            # functions-framework would turn a str, dict or tuple into a response; our
            # functions return one, and anything else is a defect (answered 500 above).
            raise TypeError(f"{self.function.__name__} returned {type(response).__name__}")
        await response(scope, receive, send)
