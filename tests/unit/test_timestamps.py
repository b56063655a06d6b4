from datetime import UTC, datetime

import pytest

from audit_ingest.domain.timestamps import format_rfc3339_ms, parse_rfc3339


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-12-05T10:00:00Z", datetime(2024, 12, 5, 10, tzinfo=UTC)),
        ("2024-12-05T12:00:00+02:00", datetime(2024, 12, 5, 10, tzinfo=UTC)),
        ("2024-12-05t10:00:00.5z", datetime(2024, 12, 5, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2024-12-05 10:00:00.123456789Z", datetime(2024, 12, 5, 10, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_parses_rfc3339(text: str, expected: datetime) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2024-12-05",
        "2024-12-05T10:00:00",
        "2024-13-05T10:00:00Z",
        "yesterday",
        "1733392800",
        "2024-02-30T00:00:00Z",
    ],
)
def test_refuses_what_is_not_rfc3339(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|out of range|must be in"):
        parse_rfc3339(text)


def test_formats_utc_milliseconds_z() -> None:
    moment = datetime(2024, 12, 5, 10, 0, 0, 123987, tzinfo=UTC)
    assert format_rfc3339_ms(moment) == "2024-12-05T10:00:00.123Z"
