"""Check a real response against `openapi.yaml`: status, content type, body and headers.

Shared by the unit tests (in-process app) and the end-to-end tests (real processes):

    validate_response("POST", "/v1/events", 202, response.headers["content-type"],
                      response.json(), headers=response.headers)

Every check failure is an `AssertionError` naming what the document declares and what came back.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[1] / "openapi.yaml"
# The document is registered under this URI, so `#/components/...` references resolve in it.
SPEC_URI = "urn:audit-ingest:openapi"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@functools.cache
def load_spec() -> dict[str, Any]:
    with SPEC_PATH.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.safe_load(handle)
    return document


@functools.cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = DRAFT202012.create_resource(load_spec())
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def resolve_pointer(pointer: str) -> Any:
    """The node at a JSON pointer (``/components/schemas/Problem``) of the document."""
    node: Any = load_spec()
    for raw in pointer.lstrip("/").split("/") if pointer.strip("/") else []:
        token = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def deref(node: Any, pointer: str) -> tuple[Any, str]:
    """Follow OpenAPI `$ref`s (responses, headers, parameters) to the node and its pointer."""
    seen: set[str] = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert isinstance(ref, str) and ref.startswith("#/"), f"only local $refs: {ref!r}"
        assert ref not in seen, f"$ref cycle at {ref}"
        seen.add(ref)
        pointer = ref[1:]
        node = resolve_pointer(pointer)
    return node, pointer


def schema_validator(pointer: str) -> Draft202012Validator:
    """A Draft 2020-12 validator, formats checked, for the schema at `pointer`."""
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}#{pointer}"},
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def check_against(pointer: str, instance: object, what: str) -> None:
    """Fail with every schema error when `instance` does not match the schema at `pointer`."""
    errors = sorted(
        schema_validator(pointer).iter_errors(instance), key=lambda error: list(error.path)
    )
    if errors:
        lines = [
            f"- at {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
            for error in errors
        ]
        raise AssertionError(f"{what} does not match {pointer}:\n" + "\n".join(lines))


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def normalise_path(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/") or "/"


def operation_pointer(method: str, path: str) -> str | None:
    """Pointer to the operation for `method` and `path`, or None when none is documented."""
    paths = load_spec()["paths"]
    path = normalise_path(path)
    method = method.lower()
    if path in paths and method in paths[path]:
        return f"/paths/{_escape(path)}/{method}"
    return None


def response_pointer(method: str, path: str, status: int) -> str:
    """Pointer to the (dereferenced) response the document declares.

    Requests no operation covers are answered by the shared responses the document names:
    404 for an undocumented path, 405 for an undocumented method on a documented path.
    """
    operation = operation_pointer(method, path)
    if operation is None:
        documented_path = normalise_path(path) in load_spec()["paths"]
        fallback = {405: "MethodNotAllowed"} if documented_path else {404: "NotFound"}
        assert status in fallback, (
            f"{method.upper()} {path} is not a documented operation, and {status} is not "
            f"its documented answer ({sorted(fallback)})"
        )
        return f"/components/responses/{fallback[status]}"
    responses = resolve_pointer(operation)["responses"]
    assert str(status) in responses, (
        f"{method.upper()} {path} answered {status}; documented: {sorted(responses)}"
    )
    _, pointer = deref(responses[str(status)], f"{operation}/responses/{status}")
    return pointer


def check_headers(pointer: str, headers: Mapping[str, str]) -> None:
    """Required headers of the response at `pointer` are present; present ones are valid."""
    lowered = {name.lower(): value for name, value in headers.items()}
    declared = resolve_pointer(pointer).get("headers", {})
    for name, header in declared.items():
        spec, header_pointer = deref(header, f"{pointer}/headers/{_escape(name)}")
        value = lowered.get(name.lower())
        if value is None:
            assert not spec.get("required", False), f"header {name} is required, missing"
            continue
        schema = spec["schema"]
        typed: object = value
        if schema.get("type") == "integer":
            assert value.strip().isdigit(), f"header {name}: {value!r} is not an integer"
            typed = int(value)
        check_against(f"{header_pointer}/schema", typed, f"header {name}")


def validate_response(
    method: str,
    path: str,
    status: int,
    content_type: str | None,
    body_json: object,
    *,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Check one response against the document.

    :param body_json: the parsed JSON body, or the text for a `text/*` response.
    :param headers: the response headers; when given, they are checked too.
    :raises AssertionError: the status, content type, body or a header is not as documented.
    """
    pointer = response_pointer(method, path, status)
    content = resolve_pointer(pointer).get("content", {})
    kind = media_type(content_type)
    declared = {media_type(key): key for key in content}
    assert kind in declared, (
        f"{method.upper()} {path} {status}: content type {content_type!r}; "
        f"documented: {sorted(content)}"
    )
    schema = f"{pointer}/content/{_escape(declared[kind])}/schema"
    check_against(schema, body_json, f"{method.upper()} {path} {status} body")
    if headers is not None:
        check_headers(pointer, headers)
