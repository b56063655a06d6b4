"""Cold start: a function imports only what its mode uses (bench/coldstart.py measures it)."""

from __future__ import annotations

import subprocess
import sys

from tests.stack import REPO

PROBE = """
import sys
from audit_ingest.serve import asgi_app
from audit_ingest.bootstrap import build_app
from audit_ingest.settings import Settings

asgi_app("ingest_event", "functions/ingest_event/main.py")
build_app(Settings(auth_mode="gateway", gateway_signing_secret="s" * 32))
unused = ("psycopg", "psycopg_pool", "audit_ingest.auth_eventing")
print(sorted(m for m in unused if m in sys.modules))
"""


def test_gateway_mode_never_imports_the_key_store_or_eventing() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
