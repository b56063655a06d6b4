"""The SDK against the real stack: the e2e tier's function processes, behind a fault proxy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e import conftest as e2e
from tests.sdk.fault_proxy import FaultProxy, RunningProxy, running_proxy

# The e2e tier's session fixtures, seen by pytest here too (the stack's come from tests.stack).
# Run together with tests/e2e, the function processes start once per directory.
functions = e2e.functions
function_env = e2e.function_env
log_dir = e2e.log_dir


@pytest.fixture
def proxy(functions: dict[str, e2e.FunctionProcess]) -> Iterator[RunningProxy]:
    """A fault proxy in front of both functions; it forwards everything until given a plan."""
    app = FaultProxy(functions["single"].url, functions["batch"].url)
    with running_proxy(app) as running:
        yield running
