"""`audit-ingest`: the operator's command line (schema, topics, API keys).

It reads the same settings as the functions. When `.dev/stack.env` exists (written by
`make run`), it is read too, for any setting the environment does not set.
"""

from __future__ import annotations

import sys
import uuid
from datetime import datetime
from pathlib import Path

import click
import orjson

from audit_ingest.adapters.kafka_admin import TopicSpec, create_topics
from audit_ingest.adapters.kafka_reader import read_records
from audit_ingest.adapters.key_admin import create_key, list_keys, revoke_key, set_rate_limit
from audit_ingest.adapters.migrations import migrate
from audit_ingest.domain.keys import DEFAULT_RATE_LIMIT, DEFAULT_SCOPES
from audit_ingest.domain.timestamps import parse_rfc3339
from audit_ingest.settings import Settings

DEFAULT_ENV_FILE = Path(".dev/stack.env")


@click.group()
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read settings from this file too (default: .dev/stack.env when it exists).",
)
@click.pass_context
def main(ctx: click.Context, env_file: Path | None) -> None:
    """Operate the audit-event ingestion service."""
    path = env_file or (DEFAULT_ENV_FILE if DEFAULT_ENV_FILE.exists() else None)
    ctx.obj = Settings(_env_file=path) if path else Settings()


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.obj
    assert isinstance(settings, Settings)
    return settings


@main.command("migrate")
@click.pass_context
def migrate_command(ctx: click.Context) -> None:
    """Apply pending database migrations."""
    applied = migrate(_settings(ctx).database_url.get_secret_value())
    click.echo(f"applied: {', '.join(applied)}" if applied else "schema is up to date")


@main.group()
def topics() -> None:
    """Kafka topics."""


