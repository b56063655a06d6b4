"""The two functions as real processes (helpers: tests/functions.py)."""

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


@pytest.fixture(scope="session")
def single_url(functions: dict[str, FunctionProcess]) -> str:
    return functions["single"].url


@pytest.fixture(scope="session")
def batch_url(functions: dict[str, FunctionProcess]) -> str:
    return functions["batch"].url
