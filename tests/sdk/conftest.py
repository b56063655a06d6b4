"""The SDK against the real stack: the two functions as processes, behind a fault proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from audit_ingest.settings import Settings
from tests.functions import (
    FunctionProcess,
    function_environment,
    running_functions,
    temporary_log_dir,
)
from tests.sdk.fault_proxy import FaultProxy, RunningProxy, running_proxy

# The same session fixtures as the e2e tier's (the stack's come from tests.stack); run together
# with tests/e2e, the function processes start once per directory.


@pytest.fixture(scope="session")
def function_env(settings: Settings, stack_env: dict[str, str]) -> dict[str, str]:
    return function_environment(stack_env)


@pytest.fixture(scope="session")
def log_dir() -> Iterator[Path]:
    with temporary_log_dir() as folder:
        yield folder


@pytest.fixture(scope="session")
def functions(function_env: dict[str, str], log_dir: Path) -> Iterator[dict[str, FunctionProcess]]:
    with running_functions(function_env, log_dir) as started:
        yield started


@pytest.fixture
def proxy(functions: dict[str, FunctionProcess]) -> Iterator[RunningProxy]:
    """A fault proxy in front of both functions; it forwards everything until given a plan."""
    app = FaultProxy(functions["single"].url, functions["batch"].url)
    with running_proxy(app) as running:
        yield running