@topics.command("create")
@click.option("--partitions", type=click.IntRange(1, 10_000), default=6, show_default=True)
@click.option("--replication-factor", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option(
    "--min-insync-replicas",
    type=click.IntRange(1, 16),
    default=None,
    help="Default: replication factor - 1 (at least 1).",
)
@click.option("--retention-ms", type=int, default=7 * 24 * 3600 * 1000, show_default=True)
@click.pass_context
def topics_create(
    ctx: click.Context,
    partitions: int,
    replication_factor: int,
    min_insync_replicas: int | None,
    retention_ms: int,
) -> None:
    """Create the events topic and the dead-letter topic (no-op when they exist)."""
    settings = _settings(ctx)
    insync = min_insync_replicas or max(1, replication_factor - 1)
    config = {
        "min.insync.replicas": str(insync),
        "unclean.leader.election.enable": "false",
        "retention.ms": str(retention_ms),
        "compression.type": "producer",
    }
    specs = [
        TopicSpec(settings.kafka_topic, partitions, replication_factor, config),
        TopicSpec(settings.kafka_dlq_topic, partitions, replication_factor, config),
    ]
    for name, state in create_topics(settings.kafka_bootstrap_servers, specs).items():
        click.echo(f"{name}: {state}")


@main.group()
def events() -> None:
    """Records in the topics."""


@events.command("tail")
@click.option("--dlq", is_flag=True, help="Read the dead-letter topic instead.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record.")
@click.option("--max", "limit", type=click.IntRange(1), default=20, show_default=True)
@click.option(
    "--idle",
    type=float,
    default=3.0,
    show_default=True,
    help="Stop after this many seconds without a new record.",
)
@click.pass_context
def events_tail(
    ctx: click.Context, dlq: bool, from_beginning: bool, limit: int, idle: float
) -> None:
    """Print records (key, headers, value) as they are stored."""
    settings = _settings(ctx)
    topic = settings.kafka_dlq_topic if dlq else settings.kafka_topic
    for record in read_records(
        settings.kafka_bootstrap_servers,
        topic,
        from_beginning=from_beginning,
        limit=limit,
        idle_seconds=idle,
    ):
        headers = {name: value.decode(errors="replace") for name, value in record.headers}
        click.echo(f"# {topic}[{record.partition}]@{record.offset} key={record.key!r}")
        click.echo(f"# headers {orjson.dumps(headers).decode()}")
        click.echo(record.value.decode(errors="replace"))


@main.group()
def keys() -> None:
    """API keys."""


def _parse_scopes(_: click.Context, __: click.Parameter, value: str) -> tuple[str, ...]:
    scopes = tuple(part.strip() for part in value.split(",") if part.strip())
    if not scopes:
        raise click.BadParameter("give at least one scope, such as events:write")
    return scopes


def _parse_time(_: click.Context, __: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise click.BadParameter("use RFC 3339, such as 2027-01-01T00:00:00Z") from None


@keys.command("create")
@click.option("--tenant", "tenant_id", type=click.UUID, required=True, help="Tenant UUID.")
@click.option("--name", default=None, help="A label for people, such as the sending service.")
@click.option(
    "--rate-limit",
    type=click.IntRange(1, 10_000_000),
    default=DEFAULT_RATE_LIMIT,
    show_default=True,
    help="Requests per minute.",
)
@click.option(
    "--scopes",
    default=",".join(DEFAULT_SCOPES),
    show_default=True,
    callback=_parse_scopes,
    help="Comma-separated.",
)
@click.option("--expires-at", default=None, callback=_parse_time, help="RFC 3339.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def keys_create(
    ctx: click.Context,
    tenant_id: uuid.UUID,
    name: str | None,
    rate_limit: int,
    scopes: tuple[str, ...],
    expires_at: datetime | None,
    as_json: bool,
) -> None:
    """Create a key and print it once; only its SHA-256 hash is stored."""
    issued = create_key(
        _settings(ctx).database_url.get_secret_value(),
        tenant_id=tenant_id,
        name=name,
        scopes=scopes,
        rate_limit=rate_limit,
        expires_at=expires_at,
    )
    stored = issued.stored
    if as_json:
        document = {
            "id": stored.id,
            "key": issued.secret,
            "tenant_id": stored.tenant_id,
            "name": stored.name,
            "scopes": list(stored.scopes),
            "rate_limit": stored.rate_limit,
            "expires_at": stored.expires_at.isoformat() if stored.expires_at else None,
            "created_at": issued.created_at.isoformat(),
        }
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
        return
    click.echo(f"id:         {stored.id}")
    click.echo(f"tenant:     {stored.tenant_id}")
    click.echo(f"rate limit: {stored.rate_limit}/min   scopes: {','.join(stored.scopes)}")
    click.echo(f"key:        {issued.secret}")
    click.echo("Store the key now: it is not shown again.", err=True)


@keys.command("list")
@click.option("--tenant", "tenant_id", type=click.UUID, default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def keys_list(ctx: click.Context, tenant_id: uuid.UUID | None, as_json: bool) -> None:
    """List keys (never their secrets)."""
    rows = list_keys(_settings(ctx).database_url.get_secret_value(), tenant_id)
    for stored, (created_at, last_used_at) in rows:
        item = {
            "id": stored.id,
            "tenant_id": stored.tenant_id,
            "name": stored.name,
            "scopes": list(stored.scopes),
            "rate_limit": stored.rate_limit,
            "is_active": stored.is_active,
            "expires_at": stored.expires_at.isoformat() if stored.expires_at else None,
            "created_at": created_at.isoformat(),
            "last_used_at": last_used_at.isoformat() if last_used_at else None,
        }
        if as_json:
            sys.stdout.write(orjson.dumps(item).decode() + "\n")
        else:
            state = "active" if stored.is_active else "revoked"
            click.echo(
                f"{stored.id}  tenant={stored.tenant_id}  {state:<7}  "
                f"limit={stored.rate_limit}/min  name={stored.name or '-'}  "
                f"last_used={item['last_used_at'] or '-'}"
            )


@keys.command("set-rate-limit")
@click.argument("key_id", type=click.UUID)
@click.argument("rate_limit", type=click.IntRange(1, 10_000_000))
@click.pass_context
def keys_set_rate_limit(ctx: click.Context, key_id: uuid.UUID, rate_limit: int) -> None:
    """Change a key's requests per minute (applies within the key cache TTL, <= 60 s)."""
    if not set_rate_limit(_settings(ctx).database_url.get_secret_value(), key_id, rate_limit):
        raise click.ClickException(f"no key with id {key_id}")
    click.echo(f"{key_id}: {rate_limit} requests per minute")


@keys.command("revoke")
@click.argument("key_id", type=click.UUID)
@click.pass_context
def keys_revoke(ctx: click.Context, key_id: uuid.UUID) -> None:
    """Revoke a key: refused (403) everywhere within the key cache TTL (<= 60 s)."""
    if not revoke_key(_settings(ctx).database_url.get_secret_value(), key_id):
        raise click.ClickException(f"no key with id {key_id}")
    click.echo(f"revoked {key_id}")


if __name__ == "__main__":  # pragma: no cover
    main()
