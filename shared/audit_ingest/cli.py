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
from datetime import UTC, datetime, timedelta
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
from audit_ingest.cli_seals import seals as seals_group
from audit_ingest.domain.dead_letters import DeadLetter
from audit_ingest.domain.keys import DEFAULT_RATE_LIMIT, DEFAULT_SCOPES
from audit_ingest.domain.ratelimit import WINDOW_SECONDS
from audit_ingest.domain.timestamps import format_rfc3339_ms, parse_rfc3339
from audit_ingest.ops import dlq as dlq_ops
from audit_ingest.ops import replay as replay_ops
from audit_ingest.ops.kafka_client import client_config
from audit_ingest.ops.keys import parse_duration
from audit_ingest.ops.status import render_checks, stack_status
from audit_ingest.settings import Settings

DEFAULT_ENV_FILE = Path(".dev/stack.env")
_ENV_FILE = "audit_ingest.env_file"

# The topics' retention, as knative/base/topics/topics.yaml sets it (a test holds them equal).
EVENTS_RETENTION_MS = 7 * 24 * 3600 * 1000
DLQ_RETENTION_MS = 30 * 24 * 3600 * 1000
# Seals are kept forever: they are the evidence, long after the events expire from Kafka.
SEALS_RETENTION_MS = -1


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
@click.option(
    "--retention-ms",
    type=click.IntRange(1),
    default=EVENTS_RETENTION_MS,
    show_default=True,
    help="The events topic's retention (7 days: time for consumers to catch up).",
)
@click.option(
    "--dlq-retention-ms",
    type=click.IntRange(1),
    default=DLQ_RETENTION_MS,
    show_default=True,
    help="The dead-letter topic's retention (30 days: records an operator must look at).",
)
@click.pass_context
def topics_create(
    ctx: click.Context,
    partitions: int,
    replication_factor: int,
    min_insync_replicas: int | None,
    retention_ms: int,
    dlq_retention_ms: int,
) -> None:
    """Create the events, dead-letter and seals topics (no-op when they exist).

    The seals topic gets as many partitions as the events topic (the seal of events
    partition p is stored in seals partition p) and is kept forever.
    """
    settings = _settings(ctx)
    insync = min_insync_replicas or max(1, replication_factor - 1)
    config = {
        "min.insync.replicas": str(insync),
        "unclean.leader.election.enable": "false",
        "compression.type": "producer",
    }
    specs = [
        TopicSpec(
            settings.kafka_topic,
            partitions,
            replication_factor,
            {**config, "retention.ms": str(retention_ms)},
        ),
        TopicSpec(
            settings.kafka_dlq_topic,
            partitions,
            replication_factor,
            {**config, "retention.ms": str(dlq_retention_ms)},
        ),
        TopicSpec(
            settings.seals_topic,
            partitions,
            replication_factor,
            {**config, "retention.ms": str(SEALS_RETENTION_MS)},
        ),
    ]
    for name, state in create_topics(client_config(settings), specs).items():
        click.echo(f"{name}: {state}")


@main.group()
def events() -> None:
    """Records in the topics."""


@events.command("tail")
@click.option("--dlq", is_flag=True, help="Read the dead-letter topic instead.")
@click.option("--seals", is_flag=True, help="Read the seals topic instead (SEALS_TOPIC).")
@click.option(
    "--from-beginning",
    is_flag=True,
    help="Start with the records already stored, oldest first by record timestamp across "
    "all partitions; then new ones as they arrive.",
)
@click.option(
    "--max",
    "limit",
    type=click.IntRange(1),
    default=20,
    show_default=True,
    help="Print at most this many records, then stop.",
)
@click.option(
    "--idle",
    type=float,
    default=3.0,
    show_default=True,
    help="Stop after this many seconds without a new record.",
)
@click.pass_context
def events_tail(
    ctx: click.Context, dlq: bool, seals: bool, from_beginning: bool, limit: int, idle: float
) -> None:
    """Print records (key, headers, value) as they are stored.

    Without --from-beginning: records stored from now on, in the order they arrive. With it:
    the records stored when the command starts, ordered by record timestamp across the
    topic's partitions (each partition is read in offset order and merged, so `--max 1` is
    the oldest record of the topic), then records stored since, as they arrive. At most --max
    records of each partition are held in memory.
    """
    settings = _settings(ctx)
    topic = settings.kafka_dlq_topic if dlq else settings.kafka_topic
    topic = settings.seals_topic if seals else topic
    for record in read_records(
        client_config(settings),
        topic,
        from_beginning=from_beginning,
        limit=limit,
        idle_seconds=idle,
    ):
        headers = {name: value.decode(errors="replace") for name, value in record.headers}
        when = _record_time(record.timestamp_ms)
        click.echo(f"# {topic}[{record.partition}]@{record.offset} time={when} key={record.key!r}")
        click.echo(f"# headers {orjson.dumps(headers).decode()}")
        click.echo(record.value.decode(errors="replace"))


