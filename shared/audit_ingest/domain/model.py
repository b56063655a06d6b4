"""The audit event as clients send it: the schema every payload is validated against.

Types are strict (no "true" for a boolean, no 123 for a string) and unknown fields are refused,
so a typo such as `resouce` fails loudly instead of being stored. Free-form data belongs in
`context` or `metadata`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

import email_validator
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

# Fixed bounds of the structured fields (documented in docs/api.md). Free-form strings in
# `context` and `metadata` are bounded by the configurable `Limits.max_string_length`.
MAX_ID_LENGTH = 256
MAX_NAME_LENGTH = 256
MAX_MESSAGE_LENGTH = 2048
MAX_IDEMPOTENCY_KEY_LENGTH = 256

Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH)]


MAX_EMAIL_LENGTH = 320


@lru_cache(maxsize=4096)
def checked_email(value: str) -> str:
    """A syntactically valid address (email-validator), stored exactly as sent.

    Deliverability is not checked, quoted local parts and address literals (`a@[10.0.0.1]`)
    are allowed, and so are special-use and single-label domains (`svc@corp.local`,
    `root@localhost`, `ci@host.test`): internal systems audit with such addresses, and
    refusing them would send the event to the dead-letter topic. The answer for a valid
    address is remembered (email-validator costs about 25 µs an address; one actor sends many
    events); an invalid one raises each time.

    :raises ValueError: the address is not valid; the message says why.
    """
    # email-validator's documented switch: its list of refused special-use names is empty here.
    email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()
    try:
        email_validator.validate_email(
            value,
            check_deliverability=False,
            allow_quoted_local=True,
            allow_domain_literal=True,
            globally_deliverable=False,
        )
    except email_validator.EmailNotValidError as exc:
        raise ValueError(f"value is not a valid email address: {exc}") from None
    return value


# A strict string, checked by email-validator's syntax rules (JSON schema `format: email`).
Email = Annotated[
    str,
    Field(max_length=MAX_EMAIL_LENGTH),
    AfterValidator(checked_email),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": MAX_EMAIL_LENGTH}),
]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Actor(_Strict):
    """Who did it."""

    id: Identifier
    type: Name | None = None
    email: Email | None = None
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
