"""A sealer that stops inside its Nth transaction: the seal produced, the offsets sent,
commit not yet called. It touches MARKER and sleeps there, for the test to `kill -9` it.

    python tests/integration/sealer_crash.py N MARKER   (settings from the environment)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from audit_ingest.ops.seals import signing_key
from audit_ingest.sealer import runner
from audit_ingest.settings import Settings

BLOCK_AT, MARKER = int(sys.argv[1]), Path(sys.argv[2])


class StallingProducer(Producer):
    commits = 0

    def commit_transaction(self, *args: Any) -> None:
        StallingProducer.commits += 1
        if StallingProducer.commits >= BLOCK_AT:
            self.flush(10)  # the seal is on the broker, inside the open transaction
            MARKER.write_text(str(StallingProducer.commits))
            time.sleep(600)
        super().commit_transaction(*args)


runner.Producer = StallingProducer  # type: ignore[attr-defined]  # the sealer's own Producer, swapped
settings = Settings()
runner.Sealer(settings, signing_key(settings)).run()
