"""Operator tooling behind `audit-ingest` (keys rotate, dlq inspect/replay, stack status).

The click commands in `cli.py` stay thin: parsing options and printing. The work is here, typed
and usable from tests and scripts without a terminal.
"""
