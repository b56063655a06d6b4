"""The atheris target (fuzz_parse.py) runs clean for a bounded number of inputs.

`HOSTILE_FUZZ_RUNS` inputs (default 20,000, a few seconds), from the seed corpus with the
JSON dictionary, in a scratch corpus folder. Where atheris does not install (it ships wheels
for CPython 3.11 as 2.3.0, and for 3.12+ as 3.x), a Hypothesis stand-in mutates the same seeds
and feeds them to the same pipeline instead.
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.hostile.harness import MAX_SECONDS, known_defect, process_timed, split_request

HERE = Path(__file__).resolve().parent
TARGET = HERE / "fuzz_parse.py"
SEEDS = HERE / "corpus"
DICTIONARY = HERE / "fuzz.dict"
RUNS = int(os.environ.get("HOSTILE_FUZZ_RUNS", "20000"))
HAS_ATHERIS = importlib.util.find_spec("atheris") is not None

pytestmark = pytest.mark.unit


@pytest.mark.skipif(not HAS_ATHERIS, reason="atheris is not installed: the stand-in runs")
def test_fuzz_target_runs_clean(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            str(TARGET),
            f"-atheris_runs={RUNS}",
            f"-dict={DICTIONARY}",
            "-print_final_stats=1",
            str(corpus),  # libFuzzer writes what it finds into the first folder only
            str(SEEDS),
        ],
        cwd=tmp_path,  # crash-* files land here
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert not list(tmp_path.glob("crash-*")), output[-4000:]
    coverage = re.findall(r"cov: (\d+) ft: (\d+)", output)
    tolerated = re.findall(r"known defect hit \(tolerated\): (\S+)", output)
    print(
        f"\natheris: {RUNS} runs in {elapsed:.1f} s (process start included), "
        f"cov {coverage[-1] if coverage else '?'} (edges, features); "
        f"known defects hit: {tolerated or 'none'}"
    )
    assert coverage, output[-2000:]


SEED_BYTES = [path.read_bytes() for path in sorted(SEEDS.iterdir())]


@st.composite
def mutated_seed(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEED_BYTES)))
    rng = random.Random(draw(st.integers(0, 2**32)))
    for _ in range(draw(st.integers(1, 8))):
        position = rng.randrange(len(data) + 1)
        choice = rng.randrange(4)
        if choice == 0 and data:
            del data[position : position + rng.randrange(1, 16)]
        elif choice == 1:
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif choice == 2 and data:
            data[min(position, len(data) - 1)] ^= 1 << rng.randrange(8)
        else:
            data[position:position] = rng.choice([b'"', b"{", b"[", b"\\u", b"\n\n", b"1e400"])
    return bytes(data)


@pytest.mark.skipif(HAS_ATHERIS, reason="atheris is installed: the real fuzzer runs")
@settings(
    max_examples=max(100, RUNS // 20),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.one_of(mutated_seed(), st.binary(max_size=4096)))
def test_fuzz_stand_in(data: bytes) -> None:
    try:
        result = process_timed(split_request(data))
    except Exception as exc:
        defect = known_defect(exc)
        if defect is None:
            raise
        event(f"known defect: {defect.name}")
        return
    assert result.seconds < MAX_SECONDS
