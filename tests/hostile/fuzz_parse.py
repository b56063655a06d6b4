"""Coverage-guided fuzzing (atheris, libFuzzer) of the pure request pipeline.

The target reads one input as a tiny HTTP request (tests/hostile/harness.py: request line,
headers, empty line, body; or a bare body for `POST /v1/events`), then decodes, parses,
validates, computes the idempotency identity, enriches and builds the Kafka record, exactly as
a function does between reading a body and producing. A crash is:

- any exception other than the library's `AuditError` refusals (MalformedBody, InvalidEvent,
  UnsupportedMediaType, PayloadTooLarge); the defects already reproduced by xfail tests
  (`harness.KNOWN_DEFECTS`) are reported once each and tolerated, unless FUZZ_STRICT=1;
- an input that takes over 100 ms, twice in a row (once could be a GC pause).

Run by hand. libFuzzer writes the inputs it finds into the FIRST directory given: never name
tests/hostile/corpus first (it holds the seeds, which stay small and readable):

    mkdir -p /tmp/fuzz-corpus
    uv run python tests/hostile/fuzz_parse.py -max_total_time=120 \
        -dict=tests/hostile/fuzz.dict /tmp/fuzz-corpus tests/hostile/corpus
    uv run python tests/hostile/fuzz_parse.py -atheris_runs=20000 /tmp/fuzz-corpus \
        tests/hostile/corpus

libFuzzer prints `cov:` (edges covered) and `exec/s` as it goes; a crash leaves the input in
`crash-<sha1>`, replayable with `uv run python tests/hostile/fuzz_parse.py crash-<sha1>`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests` as a package

with atheris.instrument_imports(include=["audit_ingest", "cloudevents", "email_validator"]):
    from tests.hostile import harness

STRICT = os.environ.get("FUZZ_STRICT") == "1"
_seen_defects: set[str] = set()


class SlowInput(Exception):
    """The pipeline took longer than harness.MAX_SECONDS on one input, twice."""


def test_one_input(data: bytes) -> None:
    request = harness.split_request(data)
    try:
        result = harness.process_timed(request)
        if result.seconds > harness.MAX_SECONDS:
            raise SlowInput(f"{result.seconds * 1000:.0f} ms on a {len(data)}-byte input")
    except SlowInput:
        raise
    except Exception as exc:
        defect = harness.known_defect(exc)
        if defect is None or STRICT:
            raise
        if defect.name not in _seen_defects:
            _seen_defects.add(defect.name)
            print(f"known defect hit (tolerated): {defect.name}", file=sys.stderr, flush=True)


def main() -> None:
    # Warm up outside the clock: the first validation imports and builds lazily.
    for seed in sorted((Path(__file__).parent / "corpus").iterdir()):
        test_one_input(seed.read_bytes())
    started = time.monotonic()
    atheris.Setup(sys.argv, test_one_input)
    try:
        atheris.Fuzz()
    finally:  # libFuzzer usually exits the process itself; this runs when it returns
        print(f"fuzzed for {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
