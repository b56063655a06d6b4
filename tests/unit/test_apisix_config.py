"""The gateway configuration in apisix/ against APISIX's own sources and against this code.

The routes were run live on APISIX 3.16.0 and 3.18.0, outside CI (apisix/README.md); APISIX
needs OpenResty, so the unit tests check the YAML documents statically. Each check is a pure
function returning the problems it finds. The live run found five faults that the earlier
static checks let through; each one is a check here now:

1. `${{VAR}}` in a YAML comment. Since 3.17.0 (apache/apisix#13078) APISIX substitutes
   environment variables in the raw text of apisix.yaml, comments included, and one that is
   unset fails the whole load. `${{` may appear only inside YAML values, and every variable
   must be passed to the nginx workers (`nginx_config.envs`).
2. Phases. forward-auth reads X-API-Key in the access phase and proxy-rewrite runs in rewrite,
   so removing the key in proxy-rewrite hid it from forward-auth: 401 on 3.18.0, where
   core.request.set_header also updates the cached headers under the lowercased name
   (apache/apisix#13517); 3.16.0 still found the key in its stale header cache.
   PLUGIN_PHASES records each plugin's phase functions and priority, transcribed from the Lua
   sources of every supported release. No plugin may remove or overwrite a header before
   another plugin reads it, and the X-Audit-* headers limit-count reads must be set by
   forward-auth first.
3. limit-count `group` with a variable `count`. Since 3.18.0 (apache/apisix#13443) the
   group's limiter is built once from the unresolved string: 500 on every request. One route
   serves both ingest paths, so its one limit-count is one counter per key, and traffic-split
   picks the batch function.
4. Retry-After. Since 3.18.0 limit-count's reset has two decimals (`math_floor(reset * 100)
   / 100`; 3.16.0 and 3.17.0 pass Redis's whole-second TTL), so a serverless-post-function
   rounds it up to whole seconds on a 429. Serverless functions are `return function(conf,
   ctx) ... end` chunks and contain no `${{`.
5. The Helm image is a release the routes were run on (SUPPORTED_APISIX).

Beyond those:

- Every object and every plugin attribute is checked against APISIX's schemas, transcribed
  from its sources (repository, path and commit next to each) and validated with
  `jsonschema`. The one addition is `additionalProperties: false`: APISIX silently ignores
  an unknown (misspelled) attribute and runs the plugin with its default, which is exactly
  what this catches.
- Header names, paths, body limits, the rate-limit window and the service names are the ones
  the code uses (imported from `audit_ingest`, not repeated here). The per-path body limit is
  enforced in the rewrite phase, so a body over it gets 413 before authorize is called or the
  quota is counted.
- The standalone file ends with `#END`. The etcd-backed objects (loaded by
  apisix/helm/sync_routes.py) are the standalone ones. The Helm values use only keys the
  chart has.
- The Knative Services the upstreams name exist in knative/, once it has any.

The `*_mutation` tests run every check on broken copies, to show each one can fail.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import operator
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from starlette.requests import Request

from audit_ingest.auth import API_KEY_HEADER
from audit_ingest.domain.gateway_token import (
    CLIENT_IP_HEADER,
    KEY_ID_HEADER,
    PRINCIPAL_HEADER,
    RATE_LIMIT_HEADER,
    TENANT_HEADER,
)
from audit_ingest.domain.limits import Limits
from audit_ingest.domain.ratelimit import WINDOW_SECONDS, RateDecision, rate_headers
from audit_ingest.errors import KeyStoreUnavailable, PayloadTooLarge, Unauthenticated
from audit_ingest.http.edge import request_headers, request_id_of
from audit_ingest.http.problem import PROBLEM_JSON, problem_response
from audit_ingest.http.routes import OPERATIONAL as AUTHORIZE_OPERATIONAL_PATHS
from audit_ingest.http.routes import Endpoint
from audit_ingest.settings import Settings

Doc = dict[str, Any]
Problems = list[str]

ROOT = Path(__file__).resolve().parents[2]
APISIX_DIR = ROOT / "apisix"
STANDALONE_FILE = APISIX_DIR / "standalone" / "apisix.yaml"
CONFIG_FILE = APISIX_DIR / "standalone" / "config.yaml"
HELM_VALUES_FILE = APISIX_DIR / "helm" / "values.yaml"
SYNC_SCRIPT = APISIX_DIR / "helm" / "sync_routes.py"
KNATIVE_DIR = ROOT / "knative"
FUNCTIONS_DIR = ROOT / "functions"
OPENAPI_FILE = ROOT / "openapi.yaml"

# Fixed deployment facts (the Knative issue uses the same names).
NAMESPACE = "audit-ingest"
AUTHORIZE_SERVICE = "authorize"
INGEST_SERVICES = {Endpoint.SINGLE: "ingest-event", Endpoint.BATCH: "ingest-batch"}
REQUEST_ID_HEADER = "X-Request-Id"
AUDIT_HEADERS = (PRINCIPAL_HEADER, TENANT_HEADER, KEY_ID_HEADER, RATE_LIMIT_HEADER)
RATE_LIMITED_STATUS = 429

# The APISIX releases the routes were run on live (apisix/README.md), each with the commit of
# its tag in apache/apisix that the tables below were read from.
SUPPORTED_APISIX = {"3.16.0", "3.18.0"}
APISIX_COMMITS = {
    "3.16.0": "f9c4ee37170bdfe075c846973c1be65a582a0c4f",
    "3.18.0": "0796d9c2cbedb1f8bf8194292ff526599f4fde20",
}
MIN_APISIX = "3.16.0"  # limit-count `count` from a variable (APISIX 3.16 release notes)
AT_3_16 = f"@ {APISIX_COMMITS['3.16.0']} (3.16.0)"
AT_3_18 = f"@ {APISIX_COMMITS['3.18.0']} (3.18.0)"


def cluster_host(service: str) -> str:
    return f"{service}.{NAMESPACE}.svc.cluster.local"


def nginx_var(header: str) -> str:
    """The nginx variable holding a request header (`X-Audit-Key-Id` -> `http_x_audit_key_id`)."""
    return "http_" + header.lower().replace("-", "_")


def setting_default(name: str) -> Any:
    """A Settings field's default, without reading this process's environment."""
    return Settings.model_fields[name].default


def words(text: str) -> set[str]:
    return set(text.split())


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


# --------------------------------------------------------------------------------------------
# Phases: which phase functions each plugin defines, and its priority. Transcribed from
# apache/apisix at the commits in APISIX_COMMITS (`function _M.<phase>` and `priority =` in
# each file; prometheus sets `log = exporter.http_log` in its _M table). serverless/init.lua
# defines every phase for both serverless plugins and runs the functions only in the phase
# the conf names (default access); the two wrapper files give the priorities.
# Within a phase APISIX runs the plugins by descending priority, a global rule's before the
# route's (apisix/init.lua http_access_phase: 3.18.0 runs the global rules' rewrite, then the
# route's rewrite, then the global rules' access, then the route's access; 3.16.0 runs both
# global phases before the route's rewrite. No global plugin here touches a request header
# in access, so the one model below fits both).
# --------------------------------------------------------------------------------------------

PHASE_ORDER = ("rewrite", "access", "before_proxy", "header_filter", "body_filter", "log")
# apisix/plugins/serverless/init.lua: `local phases = {...}`, the conf's `phase` enum.
SERVERLESS_PHASES = ("rewrite", "access", "header_filter", "body_filter", "log", "before_proxy")


@dataclass(frozen=True)
class PluginPhases:
    path: str  # in apache/apisix, at the release's commit
    phases: frozenset[str]  # the phase functions the plugin module defines
    priority: int  # higher runs first within a phase
    phase_from_conf: bool = False  # runs its code only in the phase its conf names


def _phases(path: str, phases: str, priority: int) -> PluginPhases:
    return PluginPhases(path, frozenset(phases.split()), priority)


def _serverless(wrapper: str, priority: int) -> PluginPhases:
    path = f"apisix/plugins/{wrapper}.lua + apisix/plugins/serverless/init.lua"
    return PluginPhases(path, frozenset(SERVERLESS_PHASES), priority, phase_from_conf=True)


PLUGIN_PHASES: dict[str, dict[str, PluginPhases]] = {
    # apache/apisix @ f9c4ee37170bdfe075c846973c1be65a582a0c4f (tag 3.16.0)
    "3.16.0": {
        "client-control": _phases("apisix/plugins/client-control.lua", "rewrite", 22000),
        "request-id": _phases("apisix/plugins/request-id.lua", "rewrite header_filter", 12015),
        "mocking": _phases("apisix/plugins/mocking.lua", "access", 10900),
        "serverless-pre-function": _serverless("serverless-pre-function", 10000),
        "forward-auth": _phases("apisix/plugins/forward-auth.lua", "access", 2002),
        "proxy-rewrite": _phases("apisix/plugins/proxy-rewrite.lua", "rewrite", 1008),
        "limit-count": _phases("apisix/plugins/limit-count.lua", "access", 1002),
        "traffic-split": _phases("apisix/plugins/traffic-split.lua", "access", 966),
        "prometheus": _phases("apisix/plugins/prometheus.lua", "log", 500),
        "serverless-post-function": _serverless("serverless-post-function", -2000),
    },
    # apache/apisix @ 0796d9c2cbedb1f8bf8194292ff526599f4fde20 (tag 3.18.0)
    "3.18.0": {
        "client-control": _phases("apisix/plugins/client-control.lua", "rewrite", 22000),
        "request-id": _phases("apisix/plugins/request-id.lua", "rewrite header_filter", 12015),
        "mocking": _phases("apisix/plugins/mocking.lua", "access", 10900),
        "serverless-pre-function": _serverless("serverless-pre-function", 10000),
        "forward-auth": _phases("apisix/plugins/forward-auth.lua", "access", 2002),
        "proxy-rewrite": _phases("apisix/plugins/proxy-rewrite.lua", "rewrite", 1008),
        "limit-count": _phases("apisix/plugins/limit-count.lua", "access", 1002),
        "traffic-split": _phases("apisix/plugins/traffic-split.lua", "access", 966),
        "prometheus": _phases("apisix/plugins/prometheus.lua", "log", 500),
        "serverless-post-function": _serverless("serverless-post-function", -2000),
    },
}

# limit-count's quota headers (metadata_defaults in apisix/plugins/limit-count/init.lua, the
# same at both commits).
LIMIT_COUNT_QUOTA_HEADERS = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}
LIMIT_COUNT_RESET_HEADER = "X-RateLimit-Reset"


# --------------------------------------------------------------------------------------------
# APISIX's schemas, transcribed from its sources (Lua tables -> JSON Schema, same keywords).
# Where 3.18.0 adds attributes, the 3.16.0 set is used: the file must load on both.
# --------------------------------------------------------------------------------------------

STRINGS = {"type": "array", "items": {"type": "string"}}
HEADER_NAME = {"type": "string", "pattern": "^[^:]+$"}
STRING_OR_NUMBER = {"oneOf": [{"type": "string"}, {"type": "number"}]}
INT_OR_STRING = {"oneOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "string"}]}

# Core objects: apache/apisix apisix/schema_def.lua at both commits (the parts this project
# touches; route, upstream and global_rule have additionalProperties = false there too).
# Stricter than the source in two places: an upstream must name its `type` (one of the
# balancers APISIX ships; the source defaults it), and HOST leaves out IPv6 brackets.
ID = {
    "anyOf": [
        {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-zA-Z0-9-_.]+$"},
        {"type": "integer", "minimum": 1},
    ]
}
NAME = {"type": "string", "minLength": 1, "maxLength": 100}
DESC = {"type": "string", "maxLength": 256}
HOST = {"type": "string", "pattern": "^\\*?[0-9a-zA-Z-._]+$"}
TIMEOUT = {
    "type": "object",
    "properties": {
        "connect": {"type": "number", "exclusiveMinimum": 0},
        "send": {"type": "number", "exclusiveMinimum": 0},
        "read": {"type": "number", "exclusiveMinimum": 0},
    },
    "required": ["connect", "send", "read"],
}
METHODS = {
    "type": "array",
    "uniqueItems": True,
    "items": {
        "type": "string",
        "enum": sorted(words("GET POST PUT DELETE PATCH HEAD OPTIONS CONNECT TRACE PURGE")),
    },
}
UPSTREAM_SCHEMA = {
    "type": "object",
    "properties": {
        "id": ID,
        "name": NAME,
        "desc": DESC,
        "create_time": {"type": "integer"},
        "update_time": {"type": "integer"},
        "nodes": {
            "anyOf": [
                {"type": "object", "patternProperties": {".*": {"type": "integer", "minimum": 0}}},
                {"type": "array"},
            ]
        },
        "retries": {"type": "integer", "minimum": 0},
        "retry_timeout": {"type": "number", "minimum": 0},
        "timeout": TIMEOUT,
        "tls": {"type": "object"},
        "keepalive_pool": {"type": "object"},
        "type": {"type": "string", "enum": ["chash", "roundrobin", "ewma", "least_conn"]},
        "checks": {"type": "object"},
        "hash_on": {"type": "string"},
        "key": {"type": "string"},
        "scheme": {"enum": ["grpc", "grpcs", "http", "https"]},
        "labels": {"type": "object"},
        "discovery_type": {"type": "string"},
        "discovery_args": {"type": "object"},
        "pass_host": {"type": "string", "enum": ["pass", "node", "rewrite"]},
        "upstream_host": HOST,
        "service_name": {"type": "string", "minLength": 1, "maxLength": 256},
    },
    "oneOf": [
        {"required": ["type", "nodes"]},
        {"required": ["type", "service_name", "discovery_type"]},
    ],
    "additionalProperties": False,
}
ROUTE_SCHEMA = {
    "type": "object",
    "properties": {
        "id": ID,
        "name": NAME,
        "desc": DESC,
        "create_time": {"type": "integer"},
        "update_time": {"type": "integer"},
        "uri": {"type": "string", "minLength": 1, "maxLength": 4096},
        "uris": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string"}},
        "priority": {"type": "integer"},
        "methods": METHODS,
        "host": HOST,
        "hosts": {"type": "array", "minItems": 1, "items": HOST},
        "remote_addr": {"type": "string"},
        "remote_addrs": {"type": "array", "minItems": 1},
        "timeout": TIMEOUT,
        "vars": {"type": "array"},
        "filter_func": {"type": "string", "minLength": 10, "pattern": "^function"},
        "script": {"type": "string"},
        "script_id": ID,
        "plugins": {"type": "object"},
        "plugin_config_id": ID,
        "upstream": UPSTREAM_SCHEMA,
        "labels": {"type": "object"},
        "service_id": ID,
        "upstream_id": ID,
        "enable_websocket": {"type": "boolean"},
        "status": {"type": "integer", "enum": [1, 0]},
    },
    "allOf": [{"oneOf": [{"required": ["uri"]}, {"required": ["uris"]}]}],
    "anyOf": [
        {"required": [target, path]}
        for path in ("uri", "uris")
        for target in ("plugins", "upstream", "upstream_id", "service_id", "script")
    ],
    "additionalProperties": False,
}
GLOBAL_RULE_SCHEMA = {
    "type": "object",
    "properties": {
        "id": ID,
        "plugins": {"type": "object"},
        "create_time": {"type": "integer"},
        "update_time": {"type": "integer"},
    },
    "required": ["id", "plugins"],
    "additionalProperties": False,
}
OBJECT_SCHEMAS = {
    "upstreams": UPSTREAM_SCHEMA,
    "routes": ROUTE_SCHEMA,
    "global_rules": GLOBAL_RULE_SCHEMA,
}


@dataclass(frozen=True)
class PluginSchema:
    source: str  # where the properties were read
    schema: dict[str, Any]


SERVERLESS_SCHEMA = {
    "type": "object",
    "properties": {
        "phase": {"type": "string", "enum": list(SERVERLESS_PHASES)},
        "functions": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "required": ["functions"],
    "additionalProperties": False,
}

PLUGIN_SCHEMAS: dict[str, PluginSchema] = {
    "forward-auth": PluginSchema(
        f"apache/apisix apisix/plugins/forward-auth.lua {AT_3_16}; 3.18.0 adds"
        " max_req_body_size (POST only, unused here). On a 2xx answer 3.18.0 sets every"
        " upstream_headers entry, removing it when the answer lacks it; 3.16.0 sets only those"
        " the answer has (authorize always sends all four)",
        {
            "type": "object",
            "properties": {
                "uri": {"type": "string"},
                "allow_degradation": {"type": "boolean"},
                "status_on_error": {"type": "integer", "minimum": 200, "maximum": 599},
                "ssl_verify": {"type": "boolean"},
                "request_method": {"type": "string", "enum": ["GET", "POST"]},
                "request_headers": STRINGS,
                "extra_headers": {
                    "type": "object",
                    "minProperties": 1,
                    "patternProperties": {"^[^:]+$": {"type": "string"}},
                },
                "upstream_headers": STRINGS,
                "client_headers": STRINGS,
                "timeout": {"type": "integer", "minimum": 1, "maximum": 60000},
                "keepalive": {"type": "boolean"},
                "keepalive_timeout": {"type": "integer", "minimum": 1000},
                "keepalive_pool": {"type": "integer", "minimum": 1},
            },
            "required": ["uri"],
            "additionalProperties": False,
        },
    ),
    "limit-count": PluginSchema(
        f"apache/apisix apisix/plugins/limit-count/init.lua {AT_3_16} (count/time_window an"
        " integer or a variable string, rules) with the redis and redis-cluster properties of"
        f" apisix/utils/redis-schema.lua {AT_3_16}; 3.18.0 adds window_type, sync_interval and"
        " the redis-sentinel policy (unused here)",
        {
            "type": "object",
            "properties": {
                "count": INT_OR_STRING,
                "time_window": INT_OR_STRING,
                "rules": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "count": INT_OR_STRING,
                            "time_window": INT_OR_STRING,
                            "key": {"type": "string"},
                            "header_prefix": {"type": "string"},
                        },
                        "required": ["count", "time_window", "key"],
                    },
                },
                "group": {"type": "string"},
                "key": {"type": "string"},
                "key_type": {"type": "string", "enum": ["var", "var_combination", "constant"]},
                "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599},
                "rejected_msg": {"type": "string", "minLength": 1},
                "policy": {"type": "string", "enum": ["local", "redis", "redis-cluster"]},
                "allow_degradation": {"type": "boolean"},
                "show_limit_quota_header": {"type": "boolean"},
                "redis_host": {"type": "string", "minLength": 2},
                "redis_port": {"type": "integer", "minimum": 1},
                "redis_username": {"type": "string", "minLength": 1},
                "redis_password": {"type": "string", "minLength": 0},
                "redis_database": {"type": "integer", "minimum": 0},
                "redis_timeout": {"type": "integer", "minimum": 1},
                "redis_ssl": {"type": "boolean"},
                "redis_ssl_verify": {"type": "boolean"},
                "redis_keepalive_timeout": {"type": "integer", "minimum": 1000},
                "redis_keepalive_pool": {"type": "integer", "minimum": 1},
                "redis_cluster_nodes": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "minLength": 2, "maxLength": 100},
                },
                "redis_cluster_name": {"type": "string"},
                "redis_cluster_ssl": {"type": "boolean"},
                "redis_cluster_ssl_verify": {"type": "boolean"},
            },
            "oneOf": [{"required": ["count", "time_window"]}, {"required": ["rules"]}],
            "if": {"properties": {"policy": {"enum": ["redis"]}}},
            "then": {"required": ["redis_host"]},
            "else": {
                "if": {"properties": {"policy": {"enum": ["redis-cluster"]}}},
                "then": {"required": ["redis_cluster_nodes", "redis_cluster_name"]},
            },
            "additionalProperties": False,
        },
    ),
    "client-control": PluginSchema(
        f"apache/apisix apisix/plugins/client-control.lua {AT_3_16}, the same {AT_3_18}"
        " (413 on a larger Content-Length, then caps the body as nginx reads it)",
        {
            "type": "object",
            "properties": {"max_body_size": {"type": "integer", "minimum": 0}},
            "additionalProperties": False,
        },
    ),
    "request-id": PluginSchema(
        f"apache/apisix apisix/plugins/request-id.lua {AT_3_16}, the same {AT_3_18}"
        " (rewrite: keeps the client's id or sets one; header_filter: adds it to the answer)",
        {
            "type": "object",
            "properties": {
                "header_name": {"type": "string"},
                "include_in_response": {"type": "boolean"},
                "algorithm": {"type": "string", "enum": ["uuid", "nanoid", "range_id", "ksuid"]},
                "range_id": {
                    "type": "object",
                    "properties": {
                        "length": {"type": "integer", "minimum": 6},
                        "char_set": {"type": "string", "minLength": 6},
                    },
                },
            },
            "additionalProperties": False,
        },
    ),
    "prometheus": PluginSchema(
        f"apache/apisix apisix/plugins/prometheus.lua {AT_3_16}, the same {AT_3_18}",
        {
            "type": "object",
            "properties": {"prefer_name": {"type": "boolean"}},
            "additionalProperties": False,
        },
    ),
    "proxy-rewrite": PluginSchema(
        f"apache/apisix apisix/plugins/proxy-rewrite.lua {AT_3_16}; 3.18.0 also accepts an"
        " array of values per header in add/set (unused here)",
        {
            "type": "object",
            "properties": {
                "uri": {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^/.*"},
                "method": {
                    "type": "string",
                    "enum": sorted(
                        words("GET POST PUT HEAD DELETE OPTIONS MKCOL COPY MOVE PROPFIND LOCK")
                        | words("UNLOCK PATCH TRACE")
                    ),
                },
                "regex_uri": {"type": "array", "minItems": 2, "items": {"type": "string"}},
                "host": {"type": "string", "pattern": "^[0-9a-zA-Z-.]+(:\\d{1,5})?$"},
                "headers": {
                    "oneOf": [
                        {
                            "type": "object",
                            "minProperties": 1,
                            "additionalProperties": False,
                            "properties": {
                                "add": {
                                    "type": "object",
                                    "minProperties": 1,
                                    "patternProperties": {"^[^:]+$": STRING_OR_NUMBER},
                                },
                                "set": {
                                    "type": "object",
                                    "minProperties": 1,
                                    "patternProperties": {"^[^:]+$": STRING_OR_NUMBER},
                                },
                                "remove": {"type": "array", "minItems": 1, "items": HEADER_NAME},
                            },
                        },
                        {
                            "type": "object",
                            "minProperties": 1,
                            "patternProperties": {"^[^:]+$": STRING_OR_NUMBER},
                        },
                    ]
                },
                "use_real_request_uri_unsafe": {"type": "boolean"},
            },
            "minProperties": 1,
            "additionalProperties": False,
        },
    ),
    "mocking": PluginSchema(
        f"apache/apisix apisix/plugins/mocking.lua {AT_3_16}, the same {AT_3_18}"
        " (access phase: answers without an upstream)",
        {
            "type": "object",
            "properties": {
                "delay": {"type": "integer"},
                "response_status": {"type": "integer", "minimum": 100},
                "content_type": {"type": "string"},
                "response_example": {"type": "string"},
                "response_schema": {"type": "object"},
                "with_mock_header": {"type": "boolean"},
                "response_headers": {
                    "type": "object",
                    "minProperties": 1,
                    "patternProperties": {"^[^:]+$": STRING_OR_NUMBER},
                },
            },
            "anyOf": [{"required": ["response_example"]}, {"required": ["response_schema"]}],
            "additionalProperties": False,
        },
    ),
    "traffic-split": PluginSchema(
        f"apache/apisix apisix/plugins/traffic-split.lua {AT_3_18}, the same {AT_3_16}"
        " (weighted_upstreams items: upstream_id = schema_def.id_schema, upstream ="
        " schema_def.upstream); additionalProperties false on the nested objects too",
        {
            "type": "object",
            "properties": {
                "rules": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "match": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {"vars": {"type": "array"}},
                                    "additionalProperties": False,
                                },
                            },
                            "weighted_upstreams": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 20,
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "upstream_id": ID,
                                        "upstream": UPSTREAM_SCHEMA,
                                        "weight": {"type": "integer", "minimum": 0},
                                    },
                                    "additionalProperties": False,
                                },
                            },
                        },
                        "additionalProperties": False,
                    },
                }
            },
            "additionalProperties": False,
        },
    ),
    "serverless-pre-function": PluginSchema(
        f"apache/apisix apisix/plugins/serverless/init.lua {AT_3_18}, the same {AT_3_16}"
        " (check_schema also loads each function and wants a Lua function back)",
        SERVERLESS_SCHEMA,
    ),
    "serverless-post-function": PluginSchema(
        f"apache/apisix apisix/plugins/serverless/init.lua {AT_3_18}, the same {AT_3_16}",
        SERVERLESS_SCHEMA,
    ),
}
# config.yaml keys: the defaults table of apache/apisix apisix/cli/config.lua
# @ e1a337430624a6f8a21057fab0e3c4cecaca0a1f (the parts this project touches), plus
# nginx_config.envs (conf/config-default.yaml @ f380fcf173282c7d71831b47e5edc0a206b9d658) and
# deployment.role_data_plane.config_provider (docs/en/latest/deployment-modes.md
# @ 000c7fa259754bc8336e7b8c1e64330be05ddfca). A list value is a leaf.
CONFIG_KEYS = words(
    """
    apisix.node_listen apisix.enable_admin apisix.enable_dev_mode apisix.enable_reuseport
    apisix.show_upstream_status_in_response_header apisix.enable_ipv6 apisix.enable_http2
    apisix.enable_server_tokens apisix.extra_lua_path apisix.extra_lua_cpath
    apisix.delete_uri_tail_slash apisix.normalize_uri_like_servlet apisix.router.http
    apisix.router.ssl apisix.proxy_mode apisix.resolver_timeout apisix.enable_resolv_search_opt
    apisix.enable_control nginx_config.error_log nginx_config.error_log_level
    nginx_config.worker_processes nginx_config.enable_cpu_affinity
    nginx_config.worker_rlimit_nofile nginx_config.worker_shutdown_timeout
    nginx_config.max_pending_timers nginx_config.max_running_timers
    nginx_config.event.worker_connections nginx_config.envs nginx_config.http.enable_access_log
    nginx_config.http.access_log nginx_config.http.access_log_buffer
    nginx_config.http.access_log_format nginx_config.http.access_log_format_escape
    nginx_config.http.keepalive_timeout nginx_config.http.client_header_timeout
    nginx_config.http.client_body_timeout nginx_config.http.client_max_body_size
    nginx_config.http.send_timeout nginx_config.http.underscores_in_headers
    nginx_config.http.real_ip_header nginx_config.http.real_ip_recursive
    nginx_config.http.real_ip_from nginx_config.http.proxy_ssl_server_name
    nginx_config.http.charset nginx_config.http.variables_hash_max_size plugins stream_plugins
    plugin_attr.prometheus.export_uri plugin_attr.prometheus.metric_prefix
    plugin_attr.prometheus.enable_export_server plugin_attr.prometheus.export_addr.ip
    plugin_attr.prometheus.export_addr.port deployment.role
    deployment.role_traditional.config_provider deployment.role_data_plane.config_provider
    """
)

# Helm values keys: apache/apisix-helm-chart charts/apisix/values.yaml
# @ 007dec4d67e96919e3828e73b86b7141215e3550 (the chart revision shipping image 3.17.0-ubuntu,
# with apisix.admin.enable_admin_ui and no `dashboard` sub-chart). Keys ending in ".*" are
# free-form maps. Only the parts this project touches, plus their siblings.
HELM_KEYS = words(
    """
    image.repository image.pullPolicy image.tag replicaCount useDaemonSet podAnnotations.*
    resources.* nodeSelector.* affinity.* tolerations podDisruptionBudget.enabled
    podDisruptionBudget.minAvailable podDisruptionBudget.maxUnavailable service.type
    service.externalTrafficPolicy metrics.serviceMonitor.enabled
    metrics.serviceMonitor.namespace metrics.serviceMonitor.name metrics.serviceMonitor.interval
    metrics.serviceMonitor.labels.* metrics.serviceMonitor.annotations.* apisix.enableIPv6
    apisix.enableHTTP2 apisix.enableServerTokens apisix.deployment.mode apisix.deployment.role
    apisix.deployment.role_traditional.config_provider apisix.deployment.standalone.config
    apisix.deployment.standalone.existingConfigMap apisix.admin.enabled
    apisix.admin.enable_admin_ui apisix.admin.type apisix.admin.ip apisix.admin.port
    apisix.admin.servicePort apisix.admin.cors apisix.admin.credentials.admin
    apisix.admin.credentials.viewer apisix.admin.credentials.secretName
    apisix.admin.credentials.secretAdminKey apisix.admin.credentials.secretViewerKey
    apisix.admin.allow.ipList apisix.nginx.workerProcesses apisix.nginx.keepaliveTimeout
    apisix.nginx.envs apisix.nginx.logs.enableAccessLog apisix.nginx.logs.accessLog
    apisix.nginx.logs.accessLogFormat apisix.nginx.logs.accessLogFormatEscape
    apisix.nginx.logs.errorLog apisix.nginx.logs.errorLogLevel apisix.prometheus.enabled
    apisix.prometheus.path apisix.prometheus.metricPrefix apisix.prometheus.containerPort
    apisix.plugins apisix.stream_plugins apisix.pluginAttrs.* apisix.trustedAddresses
    etcd.enabled etcd.prefix etcd.timeout etcd.replicaCount etcd.auth.rbac.create
    etcd.auth.rbac.rootPassword etcd.service.port externalEtcd.host externalEtcd.user
    externalEtcd.existingSecret externalEtcd.secretPasswordKey
    """
)


# --------------------------------------------------------------------------------------------
# Loading.
# --------------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Doc:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), f"{path} is not a YAML mapping"
    return doc


def load_sync_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("apisix_sync_routes", SYNC_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def standalone_text() -> str:
    return STANDALONE_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def config_text() -> str:
    return CONFIG_FILE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def standalone() -> Doc:
    return load_yaml(STANDALONE_FILE)


@pytest.fixture(scope="module")
def config() -> Doc:
    return load_yaml(CONFIG_FILE)


@pytest.fixture(scope="module")
def helm_values() -> Doc:
    return load_yaml(HELM_VALUES_FILE)


@pytest.fixture(scope="module")
def sync() -> ModuleType:
    return load_sync_module()


# --------------------------------------------------------------------------------------------
# Reading the documents.
# --------------------------------------------------------------------------------------------


def objects(doc: Doc, kind: str) -> list[Doc]:
    items = doc.get(kind) or []
    return [item for item in items if isinstance(item, dict)]


def by_id(doc: Doc, kind: str) -> dict[str, Doc]:
    return {str(item.get("id")): item for item in objects(doc, kind)}


def plugins_of(item: Doc) -> Doc:
    plugins = item.get("plugins")
    return plugins if isinstance(plugins, dict) else {}


def plugin_confs(doc: Doc) -> Iterator[tuple[str, str, Any]]:
    """(where, plugin name, its conf) for every plugin of every route and global rule."""
    for kind in ("routes", "global_rules"):
        for item in objects(doc, kind):
            for name, conf in plugins_of(item).items():
                yield f"{kind}[{item.get('id')}]", name, conf


def route_paths(route: Doc) -> list[str]:
    """The paths a route matches: its `uri`, or each of its `uris`."""
    if "uri" in route:
        return [str(route["uri"])]
    return [str(path) for path in route.get("uris") or []]


def routes_for(doc: Doc, method: str, path: str) -> list[Doc]:
    """Every route that matches `method` `path` (no `methods` matches any method)."""
    return [
        route
        for route in objects(doc, "routes")
        if path in route_paths(route) and method in (route.get("methods") or [method])
    ]


def route_for(doc: Doc, method: str, path: str) -> Doc | None:
    routes = routes_for(doc, method, path)
    return routes[0] if routes else None


def ingest_routes(doc: Doc) -> list[tuple[str, Doc]]:
    """(where, route) for each route serving an ingest endpoint, once each; an endpoint no
    route serves gives (its path, {}), so that every per-route check reports it missing."""
    found: dict[str, tuple[str, Doc]] = {}
    for endpoint in Endpoint:
        routes = routes_for(doc, "POST", endpoint.value)
        if not routes:
            found[endpoint.value] = (f"POST {endpoint.value}", {})
        for route in routes:
            found.setdefault(f"id {route.get('id')}", (f"routes[{route.get('id')}]", route))
    return list(found.values())


def ingest_services() -> dict[Endpoint, str]:
    """Each ingest endpoint and the Knative Service behind it, cross-checked with functions/."""
    assert set(INGEST_SERVICES) == set(Endpoint), "an endpoint the gateway does not route"
    for endpoint, service in INGEST_SERVICES.items():
        main = FUNCTIONS_DIR / service.replace("-", "_") / "main.py"
        source = main.read_text(encoding="utf-8")
        assert re.search(rf"\bEndpoint\.{endpoint.name}\b", source), f"{main} serves no {endpoint}"
    return INGEST_SERVICES


_EXPR_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "~=": operator.ne,
    "!=": operator.ne,
}


def _vars_hold(expressions: Any, variables: dict[str, str]) -> bool | None:
    """lua-resty-expr's `vars` (a list of [var, op, value], all must hold); None when this
    cannot evaluate it (another operator, a nested expression, a variable not given)."""
    if not isinstance(expressions, list):
        return None
    for expression in expressions:
        if not (
            isinstance(expression, list)
            and len(expression) == 3
            and expression[1] in _EXPR_OPS
            and expression[0] in variables
        ):
            return None
        if not _EXPR_OPS[expression[1]](variables[expression[0]], expression[2]):
            return False
    return True


def effective_upstream(route: Doc, path: str) -> tuple[str | None, str | None]:
    """The upstream id a request for `path` reaches, as traffic-split's `access` picks it
    (apisix/plugins/traffic-split.lua: the first rule whose `match` passes, or that has none;
    no rule passing keeps the route's upstream). (None, why) when it cannot be told."""
    own = None if route.get("upstream_id") is None else str(route["upstream_id"])
    conf = plugins_of(route).get("traffic-split")
    if not isinstance(conf, dict) or not conf.get("rules"):
        return own, None
    for rule in conf["rules"]:
        matches = rule.get("match") if isinstance(rule, dict) else None
        if matches:
            results = [_vars_hold((m or {}).get("vars"), {"uri": path}) for m in matches]
            if None in results:
                return None, f"traffic-split: cannot evaluate {matches} (use uri ==)"
            if not any(results):
                continue
        weighted = rule.get("weighted_upstreams") or [{"weight": 1}]
        chosen = [w for w in weighted if isinstance(w, dict) and w.get("weight", 1) > 0]
        if any("upstream" in w for w in chosen):
            return None, "traffic-split: an inline upstream, not an upstream_id"
        ids = {str(w["upstream_id"]) if "upstream_id" in w else own for w in chosen}
        if len(ids) != 1:
            return None, f"traffic-split sends {path} to {sorted(map(str, ids))}, not one"
        return ids.pop(), None
    return own, None


def schema_problems(schema: dict[str, Any], value: Any, where: str) -> Problems:
    problems = []
    for error in Draft7Validator(schema).iter_errors(value):
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.path)
        problems.append(f"{where}{path}: {error.message}")
    return problems


