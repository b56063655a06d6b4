"""The per-event pipeline's accept path, compiled (Rust, PyO3): see `src/lib.rs`.

Used only through `audit_ingest.domain.compiled`, which falls back to the Python pipeline for
every event this declines.
"""

from audit_ingest_native._native import (
    MAX_EMAIL_LENGTH,
    MAX_ID_LENGTH,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_MESSAGE_LENGTH,
    MAX_NAME_LENGTH,
    Checker,
    dumps_str,
    parse_timestamp,
    schema,
)

__all__ = [
    "MAX_EMAIL_LENGTH",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_MESSAGE_LENGTH",
    "MAX_NAME_LENGTH",
    "Checker",
    "dumps_str",
    "parse_timestamp",
    "schema",
]
