"""The package's public surface is exactly `__all__`, and importing it builds nothing."""

import subprocess
import sys

import audit_ingest


def test_all_names_exist_and_are_sorted() -> None:
    assert audit_ingest.__all__ == sorted(audit_ingest.__all__)
    for name in audit_ingest.__all__:
        assert hasattr(audit_ingest, name), name


def test_import_creates_no_client_and_reads_no_environment() -> None:
    # A fresh interpreter: importing the functions' modules must not build the app (clients
    # are created on the first request), and must not need any setting to be present.
    code = (
        "import audit_ingest.bootstrap as b, audit_ingest.settings as s;"
        "import audit_ingest.http.endpoint;"
        "assert b._app is None;"
        "assert s.get_settings.cache_info().currsize == 0;"
        "print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PATH": ""}
    )
    assert result.stdout.strip() == "ok"