# --------------------------------------------------------------------------------------------
# What each plugin does to the request, and when: the model behind the phase check.
# --------------------------------------------------------------------------------------------

_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_LUA_CTX_VAR = re.compile(r"\bctx\.var\.([A-Za-z_][A-Za-z0-9_]*)")
_LUA_SET_HEADER = re.compile(
    r"""(?:core\.request\.(?:set|add)_header\(\s*ctx\s*,|ngx\.req\.set_header\()\s*["']([^"']+)"""
)
_LUA_CLEAR_HEADER = re.compile(r"""ngx\.req\.clear_header\(\s*["']([^"']+)""")


@dataclass(frozen=True)
class Step:
    """One plugin on one route: the request variables it reads, removes, overwrites, and
    provides (sets as their source: forward-auth's upstream_headers, request-id's id when the
    client sent none), in the phase where it touches the request."""

    plugin: str
    phase: str
    priority: int
    is_global: bool
    reads: frozenset[str]
    removes: frozenset[str]
    overwrites: frozenset[str]
    provides: frozenset[str]

    @property
    def position(self) -> tuple[int, int, int]:
        return (PHASE_ORDER.index(self.phase), 0 if self.is_global else 1, -self.priority)

    def describe(self) -> str:
        return f"{self.plugin} ({self.phase}, priority {self.priority})"


