"""The composition root: builds the service's parts once per process, on first use.

functions-framework has no startup or shutdown hook, so nothing is built at import time:
`get_app()` builds on the first request, and the producer is flushed at interpreter exit
(atexit) after a SIGTERM has drained in-flight requests.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from types import FrameType
from typing import TYPE_CHECKING, Any

from audit_ingest.adapters.kafka import KafkaPublisher
from audit_ingest.adapters.redis_idempotency import RedisIdempotencyStore
from audit_ingest.adapters.redis_limiter import RedisRateLimiter
from audit_ingest.auth import (
    Authenticator,
    GatewayAuthenticator,
    InlineAuthenticator,
    PrincipalSigner,
)
from audit_ingest.domain.enrichment import Processing
from audit_ingest.domain.limits import Limits
from audit_ingest.domain.pipeline import Rules
from audit_ingest.ids import new_event_id
from audit_ingest.keycache import KeyResolver
from audit_ingest.logs import configure_logging
from audit_ingest.ports import IdempotencyStore, KeyStore, Publisher, RateLimiter
from audit_ingest.runtime import tune_gc
from audit_ingest.service import IngestService
from audit_ingest.settings import Settings, get_settings

if TYPE_CHECKING:
    from audit_ingest.auth_eventing import EventingAuthenticator

log = logging.getLogger(__name__)


def package_version() -> str:
    try:
        return version("audit-ingest")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "0+unknown"


def producer_config(settings: Settings) -> dict[str, Any]:
    """librdkafka settings: durable (acks=all, idempotence) and tuned for latency.

    The seed's "1 MB or 1 s" batching is a ceiling, not a linger: a 1 s linger would break the
    100 ms p99, so records wait at most `kafka_linger_ms` for company.
    """
    return {
        **settings.kafka_connection(),
        "client.id": f"audit-ingest-{settings.k_service}",
        "acks": "all",
        "enable.idempotence": True,
        "compression.type": "lz4",
        "linger.ms": settings.kafka_linger_ms,
        "batch.size": 1_048_576,
        "message.timeout.ms": settings.kafka_message_timeout_ms,
        "request.timeout.ms": settings.kafka_request_timeout_ms,
        # Recovering from a network partition (docs/reliability.md, finding 7): a request
        # unanswered for `kafka_socket_timeout_ms` drops its connection; a connection attempt
        # whose packets vanish gives up after 5 s instead of 30, and a broker is tried again
        # at least every second (Kafka's Java client's default; librdkafka's is 10 s), so
        # the first attempt after the network heals succeeds within about a second or two.
        "socket.timeout.ms": settings.kafka_socket_timeout_ms,
        "socket.connection.setup.timeout.ms": 5_000,
        "reconnect.backoff.max.ms": 1_000,
        "queue.buffering.max.messages": settings.kafka_queue_max_messages,
        "socket.keepalive.enable": True,
        # Small produce requests must not wait for the previous one's TCP ACK (Nagle): measured
        # on the bench, p99 of one awaited record 7.9 -> 5.6 ms, of a 100-record flush 3.9 ->
        # 2.7 ms, and 1.5x the flat-out rate (docs/benchmarks.md).
        "socket.nagle.disable": True,
    }


def dead_letter_producer_config(settings: Settings) -> dict[str, Any]:
    """The dead-letter producer's settings: the main producer's, but its records wait for the
    brokers up to `kafka_dlq_delivery_timeout_ms` (0: as long as the process lives), so that a
    broker outage costs operators no dead letter. Its queue bounds what it holds."""
    return {
        **producer_config(settings),
        "client.id": f"audit-ingest-{settings.k_service}-dlq",
        "message.timeout.ms": settings.kafka_dlq_delivery_timeout_ms,
    }


def build_publisher(settings: Settings) -> Publisher:
    publisher = KafkaPublisher(
        producer_config(settings), dead_letter_config=dead_letter_producer_config(settings)
    )
    # Built now, not at the first publish: its connection and producer id come while the first
    # request authenticates and validates (and its first record misses librdkafka's start-up
    # window, kafka.STARTUP_GRACE_SECONDS).
    publisher.start()
    return publisher


def build_idempotency_store(
    settings: Settings, *, timeout: float | None = None
) -> IdempotencyStore:
    """The Redis idempotency store; a claim left pending by a dead process is taken over (under
    its event_id) a little after its request's longest wait, or, once its record outlived the
    request (held), after the longest the producer keeps a record."""
    return RedisIdempotencyStore(
        settings.redis_url.get_secret_value(),
        timeout=settings.idempotency_timeout_seconds if timeout is None else timeout,
        pending_ttl=settings.kafka_delivery_timeout_ms / 1000 + 5.0,
        held_ttl=settings.kafka_message_timeout_ms / 1000 + 5.0,
    )


def build_rules(settings: Settings, *, function: str | None = None) -> Rules:
    """The pipeline's rules: the limits in force and who writes the records (`function`
    defaults to this Knative service's name; the DLQ replay names itself)."""
    return Rules(
        limits=settings.limits(),
        processing=Processing(
            node=settings.node_name,
            function=function or settings.k_service,
            revision=settings.k_revision,
            version=package_version(),
        ),
        topic=settings.kafka_topic,
        compiled=settings.compiled_pipeline,
    )


