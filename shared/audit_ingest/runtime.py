"""Process-wide tuning of a function worker, applied once when its app is built.

The cyclic garbage collector: a request allocates thousands of short-lived containers (a
batch of 1000 events about 100,000), almost none of them in reference cycles, so reference
counting frees them; but every 700 allocations CPython's default thresholds run a collection,
and the oldest generation holds every object the imports and the app created. On the batch
path that was about 15-20% of the CPU (docs/benchmarks.md).

- `gc.freeze()` moves what exists now (modules, the app, its clients) to a permanent
  generation that collections no longer scan;
- a larger young generation (100,000 allocations) makes collections rarer; cycles are still
  collected, a little later. The service makes almost no cyclic garbage (674 objects in
  20,000 single-event requests), so what waits longer is negligible. Against 10,000, in a run of
  500 batch-of-100 requests and its warm-up (in process, 32 in flight), young collections
  fell from 704 to 66, the time in all collections from 580 to 11 ms, and the longest pause
  from 12.3 to 1.4 ms (docs/benchmarks.md, round eight). Likely why: at 10,000 a collection
  ran while the requests in flight still held their objects, which it then promoted for the
  middle generation's collections to scan again.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (100_000, 50, 100)


def tune_gc() -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
