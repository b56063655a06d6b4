"""librdkafka settings for the operator's consumers and admin clients.

`Settings.kafka_connection` is the connection part (brokers, security, SASL) that the functions'
producer uses too, so the CLI works against a SASL/TLS cluster as the functions do.
"""

from __future__ import annotations

import logging
from typing import Any

from audit_ingest.settings import Settings

# librdkafka reports every refused connection through its log callback; the commands report
# the outcome themselves, so these lines are kept out of the operator's terminal.
_QUIET = logging.getLogger("audit_ingest.ops.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Connection settings (brokers, security, SASL) plus `extra` (dots spelled as given)."""
    return {**settings.kafka_connection(), "logger": _QUIET, **extra}
