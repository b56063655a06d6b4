from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_ingest.domain.timestamps import (
    format_rfc3339_ms,
    is_written_as_formatted,
    parse_rfc3339,
)


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
        "2024-12-05T10:00:00Z\n",  # `$` alone would match before the newline
        "\uff12\uff10\uff12\uff14-12-05T10:00:00Z",  # full-width digits: `\d` alone takes them
        "2024-12-05T10:00:0\u0661Z",  # an Arabic-Indic digit
        "2024-12-05T10:00:00+05:60",  # fromisoformat alone reads this as +06:00
        "2024-12-05T10:00:00+24:00",
    ],
)
def test_refuses_what_is_not_rfc3339(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|out of range|must be in"):
        parse_rfc3339(text)


def test_formats_utc_milliseconds_z() -> None:
    moment = datetime(2024, 12, 5, 10, 0, 0, 123987, tzinfo=UTC)
    assert format_rfc3339_ms(moment) == "2024-12-05T10:00:00.123Z"


MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)


@st.composite
def rfc3339_texts(draw: st.DrawFn) -> str:
    """Any RFC 3339 text `parse_rfc3339` accepts: every separator, fraction length and offset."""
    moment = draw(MOMENTS)
    separator = draw(st.sampled_from("Tt "))
    digits = draw(st.integers(min_value=0, max_value=9))
    fraction = f"{moment.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
    offset = draw(st.sampled_from(["Z", "z", "+00:00", "-00:00", "+02:00", "-11:30"]))
    return (
        moment.strftime("%Y-%m-%d").rjust(10, "0")
        + separator
        + moment.strftime("%H:%M:%S")
        + (f".{fraction}" if fraction else "")
        + offset
    )


@given(rfc3339_texts())
@settings(max_examples=3000, deadline=None)
def test_a_text_kept_as_sent_is_exactly_what_formatting_would_write(text: str) -> None:
    # The enrichment stores such a text itself instead of formatting the parsed time again.
    try:
        moment = parse_rfc3339(text)
    except ValueError:  # an offset that takes the moment out of datetime's range
        return
    if is_written_as_formatted(text):
        assert format_rfc3339_ms(moment) == text
    else:
        assert format_rfc3339_ms(moment) != text


@given(MOMENTS)
@settings(max_examples=3000, deadline=None)
def test_what_the_service_writes_is_kept_as_sent(moment: datetime) -> None:
    text = format_rfc3339_ms(moment)
    assert is_written_as_formatted(text)
    assert format_rfc3339_ms(parse_rfc3339(text)) == text
