"""Who is calling: established from an API key, never from the request body."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: str
    api_key_id: str
    scopes: tuple[str, ...]
    rate_limit: int
