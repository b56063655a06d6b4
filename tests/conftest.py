"""Shared fixtures: the real services (tests/stack.py) and the function processes
(tests/functions.py), each started only on demand, once per session."""

pytest_plugins = ["tests.stack", "tests.functions"]
