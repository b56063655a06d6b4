"""Process-wide tuning of a function worker, applied once when its app is built.

The cyclic garbage collector: a request allocates thousands of short-lived containers (a
batch of 1000 events about 100,000), almost none of them in reference cycles, so reference
counting frees them; but every 700 allocations CPython's default thresholds run a collection,
and the oldest generation holds every object the imports and the app created. On the batch
path that was about 15-20% of the CPU (docs/benchmarks.md).

- `gc.freeze()` moves what exists now (modules, the app, its clients) to a permanent
  generation that collections no longer scan;
- a larger young generation (10,000 allocations) makes collections rarer; cycles are still
  collected, a little later.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (10_000, 50, 100)


def tune_gc() -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
