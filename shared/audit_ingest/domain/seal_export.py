"""Reading an exported copy: the text `audit-ingest events tail` prints.

Each record is three lines:

    # <topic>[<partition>]@<offset> time=<RFC 3339 or -> key=<repr>
    # headers <JSON object>
    <the value, as stored, one line>

Lines are split on "\\n" only: a JSON value may hold U+2028 and similar characters raw,
which `str.splitlines` would take for line ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from audit_ingest.domain.seal_errors import SealError

_HEAD = re.compile(r"^# (?P<topic>\S+)\[(?P<partition>\d+)\]@(?P<offset>\d+)(?: |$)")


@dataclass(frozen=True, slots=True)
class ExportedRecord:
    topic: str
    partition: int
    offset: int
    value: bytes
    line: int  # where its header line is (1-based), for messages


def parse_export(text: str) -> list[ExportedRecord]:
    """The records of an export, in file order; raises SealError on a malformed block."""
    lines = text.split("\n")
    records: list[ExportedRecord] = []
    i = 0
    while i < len(lines):
        head = _HEAD.match(lines[i])
        if head is None:
            if lines[i].strip():
                raise SealError(f"line {i + 1}", "expected a `# topic[partition]@offset` line")
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].startswith("# headers "):
            j += 1
        if j >= len(lines):
            raise SealError(f"line {i + 1}", "a record header without a value line")
        records.append(
            ExportedRecord(
                head["topic"], int(head["partition"]), int(head["offset"]), lines[j].encode(), i + 1
            )
        )
        i = j + 1
    return records
