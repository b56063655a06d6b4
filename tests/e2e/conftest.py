"""The two functions' URLs (the processes: the `functions` fixture of tests/functions.py)."""

from __future__ import annotations

import pytest

from tests.functions import FunctionProcess


@pytest.fixture(scope="session")
def single_url(functions: dict[str, FunctionProcess]) -> str:
    return functions["single"].url


@pytest.fixture(scope="session")
def batch_url(functions: dict[str, FunctionProcess]) -> str:
    return functions["batch"].url