def _vars_in(value: Any) -> set[str]:
    return set(_VAR.findall(json.dumps(value)))


def request_io(name: str, conf: Doc) -> tuple[set[str], set[str], set[str], set[str]]:
    """(reads, removes, overwrites, provides): the request variables (`http_<header>` for a
    header) a plugin's conf makes it touch, as each plugin's source handles that conf."""
    reads: set[str] = set()
    removes: set[str] = set()
    overwrites: set[str] = set()
    provides: set[str] = set()
    if name == "forward-auth":
        reads |= {nginx_var(h) for h in conf.get("request_headers") or []}
        reads |= _vars_in(conf.get("extra_headers") or {})
        provides |= {nginx_var(h) for h in conf.get("upstream_headers") or []}
    elif name == "limit-count":
        for holder in [conf, *(r for r in conf.get("rules") or [] if isinstance(r, dict))]:
            for field in ("count", "time_window"):
                if isinstance(holder.get(field), str):
                    reads |= _vars_in(holder[field])
        key = str(conf.get("key", "remote_addr"))
        key_type = conf.get("key_type", "var")
        if key_type == "var":
            reads.add(key.removeprefix("$"))
        elif key_type == "var_combination":
            reads |= _vars_in(key)
        for rule in conf.get("rules") or []:
            reads |= _vars_in((rule or {}).get("key", ""))
    elif name == "traffic-split":
        for rule in conf.get("rules") or []:
            for match in (rule or {}).get("match") or []:
                for expression in (match or {}).get("vars") or []:
                    if isinstance(expression, list) and expression:
                        reads.add(str(expression[0]))
    elif name == "proxy-rewrite":
        headers = conf.get("headers") or {}
        reads |= _vars_in({k: v for k, v in conf.items() if k != "headers"})
        reads |= _vars_in(headers)
        if isinstance(headers, dict) and set(headers) & {"add", "set", "remove"}:
            removes |= {nginx_var(h) for h in headers.get("remove") or []}
            for op in ("add", "set"):
                overwrites |= {nginx_var(h) for h in headers.get(op) or {}}
        elif isinstance(headers, dict):
            overwrites |= {nginx_var(h) for h in headers}
    elif name == "request-id":
        header = nginx_var(str(conf.get("header_name", REQUEST_ID_HEADER)))
        reads.add(header)
        provides.add(header)
    elif name.startswith("serverless-"):
        code = "\n".join(str(f) for f in conf.get("functions") or [])
        reads |= set(_LUA_CTX_VAR.findall(code))
        overwrites |= {nginx_var(h) for h in _LUA_SET_HEADER.findall(code)}
        removes |= {nginx_var(h) for h in _LUA_CLEAR_HEADER.findall(code)}
    return reads, removes, overwrites, provides


