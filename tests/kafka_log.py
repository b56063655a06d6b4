"""Read Kafka's on-disk record batches, to check what the broker really stored.

Record batch v2 header (Kafka protocol docs, "Record Batch"): baseOffset int64,
batchLength int32, partitionLeaderEpoch int32, magic int8, crc uint32, attributes int16 (bits
0-2: compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd), ...
"""

from __future__ import annotations

import struct
from pathlib import Path

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def batch_codecs(segment: Path) -> list[str]:
    """The compression codec of every record batch in a `.log` segment, in order."""
    data = segment.read_bytes()
    codecs: list[str] = []
    position = 0
    while position + 23 <= len(data):
        (batch_length,) = struct.unpack_from(">i", data, position + 8)
        if batch_length <= 0:
            break
        magic = data[position + 16]
        if magic != 2:
            raise ValueError(f"unexpected record batch magic {magic} at {position}")
        (attributes,) = struct.unpack_from(">h", data, position + 21)
        codecs.append(CODECS.get(attributes & 0x07, f"unknown({attributes & 0x07})"))
        position += 12 + batch_length
    return codecs


def topic_codecs(data_dir: Path, topic: str) -> list[str]:
    """Codecs of every batch in every partition of `topic` under a broker's log dir."""
    codecs: list[str] = []
    for partition_dir in sorted(data_dir.glob(f"{topic}-*")):
        for segment in sorted(partition_dir.glob("*.log")):
            codecs.extend(batch_codecs(segment))
    return codecs
