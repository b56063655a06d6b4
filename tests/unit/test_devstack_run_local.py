"""`make run`'s own behaviour (devstack.run_local, devstack.kafka_libs): what it says on start
and on stop, a Ctrl-C that `uv run` delivers twice, and progress during a long fetch."""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from devstack.errors import ToolMissingError
from devstack.kafka_libs import POM, kafka_version, run_with_heartbeat
from devstack.provision import DemoKey
from devstack.run_local import Stop, banner, describe_key, stop_on_signals, stopped_message

pytestmark = pytest.mark.unit

SECRET = "aik_" + "A" * 46


def key(new_because: str | None) -> DemoKey:
    return DemoKey(SECRET, "key-id", "tenant-id", Path(".dev/demo-key"), new_because)


def test_a_kept_key_is_said_to_be_the_same() -> None:
    assert describe_key(key(None)) == "demo API key (the same as on the last run):"


def test_a_new_key_says_why() -> None:
    line = describe_key(key("the kept one (id k) was refused: The API key has been revoked"))
    assert line == (
        "demo API key (NEW: the kept one (id k) was refused: The API key has been revoked):"
    )


def test_the_banner_prints_the_key_where_it_is_kept_and_a_curl_with_it() -> None:
    text = banner(18080, Path(".dev/stack.env"), key(None))
    assert f"demo API key (the same as on the last run):\n  {SECRET}\n" in text
    assert "kept in .dev/demo-key (mode 0600; a local development convenience)" in text
    assert "export KEY=$(cat .dev/demo-key)" in text
    assert f"X-API-Key: {SECRET}" in text
    assert "http://127.0.0.1:18080/v1/events" in text
    assert "uv run --no-dev audit-ingest keys list" in text
    assert "the data stays in .dev/" in text


def test_the_stop_says_what_stopped_and_where_the_data_is() -> None:
    text = stopped_message(["postgres", "redis", "kafka"], [], functions=True)
    assert text.startswith("stopped the functions, PostgreSQL, Redis, Kafka. ")
    assert "The data stays in .dev/" in text and "demo key" in text
    assert "`make clean` deletes it" in text
    external = stopped_message(["redis", "kafka"], ["postgres"], functions=False)
    assert external.startswith("stopped Redis, Kafka (PostgreSQL: external, left running).")
    assert stopped_message([], [], functions=False).startswith("nothing was running.")


def deliver(sig: signal.Signals) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(5)  # the handler runs at the latest here (the sleep is interrupted)


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("restore_signals")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_the_first_signal_stops_and_a_repeat_is_ignored(sig: signal.Signals) -> None:
    """`uv run` forwards the terminal's Ctrl-C: the process gets it twice."""
    stop_on_signals()
    with pytest.raises(Stop) as stopped:
        deliver(sig)
    assert stopped.value.signum == sig
    os.kill(os.getpid(), signal.SIGINT)  # the repeat: the stop goes on
    os.kill(os.getpid(), signal.SIGTERM)


def test_the_pom_names_the_kafka_release() -> None:
    assert kafka_version(POM) == "4.1.1"


def test_a_long_command_shows_it_is_alive(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="devstack")
    argv = [sys.executable, "-c", "import time; time.sleep(0.5); print('done')"]
    code, output = run_with_heartbeat(argv, what="fetching things", heartbeat=0.1)
    assert (code, output.strip()) == (0, "done")
    beats = [r.getMessage() for r in caplog.records if "still fetching things" in r.getMessage()]
    assert len(beats) >= 2
    assert beats[0].endswith("s so far)…")


def test_a_command_past_its_timeout_is_killed() -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    with pytest.raises(ToolMissingError, match="timed out after 0s fetching things"):
        run_with_heartbeat(argv, what="fetching things", timeout=0.2, heartbeat=0.1)