def route_steps(
    doc: Doc, route: Doc, table: dict[str, PluginPhases]
) -> tuple[list[Step], Problems]:
    """The global rules' plugins and the route's, placed by `table` (one release's)."""
    steps: list[Step] = []
    problems: Problems = []
    holders = [(f"global_rules[{r.get('id')}]", True, r) for r in objects(doc, "global_rules")]
    holders.append((f"routes[{route.get('id')}]", False, route))
    for where, is_global, holder in holders:
        for name, raw in plugins_of(holder).items():
            known = table.get(name)
            conf = raw if isinstance(raw, dict) else {}
            if known is None:
                problems.append(f"{where}: no phases recorded for plugin {name!r}")
                continue
            if known.phase_from_conf:
                phase = str(conf.get("phase", "access"))
            else:
                phase = min(known.phases, key=PHASE_ORDER.index)
            if phase not in PHASE_ORDER or phase not in known.phases:
                problems.append(f"{where}.{name}: {phase!r} is not a phase it runs in")
                continue
            reads, removes, overwrites, provides = request_io(name, conf)
            steps.append(
                Step(
                    name,
                    phase,
                    known.priority,
                    is_global,
                    frozenset(reads),
                    frozenset(removes),
                    frozenset(overwrites),
                    frozenset(provides),
                )
            )
    return steps, problems


def step_of(steps: list[Step], plugin: str) -> Step | None:
    return next((step for step in steps if step.plugin == plugin), None)


# --------------------------------------------------------------------------------------------
# The checks. Each returns the problems it finds; [] means the documents agree.
# --------------------------------------------------------------------------------------------


def end_marker_problems(text: str) -> Problems:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[-1] != "#END":
        return ["apisix.yaml does not end with #END: standalone APISIX would not load it"]
    return []


def env_placement_problems(text: str, name: str) -> Problems:
    """`${{` only inside YAML values. Since 3.17.0 (apache/apisix#13078) APISIX substitutes
    `${{VAR}}` in the raw text of apisix.yaml before parsing it (apisix/core/config_yaml.lua,
    and `apisix start` in apisix/cli/file.lua), comments included: one in a comment is
    resolved too, and an unset one there fails the whole load. config.yaml is still parsed
    first at both commits (read_yaml_conf), so there the rule is a precaution that keeps the
    two files alike."""
    try:
        spans = [
            (token.start_mark.index, token.end_mark.index)
            for token in yaml.scan(text)
            if isinstance(token, yaml.ScalarToken)
        ]
    except yaml.YAMLError as error:
        return [f"{name}: not YAML: {error}"]
    problems = []
    for match in re.finditer(r"\$\{\{", text):
        if not any(start <= match.start() < end for start, end in spans):
            line = text.count("\n", 0, match.start()) + 1
            problems.append(
                f"{name}:{line}: `${{{{` outside a YAML value (a comment?): since 3.17 APISIX"
                " substitutes it too, and fails the load when the variable is unset"
            )
    return problems


def schema_conformance_problems(doc: Doc) -> Problems:
    """Every object and every plugin conf against APISIX's schemas (strict on attribute names)."""
    problems = [f"unknown top-level kind {kind!r}" for kind in doc if kind not in OBJECT_SCHEMAS]
    for kind, schema in OBJECT_SCHEMAS.items():
        ids = [str(item.get("id")) for item in objects(doc, kind)]
        problems += [f"{kind}: duplicate id {i!r}" for i in sorted(set(ids)) if ids.count(i) > 1]
        for item in objects(doc, kind):
            problems += schema_problems(schema, item, f"{kind}[{item.get('id')}]")
    upstreams = by_id(doc, "upstreams")
    for route in objects(doc, "routes"):
        targets = [route.get("upstream_id")]
        split = plugins_of(route).get("traffic-split")
        rules = (split.get("rules") if isinstance(split, dict) else None) or []
        for rule in rules:
            weighted = (rule.get("weighted_upstreams") if isinstance(rule, dict) else None) or []
            targets += [w.get("upstream_id") for w in weighted if isinstance(w, dict)]
        for target in targets:
            if target is not None and str(target) not in upstreams:
                problems.append(f"routes[{route.get('id')}]: upstream_id {target!r} is not defined")
    for where, name, conf in plugin_confs(doc):
        known = PLUGIN_SCHEMAS.get(name)
        if known is None:
            problems.append(f"{where}: plugin {name!r} has no schema recorded in this test")
            continue
        problems += schema_problems(known.schema, conf, f"{where}.{name}")
    return problems


def route_table_problems(doc: Doc) -> Problems:
    """Exactly the code's endpoints (POST, each reaching the function serving it) and /health."""
    problems = []
    expected = sorted([endpoint.value for endpoint in Endpoint] + ["/health"])
    served = sorted(path for route in objects(doc, "routes") for path in route_paths(route))
    if served != expected:
        problems.append(f"route uris {served} != {expected}")
    upstreams = by_id(doc, "upstreams")
    for endpoint, service in ingest_services().items():
        route = route_for(doc, "POST", endpoint.value)
        if route is None:
            problems.append(f"no POST route for {endpoint.value}")
            continue
        if route.get("methods") != ["POST"]:
            problems.append(f"{endpoint.value}: methods {route.get('methods')} != ['POST']")
        target, why = effective_upstream(route, endpoint.value)
        if why is not None:
            problems.append(f"{endpoint.value}: {why}")
            continue
        nodes = list((upstreams.get(str(target), {}).get("nodes") or {}).keys())
        if nodes != [f"{cluster_host(service)}:80"]:
            problems.append(f"{endpoint.value}: upstream nodes {nodes} do not name {service}")
    return problems


def upstream_problems(doc: Doc) -> Problems:
    """Knative cluster-local Services, reached by Host, never retried, patient enough."""
    problems = []
    longest_wait = setting_default("kafka_delivery_timeout_ms") / 1000 + 1
    for upstream in objects(doc, "upstreams"):
        where = f"upstreams[{upstream.get('id')}]"
        nodes = list((upstream.get("nodes") or {}).keys())
        hosts = {node.rsplit(":", 1)[0] for node in nodes}
        if len(hosts) != 1 or not next(iter(hosts)).endswith(f".{NAMESPACE}.svc.cluster.local"):
            problems.append(f"{where}: nodes {nodes} are not one {NAMESPACE} cluster-local host")
        if upstream.get("pass_host") != "rewrite" or {upstream.get("upstream_host")} != hosts:
            problems.append(f"{where}: Knative routes by Host: pass_host rewrite + upstream_host")
        if upstream.get("retries") != 0:
            problems.append(f"{where}: retries must be 0 (a retried POST can store twice)")
        read = (upstream.get("timeout") or {}).get("read", 60)
        if read <= longest_wait:
            problems.append(f"{where}: read timeout {read}s <= the function's {longest_wait}s")
    return problems


def forward_auth_problems(doc: Doc) -> Problems:
    """forward-auth calls authorize with the key, and carries exactly its principal headers."""
    problems = []
    authorize_error_headers = _authorize_error_headers()
    for route_where, route in ingest_routes(doc):
        conf = plugins_of(route).get("forward-auth")
        where = f"{route_where} forward-auth"
        if not isinstance(conf, dict):
            problems.append(f"{where}: missing")
            continue
        uri = str(conf.get("uri", ""))
        match = re.fullmatch(r"http://([^/:]+)(/[^?]*)", uri)
        if match is None or match.group(1) != cluster_host(AUTHORIZE_SERVICE):
            problems.append(f"{where}: uri {uri!r} does not name {cluster_host(AUTHORIZE_SERVICE)}")
        elif match.group(2).rstrip("/") in AUTHORIZE_OPERATIONAL_PATHS:
            problems.append(f"{where}: {match.group(2)} is an operational path of authorize")
        if conf.get("request_method", "GET") != "GET":
            problems.append(f"{where}: authorize needs headers only; POST would send the body")
        if API_KEY_HEADER not in conf.get("request_headers", []):
            problems.append(f"{where}: request_headers lacks {API_KEY_HEADER}")
        if REQUEST_ID_HEADER not in conf.get("request_headers", []):
            problems.append(f"{where}: request_headers lacks {REQUEST_ID_HEADER}")
        if sorted(conf.get("upstream_headers", [])) != sorted(AUDIT_HEADERS):
            problems.append(f"{where}: upstream_headers != {sorted(AUDIT_HEADERS)}")
        missing = authorize_error_headers - set(conf.get("client_headers", []))
        if missing:
            problems.append(f"{where}: client_headers lacks {sorted(missing)}")
        if conf.get("allow_degradation", False):
            problems.append(f"{where}: allow_degradation would let unauthenticated calls through")
        if conf.get("status_on_error") != 503:
            problems.append(f"{where}: authorize unreachable must be 503, not 403 or 401")
    return problems


def _authorize_error_headers() -> set[str]:
    """Headers the authorize function's 401 and 503 answers carry, which clients must see."""
    names = {"Content-Type"}
    for error in (Unauthenticated("no key"), KeyStoreUnavailable("down")):
        response = problem_response(error, instance="/", headers={REQUEST_ID_HEADER: "r"})
        assert response.media_type == PROBLEM_JSON
        names |= {name for name in response.headers if name.lower() != "content-length"}
    return {_canonical(name) for name in names} - {REQUEST_ID_HEADER}


def _canonical(header: str) -> str:
    special = {"www-authenticate": "WWW-Authenticate", "x-request-id": REQUEST_ID_HEADER}
    return special.get(header.lower(), "-".join(p.capitalize() for p in header.split("-")))


def _is_variable(value: Any) -> bool:
    return isinstance(value, str) and "$" in value


def limit_count_problems(doc: Doc) -> Problems:
    """The per-key quota: one counter per key for both paths (one route, one limit-count, no
    `group`), count and key from authorize's headers, a Redis window shared by replicas."""
    problems = []
    for where, name, conf in plugin_confs(doc):
        if name != "limit-count" or not isinstance(conf, dict) or not conf.get("group"):
            continue
        rules = [r for r in conf.get("rules") or [] if isinstance(r, dict)]
        values = [conf.get("count"), conf.get("time_window")]
        values += [r.get(f) for r in rules for f in ("count", "time_window")]
        if any(_is_variable(value) for value in values):
            problems.append(
                f"{where}.limit-count: group with a variable count: since 3.18 the group's"
                " limiter is built from the unresolved string (500 on every request)"
            )
    serving = {endpoint: routes_for(doc, "POST", endpoint.value) for endpoint in Endpoint}
    for endpoint, routes in serving.items():
        if len(routes) > 1:
            problems.append(f"POST {endpoint.value} matches {len(routes)} routes, not one")
    ids = sorted({str(routes[0].get("id")) for routes in serving.values() if routes})
    if len(ids) > 1:
        problems.append(
            f"the ingest paths are served by routes {ids}: each route's limit-count counts a"
            " key separately; serve both from one route (group cannot join them: its count"
            " would be a variable)"
        )
    for route_where, route in ingest_routes(doc):
        conf = plugins_of(route).get("limit-count")
        where = f"{route_where} limit-count"
        if not isinstance(conf, dict):
            problems.append(f"{where}: missing")
            continue
        expected = {
            "count": "$" + nginx_var(RATE_LIMIT_HEADER),
            "key": nginx_var(KEY_ID_HEADER),
            "key_type": "var",
            "time_window": WINDOW_SECONDS,
            "policy": "redis",
            "rejected_code": RATE_LIMITED_STATUS,
            "allow_degradation": True,
            "show_limit_quota_header": True,
            "redis_timeout": round(setting_default("redis_timeout_seconds") * 1000),
        }
        for field, value in expected.items():
            if conf.get(field) != value:
                problems.append(f"{where}: {field} is {conf.get(field)!r}, expected {value!r}")
        password = str(conf.get("redis_password", ""))
        if not re.fullmatch(r"\$\{\{\s*[A-Z0-9_]+\s*(:=[^}]*)?\}\}", password):
            problems.append(f"{where}: redis_password must come from ${{{{VAR}}}}, not the file")
    if set(rate_headers(RateDecision(True, 1, 1, 1))) != LIMIT_COUNT_QUOTA_HEADERS:
        problems.append("the code's X-RateLimit-* names differ from limit-count's")
    return problems


def _payload_too_large_body(limit: int) -> Doc:
    response = problem_response(PayloadTooLarge(limit), instance="/", headers={})
    body: Doc = json.loads(bytes(response.body))
    return body


