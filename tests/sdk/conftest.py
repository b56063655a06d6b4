"""The SDK against the real stack: the two functions as processes, behind a fault proxy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.functions import FunctionProcess
from tests.sdk.fault_proxy import FaultProxy, RunningProxy, running_proxy

# `functions` (the two function processes) is the session's, from tests/functions.py: the e2e
# and SDK tiers share it when they run together.


@pytest.fixture
def proxy(functions: dict[str, FunctionProcess]) -> Iterator[RunningProxy]:
    """A fault proxy in front of both functions; it forwards everything until given a plan."""
    app = FaultProxy(functions["single"].url, functions["batch"].url)
    with running_proxy(app) as running:
        yield running
