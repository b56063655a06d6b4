"""Shared fixtures: the real-service ones live in tests/stack.py and start only on demand."""

pytest_plugins = ["tests.stack"]