def body_limit_problems(doc: Doc) -> Problems:
    """Per-path body limits (the code's), enforced in the rewrite phase: a body over its
    path's limit, chunked or not, is 413 before authorize is called or the quota counted."""
    event = setting_default("max_event_bytes")
    batch = setting_default("max_batch_body_bytes")
    problems = []
    if (Limits().max_event_bytes, Limits().max_batch_body_bytes) != (event, batch):
        problems.append("Limits and Settings disagree on the body limits")
    for route_where, route in ingest_routes(doc):
        plugins = plugins_of(route)
        size = (plugins.get("client-control") or {}).get("max_body_size")
        if size != batch:
            problems.append(f"{route_where}: client-control max_body_size {size} != {batch}")
        pre = plugins.get("serverless-pre-function")
        where = f"{route_where} serverless-pre-function"
        if not isinstance(pre, dict):
            problems.append(f"{where}: missing: no per-path body limit ({event} for one event)")
            continue
        if pre.get("phase", "access") != "rewrite":
            problems.append(f"{where}: phase {pre.get('phase', 'access')!r}, not rewrite")
        code = "\n".join(str(f) for f in pre.get("functions") or [])
        for limit in (event, batch):
            if not re.search(rf"(?<![0-9]){limit}(?![0-9])", code):
                problems.append(f"{where}: the code's limit {limit} is not in it")
        if f'"{Endpoint.SINGLE.value}"' not in code:
            problems.append(f"{where}: does not pick the event limit for {Endpoint.SINGLE.value}")
        if "core.request.get_body(" not in code:
            problems.append(f"{where}: does not read the body (a chunked one would pass)")
        body = _payload_too_large_body(batch)
        detail_head, detail_tail = str(body["detail"]).split(str(batch))
        expected_text = [PROBLEM_JSON, body["type"], body["title"], detail_head, detail_tail]
        for text in expected_text + [f"{key} =" for key in body] + ["413"]:
            if str(text) not in code:
                problems.append(f"{where}: its 413 is not the code's problem+json ({text!r})")
        for release, table in sorted(PLUGIN_PHASES.items()):
            steps, _ = route_steps(doc, route, table)
            reader = step_of(steps, "serverless-pre-function")
            for later in ("forward-auth", "limit-count"):
                step = step_of(steps, later)
                if reader and step and reader.position >= step.position:
                    problems.append(
                        f"APISIX {release} {route_where}: the body limit"
                        f" {reader.describe()} runs after {step.describe()}"
                    )
    return problems


def phase_problems(doc: Doc) -> Problems:
    """In every supported release: no plugin removes or overwrites a request header (or
    variable) before another plugin reads it, and the X-Audit-* headers a plugin reads were
    set by forward-auth before it."""
    problems = []
    audit_vars = {nginx_var(header) for header in AUDIT_HEADERS}
    for release, table in sorted(PLUGIN_PHASES.items()):
        for route in objects(doc, "routes"):
            steps, unknown = route_steps(doc, route, table)
            problems += [f"APISIX {release}: {problem}" for problem in unknown]
            for reader in steps:
                earlier = [s for s in steps if s is not reader and s.position < reader.position]
                for var in sorted(reader.reads):
                    for writer in earlier:
                        for verb, touched in (
                            ("removes", writer.removes),
                            ("overwrites", writer.overwrites),
                        ):
                            if var in touched:
                                problems.append(
                                    f"APISIX {release} routes[{route.get('id')}]:"
                                    f" {writer.describe()} {verb} {var} before"
                                    f" {reader.describe()} reads it"
                                )
                    if var in audit_vars and not any(
                        w.plugin == "forward-auth" and var in w.provides for w in earlier
                    ):
                        problems.append(
                            f"APISIX {release} routes[{route.get('id')}]: {reader.describe()}"
                            f" reads {var} before forward-auth sets it"
                        )
    return problems


def header_hygiene_problems(doc: Doc) -> Problems:
    """No client X-Audit-* header can reach limit-count or a function unverified."""
    problems = []
    allowed = {
        ("forward-auth", "upstream_headers"),
        ("limit-count", "count"),
        ("limit-count", "key"),
    }
    spellings = {h.lower() for h in AUDIT_HEADERS} | {nginx_var(h) for h in AUDIT_HEADERS}
    for where, name, conf in plugin_confs(doc):
        for field, value in conf.items() if isinstance(conf, dict) else []:
            text = json.dumps(value).lower()
            if (name, field) not in allowed and any(s in text for s in spellings):
                problems.append(f"{where}.{name}.{field} touches an X-Audit-* header")
    for route in objects(doc, "routes"):
        if route.get("vars"):
            problems.append(f"routes[{route.get('id')}]: vars would read headers before auth")
    for route_where, route in ingest_routes(doc):
        headers = (plugins_of(route).get("proxy-rewrite") or {}).get("headers") or {}
        if (headers.get("set") or {}).get(CLIENT_IP_HEADER) != "$remote_addr":
            # The functions read the client address from this header (CLIENT_IP_HEADER in
            # knative/); APISIX must overwrite whatever the client sent in it.
            problems.append(f"{route_where}: {CLIENT_IP_HEADER} is not set from $remote_addr")
    return problems


def retry_after_problems(doc: Doc) -> Problems:
    """A 429 carries Retry-After in whole seconds (RFC 9110): a serverless-post-function in
    header_filter rounds limit-count's X-RateLimit-Reset up, which has two decimals since 3.18
    (`math_floor(reset * 100) / 100` in limit-count/init.lua), so the raw value is never used."""
    problems = []
    raw = "sent_" + nginx_var(LIMIT_COUNT_RESET_HEADER)
    for where, name, conf in plugin_confs(doc):
        text = json.dumps(conf).lower()
        if raw in text:
            problems.append(
                f"{where}.{name}: Retry-After from ${raw} has two decimals since 3.18 (59.89)"
            )
        elif name == "response-rewrite" and "retry-after" in text:
            problems.append(
                f"{where}.{name} sets Retry-After: only the serverless-post-function may (whole"
                " seconds from limit-count's reset)"
            )
    needed = (str(RATE_LIMITED_STATUS), "Retry-After", "math.ceil", LIMIT_COUNT_RESET_HEADER)
    for route_where, route in ingest_routes(doc):
        conf = plugins_of(route).get("serverless-post-function")
        where = f"{route_where} serverless-post-function"
        if not isinstance(conf, dict):
            problems.append(f"{where}: missing: a 429 would carry no whole-second Retry-After")
            continue
        if conf.get("phase", "access") != "header_filter":
            problems.append(f"{where}: phase {conf.get('phase', 'access')!r}, not header_filter")
        functions = [str(f) for f in conf.get("functions") or []]
        if not any(all(word in code for word in needed) for code in functions):
            problems.append(
                f"{where}: no function sets Retry-After = math.ceil({LIMIT_COUNT_RESET_HEADER})"
                f" on a {RATE_LIMITED_STATUS}"
            )
    return problems


def serverless_problems(doc: Doc) -> Problems:
    """Every serverless function is a chunk returning a function (serverless/init.lua loads it
    and calls what it returns with (conf, ctx)), and holds no `${{` (APISIX would substitute
    an environment variable into the code)."""
    problems = []
    for where, name, conf in plugin_confs(doc):
        if not name.startswith("serverless-") or not isinstance(conf, dict):
            continue
        for index, code in enumerate(conf.get("functions") or []):
            at = f"{where}.{name}.functions[{index}]"
            text = str(code).strip()
            if not text.startswith("return function(conf, ctx)"):
                problems.append(f"{at}: does not start with `return function(conf, ctx)`")
            if not re.search(r"\bend$", text):
                problems.append(f"{at}: does not end with `end`")
            if "${{" in text:
                problems.append(f"{at}: holds `${{{{`, which APISIX substitutes since 3.17")
    return problems


def request_id_problems(doc: Doc) -> Problems:
    """Every answer carries the id the functions read and echo."""
    confs = [
        conf
        for rule in objects(doc, "global_rules")
        for name, conf in plugins_of(rule).items()
        if name == "request-id"
    ]
    if len(confs) != 1:
        return ["request-id must be in exactly one global rule (so 404s carry it too)"]
    conf = confs[0]
    problems = []
    if conf.get("header_name", REQUEST_ID_HEADER) != REQUEST_ID_HEADER:
        problems.append(f"request-id header_name {conf.get('header_name')!r}")
    if conf.get("include_in_response") is False:
        problems.append("request-id include_in_response is off")
    if not any("prometheus" in plugins_of(rule) for rule in objects(doc, "global_rules")):
        problems.append("prometheus is not in a global rule")
    return problems


def health_problems(doc: Doc, health_schema: Doc) -> Problems:
    route = route_for(doc, "GET", "/health")
    if route is None:
        return ["no GET /health route"]
    conf = plugins_of(route).get("mocking") or {}
    problems = []
    if route.get("upstream_id") or route.get("upstream") or set(plugins_of(route)) != {"mocking"}:
        problems.append("/health must be answered by the gateway alone (mocking, no upstream)")
    if conf.get("response_status", 200) != 200 or conf.get("with_mock_header", True):
        problems.append("/health must be a plain 200")
    try:
        body = json.loads(conf.get("response_example", ""))
    except ValueError:
        return [*problems, "/health body is not JSON"]
    problems += schema_problems(health_schema, body, "/health body (openapi Health)")
    return problems


CONTRACT_CHECKS: tuple[Callable[[Doc], Problems], ...] = (
    route_table_problems,
    upstream_problems,
    forward_auth_problems,
    limit_count_problems,
    body_limit_problems,
    phase_problems,
    header_hygiene_problems,
    retry_after_problems,
    serverless_problems,
    request_id_problems,
)

NUMERIC_LOG_VARS = {"status", "request_length", "body_bytes_sent", "bytes_sent", "request_time"}


def access_log_problems(log_format: str, escape: str) -> Problems:
    """The access log is one JSON object per line, and never holds a credential."""
    problems = []
    if escape != "json":
        problems.append(f"access_log_format_escape is {escape!r}, not json")
    forbidden = {nginx_var(API_KEY_HEADER), nginx_var(PRINCIPAL_HEADER), "http_authorization"}
    used = set(re.findall(r"\$([A-Za-z0-9_]+)", log_format))
    problems += [f"access log writes ${var}" for var in sorted(used & forbidden)]
    if nginx_var(REQUEST_ID_HEADER) not in used:
        problems.append("access log lacks the request id")
    bare = set(re.findall(r'(?<!")\$([A-Za-z0-9_]+)(?!["A-Za-z0-9_])', log_format))
    problems += [f"${var} is unquoted but not numeric" for var in sorted(bare - NUMERIC_LOG_VARS)]
    sample = re.sub(r"\$[A-Za-z0-9_]+", "0", log_format)
    try:
        if not isinstance(json.loads(sample), dict):
            problems.append("access log line is not a JSON object")
    except ValueError as error:
        problems.append(f"access log line is not JSON: {error}")
    return problems


