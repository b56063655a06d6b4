"""The event schema validated into plain dicts: TypedDicts derived from the models.

`model.py` stays the one declaration of the schema (and, through it, of openapi.yaml's). The
per-event pipeline validates against TypedDicts derived from those models here, field by
field: the same types, constraints, validators and strictness, no unknown fields, so the same
events pass and the same errors come out (a property test holds the two to that). What differs
is the result: pydantic-core builds dicts, not frozen model instances, about 40 % of a model's
cost per event, and the record's blocks need no `model_dump` afterwards. The dicts keep the
models' field order whatever order the client sent (as `model_dump` writes them); a field the
client sent as `null` is present with None.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, NotRequired, Required, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, TypeAdapter
from typing_extensions import TypedDict  # pydantic needs this one on Python < 3.12

from audit_ingest.domain.model import AuditEventIn

# Called through an Any: mypy checks only literal TypedDict() calls, and these are made at run
# time from the models' fields.
_make_typed_dict: Any = TypedDict


def fields_schema(model: type[BaseModel]) -> type:
    """A TypedDict with `model`'s fields (nested models too), validated as `model` is."""
    derived: dict[type[BaseModel], type] = {}

    def convert(annotation: Any) -> Any:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return typed_dict(annotation)
        origin = get_origin(annotation)
        if origin is Annotated:
            return Annotated[(convert(get_args(annotation)[0]), *annotation.__metadata__)]
        if origin in (Union, types.UnionType):
            return Union[tuple(convert(member) for member in get_args(annotation))]  # noqa: UP007
        return annotation

    def typed_dict(source: type[BaseModel]) -> type:
        if source not in derived:
            fields: dict[str, Any] = {}
            for name, info in source.model_fields.items():
                annotation = convert(info.annotation)
                if info.metadata:  # constraints given on the field itself (`Field(...)`)
                    annotation = Annotated[(annotation, *info.metadata)]
                fields[name] = (
                    Required[annotation] if info.is_required() else NotRequired[annotation]
                )
            made = _make_typed_dict(f"{source.__name__}Fields", fields)
            config = source.model_config
            made.__pydantic_config__ = ConfigDict(
                strict=config.get("strict", False), extra=config.get("extra", "ignore")
            )
            derived[source] = made
        return derived[source]

    return typed_dict(model)


# Validates one event (a parsed JSON value) into a dict; raises pydantic's ValidationError.
EVENT_FIELDS: TypeAdapter[dict[str, Any]] = TypeAdapter(fields_schema(AuditEventIn))
