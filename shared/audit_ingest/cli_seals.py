"""`audit-ingest seals ...`: run the sealer, verify seals, prove and check inclusion
(docs/integrity.md). Registered on the main group by cli.py."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
import orjson
from confluent_kafka import KafkaException

from audit_ingest.domain.seal_errors import SealError
from audit_ingest.domain.seal_export import parse_export
from audit_ingest.domain.seal_keys import KeyRing, SigningKey
from audit_ingest.domain.seal_proof import check_proof
from audit_ingest.domain.seal_verify import PartitionReport
from audit_ingest.settings import Settings

_PUBLIC_KEYS = click.option(
    "--public-keys",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The public-keys document (default: SEAL_PUBLIC_KEYS_FILE, else the public half of "
    "SEAL_SIGNING_KEY_FILE).",
)
_RANGE = (
    click.option("--from", "start", type=click.IntRange(0), default=None, help="First offset."),
    click.option("--to", "end", type=click.IntRange(0), default=None, help="Last offset."),
)


def _settings(ctx: click.Context) -> Settings:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group()
def seals() -> None:
    """Tamper evidence: signed checkpoints of the events topic."""


@seals.command("run")
@click.pass_context
def seals_run(ctx: click.Context) -> None:
    """Run the sealer until SIGTERM (a consumer of KAFKA_TOPIC writing SEALS_TOPIC)."""
    from prometheus_client import start_http_server

    from audit_ingest.logs import configure_logging
    from audit_ingest.ops.seals import signing_key
    from audit_ingest.sealer.runner import Sealer

    settings = _settings(ctx)
    configure_logging(settings.log_level)
    try:
        key = signing_key(settings)
    except SealError as exc:
        raise _fail(exc) from None
    if settings.sealer_metrics_port:
        start_http_server(settings.sealer_metrics_port)
    sealer = Sealer(settings, key)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: sealer.stop())
    click.echo(
        f"sealing {settings.kafka_topic} -> {settings.seals_topic} as {key.key_id}", err=True
    )
    sealer.run()


def _print_reports(reports: list[PartitionReport], as_json: bool) -> None:
    if as_json:
        document = {
            "ok": all(r.ok for r in reports),
            "partitions": [
                {
                    "partition": r.partition,
                    "ok": r.ok,
                    "seals": r.seals,
                    "records": r.records,
                    "from": r.checked_from,
                    "to": r.checked_to,
                    "unsealed": r.unsealed,
                    "finding": r.finding.as_dict() if r.finding else None,
                    "notes": r.notes,
                }
                for r in reports
            ],
        }
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
    else:
        for r in reports:
            span = f"offsets {r.checked_from}-{r.checked_to}" if r.records else "no records"
            summary = f"{r.seals} seal(s), {span} ({r.records} checked), {r.unsealed} unsealed"
            if r.finding is None:
                click.echo(f"partition {r.partition}: ok: {summary}")
            else:
                f = r.finding
                click.echo(
                    f"partition {r.partition}: FAILED at offset {f.offset}: {f.reason}: "
                    f"{f.detail} ({summary})"
                )
            for note in r.notes:
                click.echo(f"partition {r.partition}: note: {note}")
    if not all(r.ok for r in reports):
        raise click.exceptions.Exit(1)


@seals.command("verify")
@click.option("--partition", "partitions", type=click.IntRange(0), multiple=True)
@_RANGE[0]
@_RANGE[1]
@_PUBLIC_KEYS
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def seals_verify(
    ctx: click.Context,
    partitions: tuple[int, ...],
    start: int | None,
    end: int | None,
    public_keys: Path | None,
    as_json: bool,
) -> None:
    """Recompute the sealed records from the topic and check every checkpoint.

    Reports, per partition, the first offset that fails and why (changed, missing,
    reordered, unexpected, bad_signature, bad_seal, broken_chain); exits 1 if any does.
    """
    from audit_ingest.ops import seals as ops

    settings = _settings(ctx)
    try:
        keys = ops.keyring(settings, public_keys)
        reports = ops.verify_topic(settings, keys, list(partitions) or None, start, end)
    except (SealError, KafkaException, TimeoutError) as exc:
        raise _fail(exc) from None
    _print_reports(reports, as_json)


@seals.command("verify-export")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--seals",
    "seals_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The seals as exported (`events tail --seals`); default: read SEALS_TOPIC.",
)
@_RANGE[0]
@_RANGE[1]
@_PUBLIC_KEYS
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def seals_verify_export(
    ctx: click.Context,
    file: Path,
    seals_file: Path | None,
    start: int | None,
    end: int | None,
    public_keys: Path | None,
    as_json: bool,
) -> None:
    """Check an exported copy (as `events tail` prints it) against the seals.

    Each partition in FILE is expected whole from its lowest to its highest offset (or
    --from/--to); records after the last seal are counted as unsealed.
    """
    from audit_ingest.ops import seals as ops

    settings = _settings(ctx)
    try:
        keys = ops.keyring(settings, public_keys)
        events = parse_export(file.read_text(errors="replace"))
        sealed = parse_export(seals_file.read_text()) if seals_file else None
        reports = ops.verify_export(settings, keys, events, sealed, start, end)
    except (SealError, KafkaException, TimeoutError) as exc:
        raise _fail(exc) from None
    _print_reports(reports, as_json)


@seals.command("prove")
@click.argument("event_id")
@click.option("--partition", "partitions", type=click.IntRange(0), multiple=True)
@click.option(
    "--event-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the event, as stored, to this file.",
)
@click.pass_context
def seals_prove(
    ctx: click.Context, event_id: str, partitions: tuple[int, ...], event_out: Path | None
) -> None:
    """Print the inclusion proof (JSON) of the event with EVENT_ID.

    Scans the events topic (or the --partition given) for the event.
    """
    from audit_ingest.ops import seals as ops

    try:
        proof, value = ops.prove(_settings(ctx), event_id, list(partitions) or None)
    except (SealError, KafkaException, TimeoutError) as exc:
        raise _fail(exc) from None
    if event_out is not None:
        event_out.write_bytes(value)
    sys.stdout.write(orjson.dumps(proof, option=orjson.OPT_INDENT_2).decode() + "\n")


def _read_json(path: Path, what: str) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise click.ClickException(f"{path}: not a JSON {what}: {exc}") from None


@seals.command("check-proof")
@click.argument("proof_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--event",
    "event_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The event as stored (JSON; any key order or whitespace).",
)
@click.option(
    "--public-keys",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    required=True,
    help="The public-keys document.",
)
def seals_check_proof(proof_file: Path, event_file: Path, public_keys: Path) -> None:
    """Check an inclusion proof offline: no Kafka, only the files given. Exits 1 if it fails."""
    proof = _read_json(proof_file, "proof")
    try:
        keys = KeyRing.from_document(_read_json(public_keys, "public-keys document"))
        checkpoint = check_proof(proof, event_file.read_bytes(), keys)
    except SealError as exc:
        click.echo(f"proof FAILED: {exc}")
        raise click.exceptions.Exit(1) from None
    click.echo(
        f"proof ok: {checkpoint.topic}[{checkpoint.partition}]@{proof['offset']} is in seal "
        f"{checkpoint.sequence} (offsets {checkpoint.first_offset}-{checkpoint.last_offset}), "
        f"signed by {checkpoint.key_id} at {checkpoint.sealed_at}"
    )


@seals.command("public-keys")
@click.option(
    "--key",
    "key_files",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    multiple=True,
    help="A PEM key (public, or private: its public half); default: SEAL_SIGNING_KEY_FILE.",
)
@click.option(
    "--merge",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="An earlier document whose keys are kept (rotation: old seals keep verifying).",
)
@click.pass_context
def seals_public_keys(ctx: click.Context, key_files: tuple[Path, ...], merge: Path | None) -> None:
    """Print the public-keys document (JSON) to hand to auditors."""
    settings = _settings(ctx)
    files = list(key_files)
    if not files and settings.seal_signing_key_file:
        files = [Path(settings.seal_signing_key_file)]
    if not files and merge is None:
        raise click.UsageError("give --key (or set SEAL_SIGNING_KEY_FILE)")
    try:
        ring = (
            KeyRing.from_document(_read_json(merge, "public-keys document")) if merge else KeyRing()
        )
        for path in files:
            ring = ring.merged(KeyRing.from_pem(path.read_bytes(), field=str(path)))
    except SealError as exc:
        raise _fail(exc) from None
    sys.stdout.write(orjson.dumps(ring.document(), option=orjson.OPT_INDENT_2).decode() + "\n")


@seals.command("keygen")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def seals_keygen(out: Path) -> None:
    """Write a new Ed25519 signing key (PEM, mode 0600) to OUT and print its key id."""
    key = SigningKey.generate()
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.pem())
    click.echo(key.key_id)