def config_key_paths(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        paths: set[str] = set()
        for key, item in value.items():
            paths |= config_key_paths(item, f"{prefix}.{key}" if prefix else str(key))
        return paths
    return {prefix}


def env_references(value: Any) -> dict[str, bool]:
    """Environment variables a document's values name as ${{VAR}}, each with whether a
    `:=` default follows it (apisix/cli/file.lua var_sub)."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        found: dict[str, bool] = {}
        for item in value:
            for name, has_default in env_references(item).items():
                found[name] = found.get(name, True) and has_default
        return found
    if isinstance(value, str):
        return {
            name: bool(default)
            for name, default in re.findall(r"\$\{\{\s*([A-Za-z0-9_]+)\s*(:=)?", value)
        }
    return {}


def config_problems(config: Doc, doc: Doc) -> Problems:
    """config.yaml: a yaml-fed data plane with exactly the plugins the routes use, and every
    variable apisix.yaml names passed to the nginx workers."""
    problems = [
        f"config.yaml: unknown key {p}" for p in sorted(config_key_paths(config) - CONFIG_KEYS)
    ]
    deployment = config.get("deployment") or {}
    if deployment.get("role") != "data_plane":
        problems.append("deployment.role is not data_plane")
    if (deployment.get("role_data_plane") or {}).get("config_provider") != "yaml":
        problems.append("deployment.role_data_plane.config_provider is not yaml")
    used = {name for _, name, _ in plugin_confs(doc)}
    enabled = set(config.get("plugins") or [])
    problems += [f"plugin {name} is used but not enabled" for name in sorted(used - enabled)]
    problems += [f"plugin {name} is enabled but unused" for name in sorted(enabled - used)]
    nginx = config.get("nginx_config") or {}
    http = nginx.get("http") or {}
    biggest = max(setting_default("max_event_bytes"), setting_default("max_batch_body_bytes"))
    if http.get("client_max_body_size") != biggest:
        problems.append(f"client_max_body_size {http.get('client_max_body_size')} != {biggest}")
    problems += access_log_problems(
        str(http.get("access_log_format", "")), str(http.get("access_log_format_escape"))
    )
    envs = set(nginx.get("envs") or [])
    for name, has_default in sorted(env_references(doc).items()):
        if name not in envs:
            consequence = "silently uses its default" if has_default else "fails the load"
            problems.append(
                f"nginx_config.envs lacks {name}: a worker cannot read it and {consequence}"
            )
    return problems


def helm_key_paths(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict) and value and f"{prefix}.*" not in HELM_KEYS:
        paths: set[str] = set()
        for key, item in value.items():
            paths |= helm_key_paths(item, f"{prefix}.{key}" if prefix else str(key))
        return paths
    return {f"{prefix}.*" if f"{prefix}.*" in HELM_KEYS else prefix}


def helm_problems(values: Doc, config: Doc) -> Problems:
    """Helm: a supported release, 3 gateways, 3 etcd members, dashboard, scraping; same plugins
    and logs as the standalone data plane."""
    problems = [
        f"values.yaml: the chart has no key {p}" for p in sorted(helm_key_paths(values) - HELM_KEYS)
    ]
    apisix = values.get("apisix") or {}
    admin = apisix.get("admin") or {}
    logs = (apisix.get("nginx") or {}).get("logs") or {}
    http = (config.get("nginx_config") or {}).get("http") or {}
    tag = str((values.get("image") or {}).get("tag", ""))
    image = re.fullmatch(r"(\d+\.\d+\.\d+)-([a-z][a-z0-9]*)", tag)
    if image is None:
        problems.append(f"image tag {tag!r} is not <version>-<flavour> (e.g. 3.18.0-ubuntu)")
    elif image.group(1) not in SUPPORTED_APISIX:
        problems.append(f"image {tag!r}: the routes were run live on {sorted(SUPPORTED_APISIX)}")
    expectations = [
        (values.get("replicaCount") == 3, "replicaCount is not 3"),
        ((values.get("etcd") or {}).get("enabled") is True, "etcd is not enabled"),
        ((values.get("etcd") or {}).get("replicaCount") == 3, "etcd.replicaCount is not 3"),
        (admin.get("enabled") is True and admin.get("enable_admin_ui") is True, "no dashboard"),
        ("dashboard" not in values, "`dashboard` is the retired sub-chart; use enable_admin_ui"),
        (not {"admin", "viewer"} & set(admin.get("credentials") or {}), "admin keys in values"),
        (bool((admin.get("credentials") or {}).get("secretName")), "admin keys not from a Secret"),
        ((apisix.get("prometheus") or {}).get("enabled") is True, "prometheus export is off"),
        (
            ((values.get("metrics") or {}).get("serviceMonitor") or {}).get("enabled") is True,
            "no ServiceMonitor",
        ),
        (apisix.get("plugins") == config.get("plugins"), "plugins differ from config.yaml"),
        (logs.get("accessLogFormat") == http.get("access_log_format"), "log format differs"),
        (logs.get("accessLogFormatEscape") == "json", "access log is not JSON-escaped"),
    ]
    problems += [message for ok, message in expectations if not ok]
    return problems


def etcd_parity_problems(doc: Doc, requests: list[Any], resolve: Callable[[Any], Any]) -> Problems:
    """The Admin API requests put exactly the standalone objects into etcd."""
    expected = {
        f"/apisix/admin/{kind}/{item['id']}": resolve({k: v for k, v in item.items() if k != "id"})
        for kind in OBJECT_SCHEMAS
        for item in objects(doc, kind)
    }
    sent = {request.path: request.body for request in requests if request.method == "PUT"}
    problems = [f"etcd mode lacks {path}" for path in sorted(set(expected) - set(sent))]
    problems += [f"etcd mode adds {path}" for path in sorted(set(sent) - set(expected))]
    problems += [
        f"etcd mode body of {path} differs"
        for path in sorted(set(expected) & set(sent))
        if expected[path] != sent[path]
    ]
    kinds = [request.path.split("/")[3] for request in requests]
    first_route = kinds.index("routes") if "routes" in kinds else len(kinds)
    if any(kind == "upstreams" for kind in kinds[first_route:]):
        problems.append("routes are loaded before the upstreams they name")
    return problems


def knative_services(root: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """(name, namespace) of every Knative Service under `root`, and files that did not parse."""
    services: list[tuple[str, str]] = []
    unreadable: list[str] = []
    kustomize_namespaces: dict[Path, str] = {}
    documents: list[tuple[Path, Doc]] = []
    for path in sorted(root.rglob("*.y*ml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError as error:
            unreadable.append(f"{path.relative_to(root)}: {error}")
            continue
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            if path.name.startswith("kustomization") and doc.get("namespace"):
                kustomize_namespaces[path.parent] = str(doc["namespace"])
            documents.append((path, doc))
    only_namespace = set(kustomize_namespaces.values())
    for path, doc in documents:
        if doc.get("kind") != "Service" or not str(doc.get("apiVersion", "")).startswith(
            "serving.knative.dev/"
        ):
            continue
        metadata = doc.get("metadata") or {}
        namespace = metadata.get("namespace") or next(
            (kustomize_namespaces[d] for d in path.parents if d in kustomize_namespaces),
            next(iter(only_namespace)) if len(only_namespace) == 1 else None,
        )
        services.append((str(metadata.get("name")), str(namespace)))
    return services, unreadable


def knative_problems(services: list[tuple[str, str]], doc: Doc) -> Problems:
    """Every Service the gateway names exists in knative/ under that name and namespace."""
    named = {AUTHORIZE_SERVICE} | set(ingest_services().values())
    for upstream in objects(doc, "upstreams"):
        for node in upstream.get("nodes") or {}:
            host = node.rsplit(":", 1)[0]
            named.add(host.split(".")[0])
    return [
        f"knative/ has no Service {name} in namespace {NAMESPACE}"
        for name in sorted(named)
        if (name, NAMESPACE) not in services
    ]


# --------------------------------------------------------------------------------------------
# The tests on the real files.
# --------------------------------------------------------------------------------------------


def test_standalone_file_ends_with_end_marker(standalone_text: str) -> None:
    assert end_marker_problems(standalone_text) == []


@pytest.mark.parametrize("path", [STANDALONE_FILE, CONFIG_FILE], ids=lambda path: path.name)
def test_environment_variables_appear_only_in_values(path: Path) -> None:
    assert env_placement_problems(path.read_text(encoding="utf-8"), path.name) == []


def test_every_object_and_plugin_matches_apisix_schemas(standalone: Doc) -> None:
    assert schema_conformance_problems(standalone) == []


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__)
def test_gateway_agrees_with_the_code(standalone: Doc, check: Callable[[Doc], Problems]) -> None:
    assert check(standalone) == []


def test_traffic_split_sends_each_path_to_its_function(standalone: Doc) -> None:
    ((_, route),) = ingest_routes(standalone)
    assert effective_upstream(route, Endpoint.SINGLE.value) == ("ingest-event", None)
    assert effective_upstream(route, Endpoint.BATCH.value) == ("ingest-batch", None)


def test_health_is_the_contracts_body(standalone: Doc) -> None:
    assert health_problems(standalone, openapi_health_schema()) == []


def test_config_yaml(config: Doc, standalone: Doc) -> None:
    assert config_problems(config, standalone) == []


def test_helm_values(helm_values: Doc, config: Doc) -> None:
    assert helm_problems(helm_values, config) == []


def test_supported_releases_are_recorded() -> None:
    assert set(APISIX_COMMITS) == SUPPORTED_APISIX == set(PLUGIN_PHASES)
    assert all(re.fullmatch(r"[0-9a-f]{40}", commit) for commit in APISIX_COMMITS.values())
    assert min(SUPPORTED_APISIX, key=version_tuple) == MIN_APISIX


def test_phase_tables_cover_every_enabled_plugin(config: Doc) -> None:
    for release, table in PLUGIN_PHASES.items():
        assert set(config["plugins"]) <= set(table), release
        for name, known in table.items():
            assert known.phases and known.phases <= set(PHASE_ORDER), (release, name)
            assert known.path.startswith("apisix/plugins/"), (release, name)


def test_plugin_sources_are_recorded() -> None:
    for name, known in PLUGIN_SCHEMAS.items():
        assert re.search(r"apache/apisix apisix/\S+\.lua @ [0-9a-f]{40}", known.source), name
        assert any(commit in known.source for commit in APISIX_COMMITS.values()), name


def test_etcd_mode_loads_the_standalone_objects(standalone: Doc, sync: ModuleType) -> None:
    env = {"APISIX_REDIS_PASSWORD": "pw-from-env"}
    requests = sync.admin_requests(sync.read_standalone(STANDALONE_FILE), env)
    assert etcd_parity_problems(standalone, requests, lambda v: sync.resolve_env(v, env)) == []
    route = next(r for r in requests if r.path == "/apisix/admin/routes/ingest")
    limit = route.body["plugins"]["limit-count"]
    assert limit["redis_password"] == "pw-from-env"
    assert limit["redis_host"] == cluster_host("redis")  # the default after :=
    unset = sync.admin_requests(sync.read_standalone(STANDALONE_FILE), {})
    route = next(r for r in unset if r.path == "/apisix/admin/routes/ingest")
    assert route.body["plugins"]["limit-count"]["redis_password"] == ""  # a Redis without AUTH


def test_sync_resolves_variables_as_apisix_does(sync: ModuleType) -> None:
    env = {"A": "x", "N": "6379", "B": "true"}
    assert sync.resolve_env({"v": ["${{A}}-${{ A }}", "${{N}}", "${{B}}"]}, env) == {
        "v": ["x-x", 6379, True]
    }
    assert sync.resolve_env("${{MISSING:= fallback }}", env) == "fallback"
    with pytest.raises(sync.SyncError, match="MISSING"):
        sync.resolve_env("${{MISSING}}", env)
    assert sync.masked({"redis_password": "pw", "redis_host": "h"}) == {
        "redis_password": "***",
        "redis_host": "h",
    }


def test_sync_refuses_a_file_without_end_marker(sync: ModuleType, tmp_path: Path) -> None:
    broken = tmp_path / "apisix.yaml"
    broken.write_text(STANDALONE_FILE.read_text(encoding="utf-8").replace("\n#END", "\n"))
    with pytest.raises(sync.SyncError, match="#END"):
        sync.read_standalone(broken)


def test_knative_services_exist_for_every_upstream(standalone: Doc) -> None:
    services, unreadable = knative_services(KNATIVE_DIR)
    assert services, (
        f"knative/ has no Knative Service (serving.knative.dev); unparsable: {unreadable}"
    )
    assert knative_problems(services, standalone) == []


def test_request_id_header_is_the_one_the_code_reads_and_echoes() -> None:
    scope = {"type": "http", "headers": [(REQUEST_ID_HEADER.lower().encode(), b"abc-1")]}
    assert request_id_of(request_headers(Request(scope))) == "abc-1"
    response = problem_response(
        Unauthenticated("x"), instance="/", headers={REQUEST_ID_HEADER: "r"}
    )
    assert response.headers[REQUEST_ID_HEADER] == "r"


def openapi_health_schema() -> Doc:
    spec = load_yaml(OPENAPI_FILE)
    schema: Doc = spec["components"]["schemas"]["Health"]
    return schema


def test_knative_functions_read_the_client_ip_from_the_gateway_header() -> None:
    found = {}
    for path in (ROOT / "knative").rglob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if not isinstance(document, dict) or document.get("kind") != "Service":
                continue
            for container in (
                document.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
            ):
                for env in container.get("env", []) or []:
                    if env.get("name") == "CLIENT_IP_HEADER":
                        found[document["metadata"]["name"]] = env.get("value")
    assert found.get("ingest-event") == CLIENT_IP_HEADER
    assert found.get("ingest-batch") == CLIENT_IP_HEADER


# --------------------------------------------------------------------------------------------
# Mutations: each check fails on a broken copy.
# --------------------------------------------------------------------------------------------

INGEST = "ingest"


def _route(doc: Doc, route_id: str = INGEST) -> Doc:
    return next(route for route in doc["routes"] if route["id"] == route_id)


def _plugins(doc: Doc, route_id: str = INGEST) -> Doc:
    plugins: Doc = _route(doc, route_id)["plugins"]
    return plugins


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """Set `plugin.attribute[.attribute...]` on the ingest route."""

    def mutate(doc: Doc) -> None:
        target: Any = _plugins(doc)
        *parents, last = path.split(".")
        for part in parents:
            target = target[part]
        target[last] = value

    return mutate


def _rename_attribute(plugin: str, old: str, new: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        conf = _plugins(doc)[plugin]
        conf[new] = conf.pop(old)

    return mutate


def _upstream(field: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        doc["upstreams"][0][field] = value

    return mutate


def _remove(plugin: str) -> Callable[[Doc], None]:
    return lambda doc: _plugins(doc).pop(plugin)


def _lua(plugin: str, old: str, new: str) -> Callable[[Doc], None]:
    """Replace `old` (which must be there) in the plugin's first function."""

    def mutate(doc: Doc) -> None:
        functions = _plugins(doc)[plugin]["functions"]
        assert old in functions[0], old
        functions[0] = functions[0].replace(old, new)

    return mutate


def _first_rule(doc: Doc) -> Doc:
    rule: Doc = _plugins(doc)["traffic-split"]["rules"][0]
    return rule


SCHEMA_MUTATIONS = {
    "misspelled attribute": (
        _rename_attribute("forward-auth", "upstream_headers", "upstream_header"),
        "upstream_header",
    ),
    "misspelled redis attribute": (
        _rename_attribute("limit-count", "redis_timeout", "redis_timeout_ms"),
        "redis_timeout_ms",
    ),
    "wrong type": (_set("limit-count.rejected_code", "429"), "rejected_code"),
    "count not a string or positive integer": (_set("limit-count.count", 0), "count"),
    "enum violation": (_set("limit-count.policy", "redis-sentinel"), "policy"),
    "out of bounds": (_set("forward-auth.timeout", 120000), "timeout"),
    "missing required uri": (
        lambda d: _plugins(d)["forward-auth"].pop("uri"),
        "'uri' is a required",
    ),
    "3.18-only attribute": (_set("forward-auth.max_req_body_size", 65536), "max_req_body_size"),
    "unknown plugin": (_set("limit-counter", {"count": 1, "time_window": 1}), "limit-counter"),
    "bad proxy-rewrite headers": (
        _set("proxy-rewrite.headers", {"delete": ["X-API-Key"]}),
        "headers",
    ),
    "misspelled traffic-split attribute": (
        lambda d: _first_rule(d).update({"weighted_upstream": _first_rule(d).pop("match")}),
        "weighted_upstream",
    ),
    "traffic-split to an undefined upstream": (
        lambda d: _first_rule(d)["weighted_upstreams"][0].update({"upstream_id": "ingest-bulk"}),
        "ingest-bulk",
    ),
    "serverless phase typo": (_set("serverless-pre-function.phase", "rewrites"), "rewrites"),
    "serverless without functions": (_set("serverless-post-function.functions", []), "[]"),
    "route typo": (lambda d: _route(d, "health").update({"method": ["GET"]}), "method"),
    "uri and uris": (
        lambda d: _route(d).update({"uri": Endpoint.SINGLE.value}),
        "valid under each",
    ),
    "uris repeated": (
        lambda d: _route(d).update({"uris": [Endpoint.SINGLE.value] * 2}),
        "non-unique",
    ),
    "upstream typo": (_upstream("passhost", "rewrite"), "passhost"),
    "dangling upstream_id": (lambda d: _route(d).update({"upstream_id": "nope"}), "nope"),
    "duplicate id": (lambda d: d["routes"][1].update({"id": d["routes"][0]["id"]}), "duplicate"),
}


@pytest.mark.parametrize("name", SCHEMA_MUTATIONS)
def test_schema_check_mutation(standalone: Doc, name: str) -> None:
    mutate, expected = SCHEMA_MUTATIONS[name]
    doc = copy.deepcopy(standalone)
    mutate(doc)
    problems = schema_conformance_problems(doc)
    assert any(expected in problem for problem in problems), problems


def _swap_functions(doc: Doc) -> None:
    weighted = _first_rule(doc)["weighted_upstreams"][0]
    route = _route(doc)
    route["upstream_id"], weighted["upstream_id"] = weighted["upstream_id"], route["upstream_id"]


def _split_into_two_routes(doc: Doc) -> None:
    """The old design: one route per path, each with its own limit-count."""
    single = _route(doc)
    batch = copy.deepcopy(single)
    single.pop("uris")
    single["uri"] = Endpoint.SINGLE.value
    single["plugins"].pop("traffic-split")
    batch.pop("uris")
    batch.update({"id": "ingest-batch", "uri": Endpoint.BATCH.value, "upstream_id": "ingest-batch"})
    batch["plugins"].pop("traffic-split")
    doc["routes"].insert(1, batch)


CONTRACT_MUTATIONS: dict[str, tuple[Callable[[Doc], Any], Callable[[Doc], Problems], str]] = {
    # Routes and upstreams.
    "wrong path": (
        lambda d: _route(d).update({"uris": [Endpoint.SINGLE.value, "/v1/batch"]}),
        route_table_problems,
        "route uris",
    ),
    "functions swapped": (_swap_functions, route_table_problems, "do not name"),
    "extra method": (
        lambda d: _route(d).update({"methods": ["POST", "PUT"]}),
        route_table_problems,
        "methods",
    ),
    "batch not split off": (_remove("traffic-split"), route_table_problems, "name ingest-batch"),
    "split on the wrong path": (
        lambda d: _first_rule(d).update({"match": [{"vars": [["uri", "==", "/v1/events"]]}]}),
        route_table_problems,
        "do not name",
    ),
    "batch split between functions": (
        lambda d: _first_rule(d)["weighted_upstreams"].append({"weight": 1}),
        route_table_problems,
        "not one",
    ),
    "split on a header": (
        lambda d: _first_rule(d).update({"match": [{"vars": [["http_x_batch", "==", "1"]]}]}),
        route_table_problems,
        "cannot evaluate",
    ),
    "upstream in another namespace": (
        _upstream("nodes", {"ingest-event.default.svc.cluster.local:80": 1}),
        upstream_problems,
        "cluster-local",
    ),
    "Host not rewritten": (_upstream("pass_host", "pass"), upstream_problems, "Host"),
    "retries": (_upstream("retries", 1), upstream_problems, "retries"),
    "short read timeout": (
        _upstream("timeout", {"connect": 5, "send": 5, "read": 5}),
        upstream_problems,
        "read timeout",
    ),
    # forward-auth.
    "authorize host": (
        _set("forward-auth.uri", f"http://{cluster_host('authorise')}/authorize"),
        forward_auth_problems,
        "does not name",
    ),
    "authorize operational path": (
        _set("forward-auth.uri", f"http://{cluster_host('authorize')}/health"),
        forward_auth_problems,
        "operational",
    ),
    "wrong key header": (
        _set("forward-auth.request_headers", ["X-Api-Token", REQUEST_ID_HEADER]),
        forward_auth_problems,
        API_KEY_HEADER,
    ),
    "principal header misspelled": (
        _set(
            "forward-auth.upstream_headers",
            ["X-Audit-Principle", TENANT_HEADER, KEY_ID_HEADER, RATE_LIMIT_HEADER],
        ),
        forward_auth_problems,
        "upstream_headers",
    ),
    "WWW-Authenticate dropped": (
        _set("forward-auth.client_headers", ["Content-Type", "Retry-After"]),
        forward_auth_problems,
        "WWW-Authenticate",
    ),
    "fail open auth": (
        _set("forward-auth.allow_degradation", True),
        forward_auth_problems,
        "unauthenticated",
    ),
    "403 when authorize is down": (
        _set("forward-auth.status_on_error", 403),
        forward_auth_problems,
        "503",
    ),
    "body sent to authorize": (
        _set("forward-auth.request_method", "POST"),
        forward_auth_problems,
        "POST",
    ),
    "no forward-auth": (_remove("forward-auth"), forward_auth_problems, "missing"),
    # limit-count, and one counter per key (cause 3).
    "group with a variable count": (
        _set("limit-count.group", "ingest"),
        limit_count_problems,
        "group with a variable count",
    ),
    "one route per path": (_split_into_two_routes, limit_count_problems, "counts a key separately"),
    "quota header misspelled": (
        _set("limit-count.count", "$http_x_audit_ratelimit"),
        limit_count_problems,
        "count",
    ),
    "limit keyed by IP": (_set("limit-count.key", "remote_addr"), limit_count_problems, "key is"),
    "wrong window": (_set("limit-count.time_window", 3600), limit_count_problems, "time_window"),
    "local counters": (_set("limit-count.policy", "local"), limit_count_problems, "policy"),
    "503 instead of 429": (
        _set("limit-count.rejected_code", 503),
        limit_count_problems,
        "rejected_code",
    ),
    "fail closed on redis": (
        _set("limit-count.allow_degradation", False),
        limit_count_problems,
        "allow_degradation",
    ),
    "slow redis timeout": (
        _set("limit-count.redis_timeout", 1000),
        limit_count_problems,
        "redis_timeout",
    ),
    "literal password": (
        _set("limit-count.redis_password", "hunter2"),
        limit_count_problems,
        "redis_password",
    ),
    "no limit-count": (_remove("limit-count"), limit_count_problems, "missing"),
    # Body limits: per path, in rewrite, before authorize and the quota.
    "batch body cap": (
        _set("client-control.max_body_size", 1048576),
        body_limit_problems,
        "client-control max_body_size",
    ),
    "event body limit": (
        _lua("serverless-pre-function", "65536", "1048576"),
        body_limit_problems,
        "65536",
    ),
    "event limit on another path": (
        _lua("serverless-pre-function", '"/v1/events"', '"/v1/event"'),
        body_limit_problems,
        "/v1/events",
    ),
    "body not read": (
        _lua("serverless-pre-function", "core.request.get_body(limit, ctx)", "nil, nil"),
        body_limit_problems,
        "does not read the body",
    ),
    "413 not problem+json": (
        _lua("serverless-pre-function", "application/problem+json", "application/json"),
        body_limit_problems,
        "problem+json",
    ),
    "body limit in access": (
        _set("serverless-pre-function.phase", "access"),
        body_limit_problems,
        "not rewrite",
    ),
    "body limit after the quota": (
        _set("serverless-pre-function.phase", "header_filter"),
        body_limit_problems,
        "runs after limit-count",
    ),
    "no per-path limit": (_remove("serverless-pre-function"), body_limit_problems, "missing"),
    # Phases (cause 2).
    "key removed before forward-auth reads it": (
        _set(
            "proxy-rewrite.headers",
            {"set": {CLIENT_IP_HEADER: "$remote_addr"}, "remove": [API_KEY_HEADER]},
        ),
        phase_problems,
        f"proxy-rewrite (rewrite, priority 1008) removes {nginx_var(API_KEY_HEADER)}",
    ),
    "key rewritten before forward-auth reads it": (
        _set("proxy-rewrite.headers", {"set": {API_KEY_HEADER: "redacted"}}),
        phase_problems,
        f"overwrites {nginx_var(API_KEY_HEADER)}",
    ),
    "key cleared earlier in the access phase": (
        lambda d: (
            _set("serverless-pre-function.phase", "access")(d),
            _lua("serverless-pre-function", "local limit", 'ngx.req.clear_header("X-API-Key")\n')(
                d
            ),
        ),
        phase_problems,
        f"serverless-pre-function (access, priority 10000) removes {nginx_var(API_KEY_HEADER)}",
    ),
    "quota header not set by forward-auth": (
        _set("forward-auth.upstream_headers", [PRINCIPAL_HEADER, TENANT_HEADER, KEY_ID_HEADER]),
        phase_problems,
        f"reads {nginx_var(RATE_LIMIT_HEADER)} before forward-auth sets it",
    ),
    "quota key overwritten before limit-count": (
        _set("proxy-rewrite.headers", {"set": {KEY_ID_HEADER: "$remote_addr"}}),
        phase_problems,
        f"overwrites {nginx_var(KEY_ID_HEADER)}",
    ),
    # Header hygiene.
    "spoofable quota": (
        _set("proxy-rewrite.headers", {"set": {RATE_LIMIT_HEADER: "100000"}}),
        header_hygiene_problems,
        "X-Audit",
    ),
    "route vars": (
        lambda d: _route(d).update({"vars": [["http_x_audit_tenant_id", "==", "t"]]}),
        header_hygiene_problems,
        "vars",
    ),
    # Retry-After (cause 4).
    "Retry-After from the raw reset": (
        lambda d: (
            _remove("serverless-post-function")(d),
            _set(
                "response-rewrite",
                {
                    "headers": {"set": {"Retry-After": "$sent_http_x_ratelimit_reset"}},
                    "vars": [["status", "==", 429]],
                },
            )(d),
        ),
        retry_after_problems,
        "two decimals",
    ),
    "Retry-After rewritten elsewhere": (
        _set("response-rewrite", {"headers": {"set": {"Retry-After": "60"}}}),
        retry_after_problems,
        "response-rewrite sets Retry-After",
    ),
    "no whole-second Retry-After": (
        _remove("serverless-post-function"),
        retry_after_problems,
        "missing",
    ),
    "Retry-After rounded down": (
        _lua("serverless-post-function", "math.ceil", "math.floor"),
        retry_after_problems,
        "math.ceil",
    ),
    "Retry-After set too late": (
        _set("serverless-post-function.phase", "body_filter"),
        retry_after_problems,
        "header_filter",
    ),
    # Serverless functions.
    "function not returned": (
        _lua("serverless-pre-function", "return function(conf, ctx)", "function(conf, ctx)"),
        serverless_problems,
        "does not start",
    ),
    "trailing code after the function": (
        lambda d: _plugins(d)["serverless-post-function"]["functions"].append(
            "return function(conf, ctx)\n  ngx.log(ngx.WARN, 'x')\nend\nlocal unused = 1\n"
        ),
        serverless_problems,
        "does not end",
    ),
    "environment variable in Lua": (
        _lua("serverless-pre-function", "local limit", "-- ${{APISIX_MAX_BODY}}\nlocal limit"),
        serverless_problems,
        "${{",
    ),
    # request-id.
    "request id renamed": (
        lambda d: d["global_rules"][0]["plugins"]["request-id"].update(
            {"header_name": "X-Correlation-Id"}
        ),
        request_id_problems,
        "header_name",
    ),
    "request id per route": (
        lambda d: d["global_rules"][0]["plugins"].pop("request-id"),
        request_id_problems,
        "global rule",
    ),
}


@pytest.mark.parametrize("name", CONTRACT_MUTATIONS)
def test_contract_check_mutation(standalone: Doc, name: str) -> None:
    mutate, check, expected = CONTRACT_MUTATIONS[name]
    doc = copy.deepcopy(standalone)
    mutate(doc)
    problems = check(doc)
    assert any(expected in problem for problem in problems), problems


def _tables_with(
    plugin: str, releases: tuple[str, ...], **changes: Any
) -> dict[str, dict[str, PluginPhases]]:
    """PLUGIN_PHASES with `plugin`'s entry changed in `releases`."""
    tables = copy.deepcopy(PLUGIN_PHASES)
    for release in releases:
        known = tables[release][plugin]
        tables[release][plugin] = PluginPhases(
            known.path,
            frozenset(changes.get("phases", known.phases)),
            changes.get("priority", known.priority),
            known.phase_from_conf,
        )
    return tables


def test_phase_table_mutation(monkeypatch: pytest.MonkeyPatch, standalone: Doc) -> None:
    # forward-auth below limit-count: the quota would read headers authorize has not set yet.
    tables = _tables_with("forward-auth", ("3.18.0",), priority=900)
    monkeypatch.setattr(sys.modules[__name__], "PLUGIN_PHASES", tables)
    problems = phase_problems(standalone)
    assert any("3.18.0" in p and "before forward-auth sets it" in p for p in problems), problems
    assert not any("3.16.0" in p for p in problems), problems


def test_phase_check_is_about_order_not_presence(
    monkeypatch: pytest.MonkeyPatch, standalone: Doc
) -> None:
    doc = copy.deepcopy(standalone)
    _set(
        "proxy-rewrite.headers",
        {"set": {CLIENT_IP_HEADER: "$remote_addr"}, "remove": [API_KEY_HEADER]},
    )(doc)
    assert phase_problems(doc)
    # The same removal by a plugin that ran after forward-auth would be harmless.
    later = _tables_with("proxy-rewrite", tuple(SUPPORTED_APISIX), phases={"access"}, priority=1000)
    monkeypatch.setattr(sys.modules[__name__], "PLUGIN_PHASES", later)
    assert phase_problems(doc) == []


def test_phase_table_without_a_plugin_mutation(
    monkeypatch: pytest.MonkeyPatch, standalone: Doc
) -> None:
    tables = copy.deepcopy(PLUGIN_PHASES)
    del tables["3.16.0"]["traffic-split"]
    monkeypatch.setattr(sys.modules[__name__], "PLUGIN_PHASES", tables)
    assert any(
        "no phases recorded for plugin 'traffic-split'" in p for p in phase_problems(standalone)
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("routes: []\n", 1),
        ("routes: []\n#END\n# trailing comment\n", 1),
        ("routes: []\n#END\n\n", 0),
    ],
)
def test_end_marker_mutation(text: str, expected: int) -> None:
    assert len(end_marker_problems(text)) == expected


