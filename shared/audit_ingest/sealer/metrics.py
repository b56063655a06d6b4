"""The sealer's Prometheus families (served on SEALER_METRICS_PORT, not by the functions).

Label `partition` takes the events topic's partition numbers: a small fixed set.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RECORDS = Counter(
    "audit_ingest_sealer_records_total",
    "Records sealed: covered by a checkpoint committed to the seals topic.",
)
SEALS = Counter(
    "audit_ingest_sealer_seals_total",
    "Checkpoints committed to the seals topic.",
)
ABORTS = Counter(
    "audit_ingest_sealer_transaction_aborts_total",
    "Seal transactions aborted (the range is sealed again on the next attempt).",
)
LAG = Gauge(
    "audit_ingest_sealer_lag_records",
    "Records stored in the partition but not yet sealed (high watermark - next unsealed "
    "offset), by the replica that owns the partition.",
    ["partition"],
)
LAST_SEAL = Gauge(
    "audit_ingest_sealer_last_seal_timestamp_seconds",
    "Unix time of the partition's last committed checkpoint (its age: time() - this).",
    ["partition"],
)
