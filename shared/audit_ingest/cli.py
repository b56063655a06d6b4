"""`audit-ingest`: the operator's command line (schema, topics, API keys, dead letters, status).

It reads the same settings as the functions. When `.dev/stack.env` exists (written by
`make run`), it is read too, for any setting the environment does not set.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import click
import orjson
from confluent_kafka import KafkaException
from dotenv import dotenv_values

from audit_ingest.adapters.kafka_admin import TopicSpec, create_topics
from audit_ingest.adapters.kafka_reader import read_records
from audit_ingest.adapters.key_admin import (
    RotationError,
    create_key,
    list_keys,
    revoke_key,
    rotate_key,
    set_rate_limit,
)
from audit_ingest.adapters.migrations import migrate
from audit_ingest.domain.dead_letters import DeadLetter
from audit_ingest.domain.keys import DEFAULT_RATE_LIMIT, DEFAULT_SCOPES
from audit_ingest.domain.timestamps import parse_rfc3339
from audit_ingest.ops import dlq as dlq_ops
from audit_ingest.ops import replay as replay_ops
from audit_ingest.ops.kafka_client import client_config
from audit_ingest.ops.keys import parse_duration
from audit_ingest.ops.status import render_checks, stack_status
from audit_ingest.settings import Settings

DEFAULT_ENV_FILE = Path(".dev/stack.env")
_ENV_FILE = "audit_ingest.env_file"


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
    ctx.meta[_ENV_FILE] = path


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
    for name, state in create_topics(client_config(settings), specs).items():
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
        client_config(settings),
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


def _parse_grace(_: click.Context, __: click.Parameter, value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; 0 ends the old key now") from None


@keys.command("rotate")
@click.argument("key_id", type=click.UUID)
@click.option(
    "--grace",
    default="24h",
    show_default=True,
    callback=_parse_grace,
    help="How long the old key keeps working: 24h, 30m, 90s or seconds; 0 ends it now.",
)
@click.option(
    "--expires-at", default=None, callback=_parse_time, help="The new key's expiry (RFC 3339)."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def keys_rotate(
    ctx: click.Context,
    key_id: uuid.UUID,
    grace: timedelta,
    expires_at: datetime | None,
    as_json: bool,
) -> None:
    """Issue a successor of a key (same tenant, name, scopes, rate limit) and let the old key
    expire after the grace period. The new key is printed once; the old one never is."""
    try:
        rotation = rotate_key(
            _settings(ctx).database_url.get_secret_value(),
            key_id,
            grace=grace,
            expires_at=expires_at,
        )
    except RotationError as exc:
        raise click.ClickException(str(exc)) from None
    new, old = rotation.new.stored, rotation.old
    if as_json:
        document = {
            "id": new.id,
            "key": rotation.new.secret,
            "tenant_id": new.tenant_id,
            "name": new.name,
            "scopes": list(new.scopes),
            "rate_limit": new.rate_limit,
            "expires_at": new.expires_at.isoformat() if new.expires_at else None,
            "created_at": rotation.new.created_at.isoformat(),
            "replaces": {"id": old.id, "expires_at": rotation.old_expires_at.isoformat()},
        }
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
    else:
        click.echo(f"id:         {new.id}  (replaces {old.id})")
        click.echo(f"tenant:     {new.tenant_id}   name: {new.name or '-'}")
        click.echo(f"rate limit: {new.rate_limit}/min   scopes: {','.join(new.scopes)}")
        click.echo(f"key:        {rotation.new.secret}")
        ends = rotation.old_expires_at
        if ends <= rotation.rotated_at:
            click.echo(f"old key {old.id}: expired now ({ends.isoformat()})")
        else:
            click.echo(f"old key {old.id}: works until {ends.isoformat()}")
        click.echo("Store the key now: it is not shown again.", err=True)
    click.echo(
        "Running functions apply the old key's new expiry within their key cache TTL (<= 60 s).",
        err=True,
    )


@main.group()
def dlq() -> None:
    """The dead-letter topic: what is in it, and replaying what is valid now."""


def _parse_since(_: click.Context, __: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return replay_ops.parse_since(value)
    except ValueError:
        raise click.BadParameter(
            "use RFC 3339 (2027-01-01T00:00:00Z), a date (2027-01-01) or a duration back "
            "from now (24h)"
        ) from None


def _dlq_filter_options(command: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(
        [
            click.option("--tenant", default=None, help="Only this tenant id."),
            click.option(
                "--reason", default=None, help="Only this reason (validation_failed, ...)."
            ),
            click.option("--request-id", default=None, help="Only this original request id."),
            click.option(
                "--since",
                default=None,
                callback=_parse_since,
                help="Only records received since: RFC 3339, a date, or a duration (24h).",
            ),
        ]
    ):
        command = option(command)
    return command


def _reader(settings: Settings) -> dlq_ops.DlqReader:
    return dlq_ops.DlqReader(client_config(settings), settings.kafka_dlq_topic)


@dlq.command("inspect")
@_dlq_filter_options
@click.option(
    "--max",
    "limit",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="How many of the latest matching records to list.",
)
@click.option(
    "--scan",
    type=click.IntRange(1),
    default=10_000,
    show_default=True,
    help="Read at most this many of the latest records of each partition.",
)
@click.option("--show-values", is_flag=True, help="Print each listed record's original bytes.")
@click.pass_context
def dlq_inspect(
    ctx: click.Context,
    tenant: str | None,
    reason: str | None,
    request_id: str | None,
    since: datetime | None,
    limit: int,
    scan: int,
    show_values: bool,
) -> None:
    """Counts of dead letters per (reason, tenant), then the latest ones.

    Values (the events as sent) are not printed unless --show-values is given.
    """
    settings = _settings(ctx)
    matches = dlq_ops.DlqFilter(tenant=tenant, reason=reason, request_id=request_id, since=since)
    stats = dlq_ops.ScanStats()
    try:
        with _reader(settings) as reader:
            inspection = dlq_ops.inspect(
                reader.scan(tail=scan, since=since, stats=stats), matches, latest=limit
            )
    except (KafkaException, TimeoutError) as exc:
        raise click.ClickException(f"cannot read {settings.kafka_dlq_topic}: {exc}") from None
    for line in dlq_ops.render_inspection(
        inspection, topic=settings.kafka_dlq_topic, stats=stats, show_values=show_values
    ):
        click.echo(line)


@dlq.command("replay")
@click.option(
    "--partition",
    "partitions",
    type=click.IntRange(0),
    multiple=True,
    help="With --offset: one record to replay (repeat the pair for more).",
)
@click.option("--offset", "offsets", type=click.IntRange(0), multiple=True)
@_dlq_filter_options
@click.option(
    "--max",
    "limit",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Replay at most this many records (the oldest matching first).",
)
@click.option("--dry-run", is_flag=True, help="Check the records and report; produce nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def dlq_replay(
    ctx: click.Context,
    partitions: tuple[int, ...],
    offsets: tuple[int, ...],
    tenant: str | None,
    reason: str | None,
    request_id: str | None,
    since: datetime | None,
    limit: int,
    dry_run: bool,
    yes: bool,
) -> None:
    """Re-validate dead letters with today's rules and store the valid ones, once.

    Each record's original bytes go through the ingest path as one event of its tenant and
    API key (request id `dlq-replay:<partition>:<offset>`, original receive time). A record
    already replayed is not stored again; one still invalid is reported, not dead-lettered
    again.
    """
    settings = _settings(ctx)
    if len(partitions) != len(offsets):
        raise click.UsageError("give --partition and --offset in pairs")
    matches = dlq_ops.DlqFilter(tenant=tenant, reason=reason, request_id=request_id, since=since)
    missing: list[str] = []
    try:
        with _reader(settings) as reader:
            if partitions:
                wanted = list(zip(partitions, offsets, strict=True))
                found = reader.fetch(wanted)
                missing = [f"{p}@{o}" for p, o in wanted if (p, o) not in found]
                for position in missing:
                    click.echo(f"{position}: no such record", err=True)
                letters, matched = dlq_ops.select_oldest(found.values(), matches, limit=limit)
            else:
                letters, matched = dlq_ops.select_oldest(
                    reader.scan(since=since), matches, limit=limit
                )
    except (KafkaException, TimeoutError) as exc:
        raise click.ClickException(f"cannot read {settings.kafka_dlq_topic}: {exc}") from None
    if not letters:
        click.echo("no dead letters match")
        if missing:
            raise click.exceptions.Exit(1)
        return
    more = f" (the oldest {len(letters)} of {matched} matching)" if matched > len(letters) else ""
    click.echo(f"{len(letters)} record(s) selected{more}:")
    selection = dlq_ops.inspect(letters, dlq_ops.DlqFilter(), latest=0)
    for line in dlq_ops.render_table(
        ("reason", "tenant", "records"),
        [(r or "-", t or "-", str(n)) for r, t, n in selection.counts],
    ):
        click.echo("  " + line)
    if not dry_run and not yes:
        click.confirm(f"Replay them to {settings.kafka_topic}?", abort=True)
    label = "checking" if dry_run else "replaying"
    try:
        with click.progressbar(length=len(letters), label=label, file=sys.stderr) as bar:
            if dry_run:
                report = asyncio.run(replay_ops.dry_run(settings, letters, lambda _: bar.update(1)))
            else:
                report = asyncio.run(_replay(settings, letters, lambda _: bar.update(1)))
    except replay_ops.ReplayAborted as exc:
        raise click.ClickException(str(exc)) from None
    for result in report.results:
        if result.status in ("still_invalid", "failed"):
            state = result.status.replace("_", " ")
            click.echo(
                f"{result.letter.position}  {state}: {result.detail}  "
                f"(tenant {result.letter.tenant_id or '-'}, reason {result.letter.reason or '-'})"
            )
    if dry_run:
        click.echo(
            f"dry run: would replay {report.count('would_replay')}, "
            f"already replayed {report.count('already_replayed')}, "
            f"still invalid {report.count('still_invalid')}"
        )
        return
    not_reached = len(letters) - len(report.results)
    click.echo(
        f"replayed {report.count('replayed')}, "
        f"already replayed {report.count('already_replayed')}, "
        f"still invalid {report.count('still_invalid')}, "
        f"failed {report.count('failed')}" + (f", not reached {not_reached}" if not_reached else "")
    )
    if report.aborted:
        raise click.ClickException(f"stopped: {report.aborted}")
    if report.count("failed") or missing:
        raise click.exceptions.Exit(1)


async def _replay(
    settings: Settings,
    letters: list[DeadLetter],
    progress: Callable[[replay_ops.ReplayResult], None],
) -> replay_ops.ReplayReport:
    replayer = replay_ops.Replayer(settings)
    try:
        return await replayer.run(letters, progress)
    finally:
        left = await replayer.close()
        if left:
            click.echo(f"warning: {left} record(s) not flushed to the broker", err=True)


@main.group()
def stack() -> None:
    """The service's dependencies."""


