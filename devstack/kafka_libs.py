"""Fetch the Kafka broker's jars from Maven Central with devstack/kafka/pom.xml, once.

The cache directory holds the jars plus a stamp naming the pom's sha256 and
every jar; it is complete only when the stamp matches the current pom and all
listed jars exist. Fetching goes to a scratch directory renamed into place
under a file lock, so concurrent or interrupted fetches never leave a
half-filled cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import re
import shutil
import subprocess
import time
from pathlib import Path

from devstack.errors import ToolMissingError
from devstack.sysdeps import apt_install, find_program

log = logging.getLogger(__name__)

POM = Path(__file__).resolve().parent / "kafka" / "pom.xml"
STAMP = "devstack-libs.json"
MVN_TIMEOUT_S = 900.0
HEARTBEAT_S = 15.0


def kafka_version(pom: Path = POM) -> str:
    """The Kafka release the pom fetches (its `kafka.version` property), or "" if absent."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    return found.group(1).strip() if found else ""


def pom_sha256(pom: Path = POM) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def is_complete(dest: Path, pom: Path = POM) -> bool:
    try:
        stamp = json.loads((dest / STAMP).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    jars = stamp.get("jars") or []
    return (
        stamp.get("pom_sha256") == pom_sha256(pom)
        and bool(jars)
        and all((dest / jar).is_file() for jar in jars)
    )


def _mvn() -> Path:
    found = find_program("mvn")
    if found is None:
        apt_install(["maven"], needed_for="Maven (mvn, to fetch the Kafka jars)")
        found = find_program("mvn")
    if found is None:
        raise ToolMissingError("maven was installed but mvn was not found")
    return found


def run_with_heartbeat(
    argv: list[str],
    *,
    what: str,
    timeout: float = MVN_TIMEOUT_S,
    heartbeat: float = HEARTBEAT_S,
) -> tuple[int, str]:
    """Run `argv` to completion (exit code, output), logging "still <what>" every `heartbeat`
    seconds so a long silent download shows it is alive."""
    started = time.monotonic()
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
    ) as process:
        while True:
            try:
                output, _ = process.communicate(timeout=heartbeat)
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - started
                if elapsed >= timeout:
                    process.kill()
                    process.communicate()
                    raise ToolMissingError(
                        f"{Path(argv[0]).name} timed out after {timeout:.0f}s {what}"
                    ) from None
                log.info("still %s (%.0f s so far)…", what, elapsed)
            else:
                return process.returncode, output


def _fetch(scratch: Path, pom: Path) -> None:
    argv = [
        str(_mvn()),
        "-B",
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={scratch}",
    ]
    returncode, output = run_with_heartbeat(argv, what="fetching the Kafka jars")
    jars = sorted(p.name for p in scratch.glob("*.jar"))
    if returncode != 0 or not any(j.startswith("kafka_2.13-") for j in jars):
        tail = "\n".join(output.splitlines()[-30:])
        raise ToolMissingError(
            f"could not fetch the Kafka jars from Maven Central (mvn exit {returncode}):\n{tail}"
        )
    stamp = {"pom_sha256": pom_sha256(pom), "jars": jars}
    (scratch / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")


def ensure_kafka_libs(dest: Path, pom: Path = POM) -> Path:
    """Return ``dest`` holding the Kafka runtime jars, running mvn only if needed."""
    dest = dest.resolve()
    if is_complete(dest, pom):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock_path = dest.parent / f".{dest.name}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent fetch finishes first
        if is_complete(dest, pom):
            return dest
        scratch = dest.parent / f".{dest.name}.fetching"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        log.info(
            "kafka: fetching Kafka %s jars with Maven into %s "
            "(first run only; a minute or two on a fresh Maven cache)…",
            kafka_version(pom) or "broker",
            dest,
        )
        started = time.monotonic()
        try:
            _fetch(scratch, pom)
            shutil.rmtree(dest, ignore_errors=True)
            scratch.rename(dest)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        log.info(
            "kafka: fetched %d jars in %.1f s",
            len(list(dest.glob("*.jar"))),
            time.monotonic() - started,
        )
    return dest