def build_service(
    settings: Settings,
    publisher: Publisher,
    idempotency: IdempotencyStore | None,
    *,
    function: str | None = None,
) -> IngestService:
    """The ingest use case, for the functions and for the operator's DLQ replay alike."""
    return IngestService(
        publisher,
        rules=build_rules(settings, function=function),
        dlq_topic=settings.kafka_dlq_topic,
        # The handler waits a little longer than librdkafka's own delivery timeout, so a
        # record's fate is normally known (acked or failed) before the request gives up.
        ack_timeout=settings.kafka_delivery_timeout_ms / 1000 + 1.0,
        new_event_id=new_event_id,
        idempotency=idempotency,
    )


@dataclass
class IngestApp:
    """Everything a request needs, built once."""

    settings: Settings
    publisher: Publisher
    key_store: KeyStore | None  # None in gateway mode: the gateway resolved the key
    authenticator: Authenticator
    limiter: RateLimiter | None  # None when APISIX enforces the limit (gateway mode)
    service: IngestService
    limits: Limits
    draining: threading.Event = field(default_factory=threading.Event)

    def close(self) -> int:
        timeout = self.settings.kafka_delivery_timeout_ms / 1000
        return self.publisher.close(timeout)


def build_key_store(settings: Settings) -> KeyStore:
    # Imported here: gateway-mode functions never need a key store, nor psycopg's import time
    # on their cold start.
    from audit_ingest.adapters.postgres import PostgresKeyStore

    return PostgresKeyStore(
        settings.database_url.get_secret_value(),
        max_size=settings.database_pool_max,
        timeout=settings.database_timeout_seconds,
    )


def build_resolver(settings: Settings, key_store: KeyStore) -> KeyResolver:
    return KeyResolver(
        key_store,
        ttl=settings.key_cache_ttl_seconds,
        negative_ttl=settings.key_negative_cache_ttl_seconds,
        stale=settings.key_cache_stale_seconds,
        size=settings.key_cache_size,
    )


def build_eventing_authenticator(settings: Settings, key_store: KeyStore) -> EventingAuthenticator:
    """Eventing mode: the cluster's JWKS, the sender bindings, keys looked up by id."""
    from audit_ingest.auth_eventing import (
        ClusterJwks,
        EventingAuthenticator,
        KeyIdLookup,
        KeysById,
    )

    if not isinstance(key_store, KeysById):
        raise TypeError("AUTH_MODE=eventing needs a key store that finds keys by id")
    # Settings refuses eventing mode without either.
    assert settings.eventing_issuer is not None
    assert settings.eventing_audience is not None
    keys = ClusterJwks(
        settings.eventing_jwks_url,
        ca_file=settings.eventing_jwks_ca_file,
        token_file=settings.eventing_jwks_token_file,
        lifespan=settings.eventing_jwks_cache_seconds,
    )
    return EventingAuthenticator(
        keys,
        build_resolver(settings, KeyIdLookup(key_store)),
        issuer=settings.eventing_issuer,
        audience=settings.eventing_audience,
        bindings={sender: str(key_id) for sender, key_id in settings.eventing_bindings.items()},
    )