def _ingest_url(ctx: click.Context) -> str | None:
    if os.environ.get("INGEST_URL"):
        return os.environ["INGEST_URL"]
    path = ctx.find_root().meta.get(_ENV_FILE)
    if isinstance(path, Path) and path.exists():
        value = dotenv_values(path).get("INGEST_URL")
        return value or None
    return None


@stack.command("status")
@click.option(
    "--ingest-url",
    default=None,
    help="The service to ask GET /ready (default: INGEST_URL, also read from the env file).",
)
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=5.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def stack_status_command(
    ctx: click.Context, ingest_url: str | None, timeout: float, as_json: bool
) -> None:
    """Reachability and latency of PostgreSQL, Redis, Kafka and the service's /ready.

    Exits 1 when something is down or degraded (missing migrations or topics, partitions
    without a leader or under-replicated, /ready not 200).
    """
    checks = stack_status(
        _settings(ctx), ingest_url=ingest_url or _ingest_url(ctx), timeout=timeout
    )
    healthy = all(check.healthy for check in checks)
    if as_json:
        document = {"ok": healthy, "checks": [check.as_dict() for check in checks]}
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
    else:
        for line in render_checks(checks):
            click.echo(line)
        failing = [check.name for check in checks if not check.healthy]
        click.echo("all up" if healthy else f"not healthy: {', '.join(failing)}")
    if not healthy:
        raise click.exceptions.Exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