ENV_PLACEMENT_MUTATIONS: dict[str, tuple[Path, str, str, int]] = {
    "comment line": (
        STANDALONE_FILE,
        "\nroutes:\n",
        "\n# the password is ${{APISIX_REDIS_PASSWORD}}, from the Secret\nroutes:\n",
        1,
    ),
    "comment after a value": (
        STANDALONE_FILE,
        "redis_port: 6379\n",
        "redis_port: 6379  # or ${{APISIX_REDIS_PORT}}\n",
        1,
    ),
    "comment in config.yaml": (
        CONFIG_FILE,
        "  envs:\n",
        "  # ${{APISIX_REDIS_HOST}} and ${{APISIX_REDIS_PASSWORD}}\n  envs:\n",
        2,
    ),
    "in a value (allowed)": (
        STANDALONE_FILE,
        "redis_database: 0\n",
        "redis_database: '${{APISIX_REDIS_DATABASE:=0}}'\n",
        0,
    ),
}


@pytest.mark.parametrize("name", ENV_PLACEMENT_MUTATIONS)
def test_env_placement_mutation(name: str) -> None:
    path, old, new, expected = ENV_PLACEMENT_MUTATIONS[name]
    text = path.read_text(encoding="utf-8")
    assert old in text
    problems = env_placement_problems(text.replace(old, new, 1), path.name)
    assert len(problems) == expected, problems


