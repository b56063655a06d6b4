"""The one settings object. Nothing else in the project reads the environment.

Every field maps to an environment variable of the same name in upper case (for example
`kafka_topic` <- `KAFKA_TOPIC`). The README's settings table lists them all.
"""

from __future__ import annotations

import socket
from functools import lru_cache
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from audit_ingest.domain.limits import Limits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        frozen=True,
    )

    # Who the caller is: "inline" resolves X-API-Key here (and enforces the rate limit);
    # "gateway" accepts only the principal APISIX's forward-auth (the authorize function)
    # signed with `gateway_signing_secret`, and leaves rate limiting to APISIX;
    # "eventing" accepts Knative Eventing deliveries: the Trigger's OIDC token, its subject bound
    # to an API key by `eventing_bindings` (see auth_eventing.py).
    auth_mode: Literal["inline", "gateway", "eventing"] = "inline"
    gateway_signing_secret: SecretStr | None = None
    gateway_principal_ttl_seconds: Annotated[int, Field(ge=5, le=600)] = 60

    # Eventing mode: who issues the delivery tokens (the cluster's service account issuer),
    # for which audience (the Trigger's `subscriber.audience`), where its JWKS is, and which
    # sender (token subject, `system:serviceaccount:<ns>:<sa>`) writes as which API key id.
    eventing_issuer: str | None = None
    eventing_audience: str | None = None
    eventing_jwks_url: str = "https://kubernetes.default.svc/openid/v1/jwks"
    eventing_jwks_ca_file: str | None = None
    eventing_jwks_token_file: str | None = None
    eventing_jwks_cache_seconds: Annotated[float, Field(ge=1, le=86_400)] = 300.0
    eventing_bindings: dict[str, UUID] = Field(default_factory=dict)

    # Dependencies.
    database_url: SecretStr = SecretStr("postgresql://127.0.0.1:5432/audit")
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    redis_timeout_seconds: Annotated[float, Field(gt=0, le=5)] = 0.1
    rate_limit_enabled: bool = True
    idempotency_enabled: bool = True
    # Longer than the limiter's: a claim protects correctness (a late answer would store a
    # retry twice), and a busy event loop reads even a healthy Redis's answer late.
    idempotency_timeout_seconds: Annotated[float, Field(gt=0, le=10)] = 1.0
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None

    # Topics and producer.
    kafka_topic: str = "audit.events.v1"
    kafka_dlq_topic: str = "audit.events.dlq.v1"
    # 5 ms, not 2: at 1,000 single events/s the broker's CPU per event halves (more records
    # per produce request) for about 2 ms more latency (docs/benchmarks.md, the linger study).
    kafka_linger_ms: Annotated[int, Field(ge=0, le=1000)] = 5
    # How long a request waits for acks=all (then 1 s more for the report) before it answers
    # 503. The producer keeps trying the record for `kafka_message_timeout_ms` (librdkafka's
    # `message.timeout.ms`), longer than a broker failover: a record that timed out while in
    # flight would make the idempotent producer bump its epoch and send what it holds again as
    # new records, a second copy under one 202 (docs/reliability.md, finding 1).
    kafka_delivery_timeout_ms: Annotated[int, Field(ge=1000, le=300_000)] = 10_000
    kafka_message_timeout_ms: Annotated[int, Field(ge=1000, le=900_000)] = 60_000
    # Dead letters wait for the brokers this long (0: while the process lives); nothing awaits
    # them, so an outage need not cost operators the record of a rejected event.
    kafka_dlq_delivery_timeout_ms: Annotated[int, Field(ge=0, le=86_400_000)] = 0
    # The broker's wait for acks=all on one produce request (librdkafka `request.timeout.ms`,
    # enforced by the broker only): longer than a failover, as Kafka's ProducerConfig advises.
    kafka_request_timeout_ms: Annotated[int, Field(ge=500, le=120_000)] = 30_000
    # The producer's own wait for any answer on a connection (librdkafka `socket.timeout.ms`;
    # a produce request's is the lesser of this and what is left of the message timeout).
    # When it runs out, librdkafka drops the connection and resends on a new one, with the
    # same producer id and sequence numbers, so the broker recognises a repeat (no second
    # copy, and acks=all still holds for it). librdkafka's default, 60 s, left a connection
    # whose packets a 30 s network partition had dropped waiting on TCP's retransmission
    # backoff: 503s went on for ~20 s after the network healed (docs/reliability.md).
    kafka_socket_timeout_ms: Annotated[int, Field(ge=1000, le=300_000)] = 10_000
    kafka_queue_max_messages: Annotated[int, Field(ge=1000)] = 100_000
    retry_after_seconds: Annotated[int, Field(ge=1, le=300)] = 2
    # How long the function's server keeps an idle HTTP connection (gunicorn `keepalive`, read
    # by `audit_ingest.serve`): longer than any proxy's pool in front of it (APISIX 60 s, Knative's
    # queue-proxy, a cloud load balancer up to 600 s), so the proxy, never the function, closes
    # an idle connection; the other way round a request sent as the function closes is a 502.
    http_keepalive_seconds: Annotated[int, Field(ge=1, le=3600)] = 620

    # The sealer (docs/integrity.md): signed checkpoints of `kafka_topic` on `seals_topic`,
    # every `seal_max_records` records or `seal_max_seconds`, whichever comes first. The
    # record bound keeps a seal (32 bytes per leaf, base64) under Kafka's 1 MB message size.
    seals_topic: str = "audit.events.seals.v1"
    seal_max_records: Annotated[int, Field(ge=1, le=20_000)] = 1000
    seal_max_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    seal_signing_key_file: str | None = None
    seal_public_keys_file: str | None = None
    sealer_group_id: str = "audit-ingest-sealer"
    # Unset: "audit-ingest-sealer-<NODE_NAME>" (the pod's name in the Deployment).
    sealer_transactional_id: str | None = None
    sealer_transaction_timeout_ms: Annotated[int, Field(ge=1000, le=900_000)] = 60_000
    sealer_metrics_port: Annotated[int, Field(ge=0, le=65_535)] = 9102

    # API keys (inline mode).
    key_cache_ttl_seconds: Annotated[float, Field(gt=0, le=60)] = 30.0
    key_negative_cache_ttl_seconds: Annotated[float, Field(ge=0, le=60)] = 5.0
    key_cache_stale_seconds: Annotated[float, Field(ge=0, le=3600)] = 300.0
    key_cache_size: Annotated[int, Field(ge=1)] = 10_000
    database_pool_max: Annotated[int, Field(ge=1, le=100)] = 4
    database_timeout_seconds: Annotated[float, Field(gt=0, le=30)] = 2.0

    # Request limits.
    max_event_bytes: Annotated[int, Field(ge=1024, le=900_000)] = 65_536
    max_batch_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 5 * 1024 * 1024
    max_batch_events: Annotated[int, Field(ge=1, le=1000)] = 1000
    max_depth: Annotated[int, Field(ge=2, le=64)] = 16
    max_string_length: Annotated[int, Field(ge=16, le=65_536)] = 8192
    max_future_skew_seconds: Annotated[int, Field(ge=0, le=86_400)] = 300
    # The per-event pipeline's compiled accept path (native/); false: Python only, the same
    # decisions and bytes, slower (for comparisons, and a way out should it ever misbehave).
    compiled_pipeline: bool = True
    # The header a trusted proxy sets to the client's address (APISIX: X-Audit-Client-Ip);
    # unset: the socket's peer. X-Forwarded-For is not used: every hop appends to it (Knative's
    # activator and queue-proxy too), so no fixed position in it names the client.
    client_ip_header: str | None = None

    # Identity of this process, for the `processing` block of every record.
    node_name: str = Field(default_factory=socket.gethostname)
    k_service: str = "local"
    k_revision: str = "local"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _producer_outlives_the_request(self) -> Settings:
        if self.kafka_message_timeout_ms < self.kafka_delivery_timeout_ms:
            raise ValueError(
                "KAFKA_MESSAGE_TIMEOUT_MS must be at least KAFKA_DELIVERY_TIMEOUT_MS: the "
                "producer keeps a record at least as long as its request waits for it"
            )
        if self.kafka_socket_timeout_ms >= self.kafka_message_timeout_ms:
            # A request that outlives its records times them out in flight: the idempotent
            # producer then bumps its epoch and may store them twice (docs/reliability.md).
            raise ValueError(
                "KAFKA_SOCKET_TIMEOUT_MS must be less than KAFKA_MESSAGE_TIMEOUT_MS: a stalled "
                "request is resent before its records time out"
            )
        return self

    @model_validator(mode="after")
    def _gateway_needs_a_secret(self) -> Settings:
        if self.auth_mode == "gateway" and not self.signing_secret():
            raise ValueError("AUTH_MODE=gateway needs GATEWAY_SIGNING_SECRET (32+ characters)")
        return self

    @model_validator(mode="after")
    def _eventing_needs_issuer_and_audience(self) -> Settings:
        if self.auth_mode == "eventing" and not (self.eventing_issuer and self.eventing_audience):
            raise ValueError("AUTH_MODE=eventing needs EVENTING_ISSUER and EVENTING_AUDIENCE")
        for subject in self.eventing_bindings:
            if not subject.startswith("system:serviceaccount:") or subject.count(":") != 3:
                raise ValueError(
                    f"EVENTING_BINDINGS: {subject!r} is not system:serviceaccount:<ns>:<name>"
                )
        return self

    def signing_secret(self) -> bytes | None:
        """The gateway secret as bytes, when one of at least 32 characters is set."""
        secret = self.gateway_signing_secret
        if secret is None or len(secret.get_secret_value()) < 32:
            return None
        return secret.get_secret_value().encode()

    def kafka_connection(self) -> dict[str, str]:
        """librdkafka's connection settings (brokers, security, SASL): the one place they are
        spelled, for the functions' producer and the operator's consumers and admin clients."""
        config = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            password = self.kafka_sasl_password
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
            config["sasl.username"] = self.kafka_sasl_username or ""
            config["sasl.password"] = password.get_secret_value() if password else ""
        return config

    def limits(self) -> Limits:
        """The pure-core view of the request limits."""
        return Limits(
            max_event_bytes=self.max_event_bytes,
            max_batch_body_bytes=self.max_batch_body_bytes,
            max_batch_events=self.max_batch_events,
            max_depth=self.max_depth,
            max_string_length=self.max_string_length,
            max_future_skew_seconds=self.max_future_skew_seconds,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the environment once per process."""
    return Settings()