def _record_time(stamp_ms: int | None) -> str:
    if stamp_ms is None:
        return "-"
    try:
        return format_rfc3339_ms(datetime.fromtimestamp(stamp_ms / 1000, UTC))
    except (OverflowError, OSError, ValueError):
        return f"{stamp_ms}ms"


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
@click.option("--tenant", "tenant_id", type=click.UUID, default=None, help="Only this tenant.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array of objects.")
@click.pass_context
def keys_list(ctx: click.Context, tenant_id: uuid.UUID | None, as_json: bool) -> None:
    """List keys (never their secrets), oldest first.

    STATUS: active; expired (its EXPIRES_AT has passed, such as at the end of `keys rotate`'s
    grace period: requests get 403 "expired"); or revoked (403 "revoked"). EXPIRES_AT is `-`
    for a key without an expiry. --json prints the same fields (and `is_active`, `scopes`,
    `created_at`) as one JSON array.
    """
    rows = list_keys(_settings(ctx).database_url.get_secret_value(), tenant_id)
    if as_json:
        document = [
            {
                "id": row.stored.id,
                "tenant_id": row.stored.tenant_id,
                "name": row.stored.name,
                "scopes": list(row.stored.scopes),
                "rate_limit": row.stored.rate_limit,
                "status": row.status,
                "is_active": row.stored.is_active,
                "expires_at": _iso(row.stored.expires_at),
                "created_at": row.created_at.isoformat(),
                "last_used_at": _iso(row.last_used_at),
            }
            for row in rows
        ]
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
        return
    if not rows:
        click.echo("no keys" + (f" for tenant {tenant_id}" if tenant_id else ""))
        return
    table = [
        (
            row.stored.id,
            row.stored.tenant_id,
            row.status,
            _ms(row.stored.expires_at),
            str(row.stored.rate_limit),
            _ms(row.last_used_at),
            row.stored.name or "-",
        )
        for row in rows
    ]
    header = ("ID", "TENANT", "STATUS", "EXPIRES_AT", "LIMIT/MIN", "LAST_USED_AT", "NAME")
    for line in dlq_ops.render_table(header, table):
        click.echo(line)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _ms(moment: datetime | None) -> str:
    return format_rfc3339_ms(moment) if moment is not None else "-"


@keys.command("set-rate-limit")
@click.argument("key_id", type=click.UUID)
@click.argument("rate_limit", type=click.IntRange(1, 10_000_000))
@click.pass_context
def keys_set_rate_limit(ctx: click.Context, key_id: uuid.UUID, rate_limit: int) -> None:
    """Change a key's requests per minute.

    Not at once: each function process and `authorize` keeps its cached copy of the key for
    KEY_CACHE_TTL_SECONDS, and counts the key's requests against the old limit until that copy
    expires. Behind APISIX (AUTH_MODE=gateway), limit-count takes the new quota from
    `authorize` and applies it from the key's next 60 s window. The command prints the time
    by which the new limit applies.
    """
    settings = _settings(ctx)
    previous = set_rate_limit(settings.database_url.get_secret_value(), key_id, rate_limit)
    if previous is None:
        raise click.ClickException(f"no key with id {key_id}")
    click.echo(f"{key_id}: {rate_limit} requests per minute (was {previous})")
    if previous == rate_limit:
        return
    ttl = settings.key_cache_ttl_seconds
    cached_until = datetime.now(UTC) + timedelta(seconds=ttl)
    gateway_until = cached_until + timedelta(seconds=WINDOW_SECONDS)
    click.echo(
        f"Applies by {_utc(cached_until)} at the latest: until then, processes that cached the "
        f"key (the functions in inline mode, `authorize` in gateway mode; "
        f"KEY_CACHE_TTL_SECONDS = {ttl:g} s as this command reads it) count its requests "
        f"against {previous}/min.",
        err=True,
    )
    click.echo(
        f"Behind APISIX, limit-count applies it from the key's next {WINDOW_SECONDS} s window: "
        f"by {_utc(gateway_until)} at the latest.",
        err=True,
    )


def _utc(moment: datetime) -> str:
    """RFC 3339 in UTC, rounded up to the whole second (a deadline is never shown early)."""
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    if dry_run:
        report = _check(settings, letters)
        _print_problems(report)
        click.echo(f"dry run: {_dry_summary(report)}")
        return
    if not yes:
        # Ask only about records that would be written: check first (as --dry-run does).
        check = _check(settings, letters)
        writable = check.count("would_replay")
        if not writable:
            _print_problems(check)
            click.echo(f"nothing to replay: {_dry_summary(check)}")
            if missing:
                raise click.exceptions.Exit(1)
            return
        question = (
            f"{writable} of {len(letters)} record(s) would be written to {settings.kafka_topic} "
            f"({_dry_summary(check)})"
        )
        if sys.stdin is None or not sys.stdin.isatty():
            raise click.ClickException(
                f"{question}; stdin is not a terminal, so nobody can confirm: pass --yes to "
                "replay without asking (--dry-run to only check)"
            )
        click.confirm(f"{question}. Replay?", abort=True)
    try:
        with click.progressbar(length=len(letters), label="replaying", file=sys.stderr) as bar:
            report = asyncio.run(_replay(settings, letters, lambda _: bar.update(1)))
    except replay_ops.ReplayAborted as exc:
        raise click.ClickException(str(exc)) from None
    _print_problems(report)
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


def _check(settings: Settings, letters: list[DeadLetter]) -> replay_ops.ReplayReport:
    """What replaying would do (nothing is written), with a progress bar on stderr."""
    try:
        with click.progressbar(length=len(letters), label="checking", file=sys.stderr) as bar:
            return asyncio.run(replay_ops.dry_run(settings, letters, lambda _: bar.update(1)))
    except replay_ops.ReplayAborted as exc:
        raise click.ClickException(str(exc)) from None


def _dry_summary(report: replay_ops.ReplayReport) -> str:
    return (
        f"would replay {report.count('would_replay')}, "
        f"already replayed {report.count('already_replayed')}, "
        f"still invalid {report.count('still_invalid')}"
    )


def _print_problems(report: replay_ops.ReplayReport) -> None:
    for result in report.results:
        if result.status in ("still_invalid", "failed"):
            state = result.status.replace("_", " ")
            click.echo(
                f"{result.letter.position}  {state}: {result.detail}  "
                f"(tenant {result.letter.tenant_id or '-'}, reason {result.letter.reason or '-'})"
            )


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


main.add_command(seals_group)

if __name__ == "__main__":  # pragma: no cover
    main()
