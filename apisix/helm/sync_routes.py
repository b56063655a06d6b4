"""Load the gateway's objects into etcd-backed APISIX through the Admin API (v3).

`apisix/standalone/apisix.yaml` is the one description of the routes, upstreams and global
rules; standalone APISIX reads it directly, and this script PUTs the same objects, by id, into
an APISIX that keeps them in etcd (the Helm deployment). PUT by id is idempotent: run it after
every change of the file. An object removed from the file is not deleted from etcd: the script
lists those ids (``--dry-run`` shows them too) for a ``DELETE`` by hand.

``${{VAR}}`` and ``${{VAR:=default}}`` in the file are resolved from this process's environment,
as APISIX resolves them in standalone mode (so the Redis password ends up in etcd: keep etcd's
RBAC on).

    kubectl -n apisix port-forward svc/apisix-admin 9180:9180 &
    APISIX_ADMIN_KEY=... APISIX_REDIS_PASSWORD=... \
        uv run python apisix/helm/sync_routes.py --admin-url http://127.0.0.1:9180
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

STANDALONE_FILE = Path(__file__).resolve().parents[1] / "standalone" / "apisix.yaml"
END_MARKER = "#END"
# The object kinds of the standalone file and their Admin API v3 collections, in load order
# (upstreams before the routes that name them).
KINDS = ("upstreams", "global_rules", "routes")
_VAR = re.compile(r"\$\{\{\s*([A-Za-z0-9_]+)(?::=(.*?))?\s*\}\}")
_SECRET_FIELDS = ("password", "secret")


class SyncError(Exception):
    pass


@dataclass(frozen=True)
class AdminRequest:
    method: str
    path: str
    body: dict[str, Any]


def read_standalone(path: Path = STANDALONE_FILE) -> dict[str, Any]:
    """The standalone file's objects; it must end with APISIX's end marker."""
    text = path.read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[-1] != END_MARKER:
        raise SyncError(f"{path} does not end with {END_MARKER}: APISIX would not load it")
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise SyncError(f"{path} is not a mapping")
    return doc


def _scalar(text: str) -> Any:
    # APISIX turns a substituted value into a number or a boolean when it reads as one.
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    return {"true": True, "false": False}.get(text, text)


def resolve_env(value: Any, env: Mapping[str, str]) -> Any:
    """`value` with every ``${{VAR}}`` / ``${{VAR:=default}}`` replaced from `env`."""
    if isinstance(value, dict):
        return {key: resolve_env(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_env(item, env) for item in value]
    if not isinstance(value, str) or "${{" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = env.get(name, default.strip() if default is not None else None)
        if found is None:
            raise SyncError(f"environment variable {name} is not set (no default)")
        return found

    return _scalar(_VAR.sub(substitute, value))


def admin_requests(doc: Mapping[str, Any], env: Mapping[str, str]) -> list[AdminRequest]:
    """One ``PUT /apisix/admin/<kind>/<id>`` per object of the standalone file."""
    unknown = set(doc) - set(KINDS)
    if unknown:
        raise SyncError(f"object kinds this script does not load: {sorted(unknown)}")
    requests = []
    for kind in KINDS:
        for item in doc.get(kind) or []:
            if "id" not in item:
                raise SyncError(f"every {kind} entry needs an id (PUT by id is idempotent)")
            body = {key: value for key, value in item.items() if key != "id"}
            requests.append(
                AdminRequest("PUT", f"/apisix/admin/{kind}/{item['id']}", resolve_env(body, env))
            )
    return requests


def masked(value: Any) -> Any:
    """`value` with secret-looking fields blanked, for printing."""
    if isinstance(value, dict):
        return {
            key: "***" if any(word in key for word in _SECRET_FIELDS) else masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def _call(admin_url: str, admin_key: str, method: str, path: str, body: Any = None) -> Any:
    url = admin_url.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise SyncError(f"not an http(s) URL: {url}")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (checked above)
    request.add_header("X-API-KEY", admin_key)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        raise SyncError(f"{method} {path}: HTTP {error.code}: {detail}") from None


def stale_ids(admin_url: str, admin_key: str, requests: Sequence[AdminRequest]) -> list[str]:
    """Paths of objects in APISIX that the file no longer has."""
    wanted = {request.path for request in requests}
    stale = []
    for kind in KINDS:
        listing = _call(admin_url, admin_key, "GET", f"/apisix/admin/{kind}") or {}
        for entry in listing.get("list") or []:
            object_id = (entry.get("value") or {}).get("id")
            path = f"/apisix/admin/{kind}/{object_id}"
            if object_id is not None and path not in wanted:
                stale.append(path)
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--admin-url", default="http://127.0.0.1:9180")
    parser.add_argument("--file", type=Path, default=STANDALONE_FILE)
    parser.add_argument(
        "--dry-run", action="store_true", help="print the requests (secrets masked), send none"
    )
    args = parser.parse_args(argv)
    try:
        requests = admin_requests(read_standalone(args.file), os.environ)
        if args.dry_run:
            for request in requests:
                print(request.method, request.path, json.dumps(masked(request.body)))
            return 0
        admin_key = os.environ.get("APISIX_ADMIN_KEY")
        if not admin_key:
            raise SyncError("set APISIX_ADMIN_KEY (the Admin API's admin key)")
        for request in requests:
            _call(args.admin_url, admin_key, request.method, request.path, request.body)
            print(request.method, request.path, "ok")
        for path in stale_ids(args.admin_url, admin_key, requests):
            print(f"not in {args.file.name} (DELETE it if it should go): {path}")
    except SyncError as error:
        print(f"sync_routes: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
