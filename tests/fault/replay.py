"""Re-verify a kept run from its files: `uv run python -m tests.fault.replay <run folder>...`.

A run folder (under .dev/fault-results/<profile>-<stamp>/) holds `ledger.jsonl` (every event
and attempt) and `records.jsonl` (every record read back); the verdict is recomputed from
them alone, so a failure can be studied (or the verifier changed) without the cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from tests.fault.ledger import Ledger
from tests.fault.verifier import Record, verify


def load_records(path: Path) -> list[Record]:
    return [Record(**orjson.loads(line)) for line in path.read_bytes().splitlines() if line]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    failed = 0
    for folder in map(Path, argv):
        ledger = Ledger.load(folder / "ledger.jsonl")
        verdict = verify(ledger, load_records(folder / "records.jsonl"))
        summary = verdict.summary()
        print(folder.name, orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        failed += not verdict.ok
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
