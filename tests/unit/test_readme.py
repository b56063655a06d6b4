"""The README's settings table names every setting, and only real ones."""

import re
from pathlib import Path

from audit_ingest.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def settings_table() -> str:
    start = README.index("## Settings")
    return README[start : README.index("\n## ", start + 1)]


def test_every_setting_is_documented() -> None:
    table = settings_table()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in table]
    assert missing == []


def test_no_documented_setting_is_made_up() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)`", settings_table(), flags=re.M))
    documented |= set(re.findall(r"`([A-Z][A-Z_]+)`", settings_table()))
    known = {name.upper() for name in Settings.model_fields} | {
        "REDIS_URL",
        "DATABASE_URL",
        "KAFKA_BOOTSTRAP_SERVERS",
    }
    # Values and other names quoted in the prose of the table (not settings) are listed here.
    prose = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL", "DEBUG", "INFO", "WARNING", "ERROR"}
    assert documented - known - prose == set()
