"""The bench measures the services on an interpreter built like the image's (bench.interpreter)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import interpreter

DEBIAN = Path("/usr/bin/python3.11")


@pytest.mark.parametrize("setting", [None, "", "auto", " auto "])
def test_auto_takes_debians_build_when_it_is_installed(setting: str | None) -> None:
    choice = interpreter.choose(setting, DEBIAN, system_exists=True)
    assert choice.python == DEBIAN
    assert "PGO" in choice.reason


def test_auto_falls_back_to_the_projects_interpreter_and_says_so() -> None:
    choice = interpreter.choose("auto", DEBIAN, system_exists=False)
    assert choice.python is None
    assert str(DEBIAN) in choice.reason and "project" in choice.reason


def test_project_keeps_the_projects_interpreter_even_when_debians_is_there() -> None:
    choice = interpreter.choose("project", DEBIAN, system_exists=True)
    assert choice.python is None


def test_a_path_is_taken_as_given() -> None:
    choice = interpreter.choose("/opt/python/bin/python3.11", DEBIAN, system_exists=True)
    assert choice.python == Path("/opt/python/bin/python3.11")


def test_the_project_choice_runs_the_services_from_the_projects_own_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setenv("BENCH_PYTHON", "project")
    interpreter.service_bin.cache_clear()
    try:
        assert interpreter.service_bin() == Path(sys.executable).parent
    finally:
        interpreter.service_bin.cache_clear()


def test_describe_names_the_running_interpreter() -> None:
    import platform
    import sys

    described = interpreter.describe(Path(sys.executable))
    assert described["python"] == platform.python_version()
    assert Path(described["executable"]).name.startswith("python")
    assert "configure" in described