def test_health_mutation(standalone: Doc) -> None:
    schema = openapi_health_schema()
    doc = copy.deepcopy(standalone)
    _plugins(doc, "health")["mocking"]["response_example"] = '{"status":"up"}'
    assert any("Health" in p for p in health_problems(doc, schema))
    doc = copy.deepcopy(standalone)
    _route(doc, "health")["upstream_id"] = "ingest-event"
    assert any("gateway alone" in p for p in health_problems(doc, schema))


CONFIG_MUTATIONS: dict[str, tuple[Callable[[Doc], Any], str]] = {
    "role": (lambda c: c["deployment"].update({"role": "traditional"}), "data_plane"),
    "provider": (
        lambda c: c["deployment"]["role_data_plane"].update({"config_provider": "etcd"}),
        "yaml",
    ),
    "plugin not enabled": (lambda c: c["plugins"].remove("forward-auth"), "forward-auth is used"),
    "post-function not enabled": (
        lambda c: c["plugins"].remove("serverless-post-function"),
        "serverless-post-function is used",
    ),
    "plugin enabled, unused": (
        lambda c: c["plugins"].append("response-rewrite"),
        "response-rewrite is enabled",
    ),
    "unknown key": (
        lambda c: c["nginx_config"]["http"].update({"client_max_body": 1}),
        "client_max_body",
    ),
    "body cap": (
        lambda c: c["nginx_config"]["http"].update({"client_max_body_size": 0}),
        "client_max_body_size",
    ),
    "env not passed": (
        lambda c: c["nginx_config"]["envs"].remove("APISIX_REDIS_PASSWORD"),
        "APISIX_REDIS_PASSWORD",
    ),
    "escape": (
        lambda c: c["nginx_config"]["http"].update({"access_log_format_escape": "default"}),
        "json",
    ),
    "logs the key": (
        lambda c: c["nginx_config"]["http"].update(
            {"access_log_format": '{"k":"$http_x_api_key","request_id":"$http_x_request_id"}'}
        ),
        "http_x_api_key",
    ),
    "logs the principal": (
        lambda c: c["nginx_config"]["http"].update(
            {"access_log_format": '{"p":"$http_x_audit_principal","id":"$http_x_request_id"}'}
        ),
        "principal",
    ),
    "not JSON": (
        lambda c: c["nginx_config"]["http"].update(
            {"access_log_format": '{"request_id":"$http_x_request_id",}'}
        ),
        "not JSON",
    ),
    "unquoted string": (
        lambda c: c["nginx_config"]["http"].update(
            {"access_log_format": '{"request_id":"$http_x_request_id","u":$upstream_status}'}
        ),
        "upstream_status",
    ),
}


@pytest.mark.parametrize("name", CONFIG_MUTATIONS)
def test_config_mutation(config: Doc, standalone: Doc, name: str) -> None:
    mutate, expected = CONFIG_MUTATIONS[name]
    broken = copy.deepcopy(config)
    mutate(broken)
    problems = config_problems(broken, standalone)
    assert any(expected in problem for problem in problems), problems


def test_variable_not_passed_to_workers_mutation(config: Doc, standalone: Doc) -> None:
    doc = copy.deepcopy(standalone)
    _set("limit-count.redis_username", "${{APISIX_REDIS_USERNAME}}")(doc)
    problems = config_problems(config, doc)
    assert any("APISIX_REDIS_USERNAME" in p and "fails the load" in p for p in problems), problems


HELM_MUTATIONS: dict[str, tuple[Callable[[Doc], Any], str]] = {
    "replicas": (lambda v: v.update({"replicaCount": 1}), "replicaCount"),
    "etcd replicas": (lambda v: v["etcd"].update({"replicaCount": 1}), "etcd.replicaCount"),
    "old dashboard": (lambda v: v.update({"dashboard": {"enabled": True}}), "dashboard"),
    "no ui": (lambda v: v["apisix"]["admin"].update({"enable_admin_ui": False}), "no dashboard"),
    "chart typo": (lambda v: v["apisix"]["admin"].update({"enableAdminUI": True}), "enableAdminUI"),
    "default admin key": (
        lambda v: v["apisix"]["admin"]["credentials"].update({"admin": "edd1"}),
        "admin keys",
    ),
    "no scrape": (
        lambda v: v["metrics"]["serviceMonitor"].update({"enabled": False}),
        "ServiceMonitor",
    ),
    "plugins drift": (lambda v: v["apisix"]["plugins"].remove("mocking"), "plugins differ"),
    "log drift": (
        lambda v: v["apisix"]["nginx"]["logs"].update({"accessLogFormat": "$remote_addr"}),
        "log format",
    ),
    "release not run live": (lambda v: v["image"].update({"tag": "3.17.0-ubuntu"}), "run live"),
    "too old": (lambda v: v["image"].update({"tag": "3.15.0-debian"}), "run live"),
    "no flavour": (lambda v: v["image"].update({"tag": "3.18.0"}), "<version>-<flavour>"),
    "floating tag": (lambda v: v["image"].update({"tag": "latest"}), "<version>-<flavour>"),
}


@pytest.mark.parametrize("name", HELM_MUTATIONS)
def test_helm_mutation(helm_values: Doc, config: Doc, name: str) -> None:
    mutate, expected = HELM_MUTATIONS[name]
    broken = copy.deepcopy(helm_values)
    mutate(broken)
    problems = helm_problems(broken, config)
    assert any(expected in problem for problem in problems), problems


def test_etcd_parity_mutation(standalone: Doc, sync: ModuleType) -> None:
    env = {"APISIX_REDIS_PASSWORD": "pw"}

    def resolve(value: Any) -> Any:
        return sync.resolve_env(value, env)

    requests = sync.admin_requests(copy.deepcopy(standalone), env)
    assert any("lacks" in p for p in etcd_parity_problems(standalone, requests[1:], resolve))
    changed = copy.deepcopy(requests)
    changed[-1].body["uri"] = "/other"
    assert any("differs" in p for p in etcd_parity_problems(standalone, changed, resolve))
    assert any("before" in p for p in etcd_parity_problems(standalone, requests[::-1], resolve))


def test_knative_mutation(standalone: Doc, tmp_path: Path) -> None:
    def service(name: str, namespace: str | None) -> str:
        meta = {"name": name} | ({"namespace": namespace} if namespace else {})
        return yaml.safe_dump(
            {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": meta}
        )

    names = sorted({AUTHORIZE_SERVICE, *ingest_services().values()})
    base = tmp_path / "base"
    base.mkdir()
    (base / "services.yaml").write_text("---\n".join(service(n, None) for n in names))
    (base / "kustomization.yaml").write_text(
        f"namespace: {NAMESPACE}\nresources: [services.yaml]\n"
    )
    services, _ = knative_services(tmp_path)
    assert knative_problems(services, standalone) == []

    (base / "services.yaml").write_text("---\n".join(service(n, None) for n in names[1:]))
    assert any(names[0] in p for p in knative_problems(knative_services(tmp_path)[0], standalone))

    (base / "kustomization.yaml").write_text("resources: [services.yaml]\n")
    (base / "services.yaml").write_text("---\n".join(service(n, "default") for n in names))
    assert len(knative_problems(knative_services(tmp_path)[0], standalone)) == len(names)


def test_a_client_ip_header_not_overwritten_by_the_gateway_is_caught(standalone: Doc) -> None:
    broken = copy.deepcopy(standalone)
    for route in objects(broken, "routes"):
        plugins = route.get("plugins") or {}
        if "proxy-rewrite" in plugins:
            plugins["proxy-rewrite"]["headers"].pop("set", None)
    assert any(CLIENT_IP_HEADER in p for p in header_hygiene_problems(broken))
    assert not any(CLIENT_IP_HEADER in p for p in header_hygiene_problems(standalone))


# APISIX's default for an upstream's `keepalive_pool.idle_timeout` (apisix/schema_def.lua).
APISIX_POOL_IDLE_DEFAULT_S = 60


def test_the_functions_outidle_the_gateways_pool(standalone: Doc) -> None:
    """The function must never close a pooled connection first: APISIX would answer 502."""
    keepalive = setting_default("http_keepalive_seconds")
    for upstream in standalone["upstreams"]:
        pool = upstream.get("keepalive_pool") or {}
        idle = pool.get("idle_timeout", APISIX_POOL_IDLE_DEFAULT_S)
        assert idle < keepalive, (
            f"upstream {upstream['id']} keeps idle connections {idle}s, the functions only "
            f"{keepalive}s (HTTP_KEEPALIVE_SECONDS)"
        )