def build_limiter(settings: Settings) -> RateLimiter:
    return RedisRateLimiter(
        settings.redis_url.get_secret_value(), timeout=settings.redis_timeout_seconds
    )


def build_app(
    settings: Settings,
    *,
    publisher: Publisher | None = None,
    key_store: KeyStore | None = None,
    limiter: RateLimiter | None = None,
    idempotency: IdempotencyStore | None = None,
) -> IngestApp:
    """Wire the parts for the settings' mode; adapters may be injected (tests do)."""
    publisher = publisher or build_publisher(settings)
    authenticator: Authenticator
    if settings.auth_mode == "gateway":
        secret = settings.signing_secret()
        assert secret is not None  # Settings refuses gateway mode without one
        authenticator = GatewayAuthenticator(secret)
        key_store, limiter = None, None
    else:
        key_store = key_store or build_key_store(settings)
        if settings.auth_mode == "eventing":
            authenticator = build_eventing_authenticator(settings, key_store)
        else:
            authenticator = InlineAuthenticator(build_resolver(settings, key_store))
        if not settings.rate_limit_enabled:
            limiter = None
        elif limiter is None:
            limiter = build_limiter(settings)
    if not settings.idempotency_enabled:
        idempotency = None
    elif idempotency is None:
        idempotency = build_idempotency_store(settings)
    service = build_service(settings, publisher, idempotency)
    return IngestApp(
        settings, publisher, key_store, authenticator, limiter, service, settings.limits()
    )


_app: IngestApp | None = None
_app_lock = threading.Lock()


def get_app() -> IngestApp:
    """The process's app, built on first call; registers the shutdown hooks."""
    global _app
    if _app is None:
        with _app_lock:
            if _app is None:
                settings = get_settings()
                configure_logging(settings.log_level)
                app = build_app(settings)
                _install_shutdown(app)
                tune_gc()  # after the build: the app's long-lived objects are frozen too
                _app = app
    return _app


def _install_shutdown(app: IngestApp) -> None:
    atexit.register(_flush_at_exit, app)
    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        # Report not-ready at once, then let the server's own handler drain in-flight requests
        # (uvicorn/gunicorn installed it before the first request reached us).
        app.draining.set()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_sigterm)


def _flush_at_exit(app: IngestApp) -> None:
    remaining = app.close()
    if remaining:
        log.error("exiting with %d undelivered record(s)", remaining)


@dataclass
class AuthorizeApp:
    """What the `authorize` function (APISIX forward-auth) needs: keys and the signing secret."""

    settings: Settings
    key_store: KeyStore
    authenticator: Authenticator
    secret: bytes
    signer: PrincipalSigner


def build_authorize_app(settings: Settings, *, key_store: KeyStore | None = None) -> AuthorizeApp:
    secret = settings.signing_secret()
    if secret is None:
        raise RuntimeError(
            "the authorize function needs GATEWAY_SIGNING_SECRET (32+ characters), the secret "
            "it shares with the ingest functions"
        )
    key_store = key_store or build_key_store(settings)
    authenticator = InlineAuthenticator(build_resolver(settings, key_store))
    signer = PrincipalSigner(secret, settings.gateway_principal_ttl_seconds)
    return AuthorizeApp(settings, key_store, authenticator, secret, signer)


_authorize_app: AuthorizeApp | None = None


def get_authorize_app() -> AuthorizeApp:
    """The process's authorize app, built on first call."""
    global _authorize_app
    if _authorize_app is None:
        with _app_lock:
            if _authorize_app is None:
                settings = get_settings()
                configure_logging(settings.log_level)
                _authorize_app = build_authorize_app(settings)
    return _authorize_app
