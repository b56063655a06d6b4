"""RFC 8785 (JCS) canonical JSON of a stored record's value, or None when it has none.

A value has a canonical form when it is I-JSON (RFC 7493): UTF-8 without a byte order mark,
no lone surrogates, unique member names, no NaN/Infinity, every number an IEEE 754 double
(integers, written without fraction or exponent, within +-(2**53 - 1)). The `rfc8785`
package (Trail of Bits) is the reference implementation.

Why a fast path: `rfc8785` is pure Python (~100 us for a 650-byte event), the sealer's main
cost. For the values the ingest path writes (strings, booleans, small integers; member names
below U+E000), orjson with sorted keys emits the same bytes: the same escapes (tests hold
them equal, property-tested against `rfc8785`), and UTF-8 byte order equals JCS's UTF-16
order for names below U+E000. Anything else (a float, a higher member name) takes `rfc8785`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import rfc8785

_MAX_SAFE = 2**53 - 1


class _NotIJson(ValueError):
    pass


class _Scan:
    """Parser hooks that refuse what I-JSON refuses and note what the fast path cannot do."""

    __slots__ = ("slow",)

    def __init__(self) -> None:
        self.slow = False

    def pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        members = dict(pairs)
        if len(members) != len(pairs):
            raise _NotIJson("duplicate member name")
        if not self.slow and any(name and max(name) >= "\ue000" for name in members):
            self.slow = True
        return members

    def number(self, text: str) -> float:
        self.slow = True
        return float(text)

    @staticmethod
    def integer(text: str) -> int:
        value = int(text)
        if -_MAX_SAFE <= value <= _MAX_SAFE:
            return value
        raise _NotIJson("integer outside the IEEE 754 double's exact range")

    @staticmethod
    def constant(text: str) -> Any:
        raise _NotIJson(f"{text} is not JSON")


def parse_ijson(raw: bytes) -> tuple[Any, bool] | None:
    """The parsed value and whether it needs the slow path; None when it is not I-JSON."""
    scan = _Scan()
    try:
        text = raw.decode("utf-8")
        value = json.loads(
            text,
            object_pairs_hook=scan.pairs,
            parse_float=scan.number,
            parse_int=scan.integer,
            parse_constant=scan.constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value, scan.slow


def canonicalize(value: Any, *, slow: bool = True) -> bytes | None:
    """JCS bytes of a parsed value; None when it cannot be canonicalized (lone surrogates,
    non-finite floats). `slow=False` is allowed only when `parse_ijson` said so."""
    if not slow:
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # a lone surrogate: rfc8785 decides (it refuses too)
            pass
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError, ValueError, RecursionError):
        return None


def canonical_json(raw: bytes) -> tuple[bytes, Any] | None:
    """(JCS bytes, parsed value) of a JSON text, or None when it has no canonical form."""
    parsed = parse_ijson(raw)
    if parsed is None:
        return None
    value, slow = parsed
    canonical = canonicalize(value, slow=slow)
    return None if canonical is None else (canonical, value)
