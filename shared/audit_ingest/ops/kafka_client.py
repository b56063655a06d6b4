"""librdkafka settings for the operator's consumers and admin clients.

`bootstrap.producer_config` is the producer's (acks, idempotence, batching); readers and admin
clients need only the connection part of it, security included, so that the CLI works against a
SASL/TLS cluster too.
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
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
        "logger": _QUIET,
    }
    if settings.kafka_sasl_mechanism:
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username or ""
        password = settings.kafka_sasl_password
        config["sasl.password"] = password.get_secret_value() if password else ""
    config.update(extra)
    return config
