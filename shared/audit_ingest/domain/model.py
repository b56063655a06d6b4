"""The audit event as clients send it: the schema every payload is validated against.

Types are strict (no "true" for a boolean, no 123 for a string) and unknown fields are refused,
so a typo such as `resouce` fails loudly instead of being stored. Free-form data belongs in
`context` or `metadata`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field

# Fixed bounds of the structured fields (documented in docs/api.md). Free-form strings in
# `context` and `metadata` are bounded by the configurable `Limits.max_string_length`.
MAX_ID_LENGTH = 256
MAX_NAME_LENGTH = 256
MAX_MESSAGE_LENGTH = 2048
MAX_IDEMPOTENCY_KEY_LENGTH = 256

Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Actor(_Strict):
    """Who did it."""

    id: Identifier
    type: Name | None = None
    email: EmailStr | None = None
    name: Name | None = None


class Action(_Strict):
    """What they did, such as `user.created` (stored lower-cased)."""

    name: Name


class Resource(_Strict):
    """What they did it to."""

    type: Name
    id: Identifier
    name: Name | None = None


class Result(_Strict):
    """Whether it worked."""

    success: bool
    code: Name | None = None
    message: Annotated[str, Field(max_length=MAX_MESSAGE_LENGTH)] | None = None


class AuditEventIn(_Strict):
    """One audit event as received, before enrichment."""

    actor: Actor
    action: Action
    resource: Resource
    # RFC 3339 text, checked and normalised by `validation`; absent means "when received".
    timestamp: str | None = None
    result: Result | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    # Accepted only when it equals the caller's tenant; the tenant always comes from the key.
    tenant_id: str | None = None
    # Batch only: a per-event retry key (see docs/api.md, idempotency).
    idempotency_key: (
        Annotated[str, Field(min_length=1, max_length=MAX_IDEMPOTENCY_KEY_LENGTH)] | None
    ) = None
