"""The gateway configuration in apisix/ against APISIX's own schemas and against this code.

APISIX itself cannot run here (it needs OpenResty), and no registry offers a validator for its
configuration, so the checks are pure functions over the YAML documents, each returning the
problems it finds:

- every plugin attribute is one APISIX declares for that plugin, with the declared type, enum
  and bounds: the JSON schemas below are transcribed from APISIX's plugin sources (repository,
  path and commit next to each) and validated with `jsonschema`. The one addition is
  `additionalProperties: false`: APISIX itself silently ignores an unknown (misspelled)
  attribute and runs the plugin with its default, which is exactly what this catches;
- header names, paths, body limits, the rate-limit window and the service names are the ones
  the code uses (imported from `audit_ingest`, not repeated here);
- the standalone file ends with `#END`; the etcd-backed objects (loaded by
  apisix/helm/sync_routes.py) are the standalone ones; the Helm values use keys the chart has;
- the Knative Services the upstreams name exist in knative/, when it has any yet.

The `test_*_mutation` tests run every check on broken copies, to show each one can fail.
"""

from __future__ import annotations

import copy
import importlib.util
import json
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
from audit_ingest.domain.ratelimit import WINDOW_SECONDS, RateDecision, rate_headers
from audit_ingest.errors import KeyStoreUnavailable, Unauthenticated
from audit_ingest.http.edge import request_id_of
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
MIN_APISIX = "3.16.0"  # limit-count `count` from a variable (APISIX 3.16 release notes)


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


# --------------------------------------------------------------------------------------------
# APISIX's schemas, transcribed from its sources (Lua tables -> JSON Schema, same keywords).
# --------------------------------------------------------------------------------------------

STRINGS = {"type": "array", "items": {"type": "string"}}
HEADER_NAME = {"type": "string", "pattern": "^[^:]+$"}
STRING_OR_NUMBER = {"oneOf": [{"type": "string"}, {"type": "number"}]}
INT_OR_STRING = {"oneOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "string"}]}


@dataclass(frozen=True)
class PluginSchema:
    source: str  # where the properties were read
    priority: int  # the plugin's `priority` (higher runs first within a phase)
    schema: dict[str, Any]


PLUGIN_SCHEMAS: dict[str, PluginSchema] = {
    "forward-auth": PluginSchema(
        "apache/apisix apisix/plugins/forward-auth.lua @ 000fce276dc34a1070e6c3933c6d080199bbad31"
        " (runs in rewrite; on a 2xx answer sets every upstream_headers entry, removing it when"
        " the answer lacks it)",
        2002,
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
                "consumer_header": {"type": "string", "minLength": 1},
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
        "apache/apisix apisix/plugins/limit-count/init.lua"
        " @ 012624ad7a51da4170b6fc54c29e7fed3b1e4f8c"
        " (the 3.16 schema: count/time_window integer or variable string, rules) with the redis"
        " properties of apisix/utils/redis-schema.lua @ 0c97dd97ed5207afdf2b626672b7d0d7b5fd93bd"
        " minus sync_interval (3.18's delayed sync); priority from"
        " apisix/plugins/limit-count.lua @ 019ef37ab1950af7511946efb5ad1d065f837038;"
        " runs in access",
        1002,
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
            "additionalProperties": False,
        },
    ),
    "client-control": PluginSchema(
        "apache/apisix apisix/plugins/client-control.lua @ 193b7987983b1574ea3de25555dce7f5611b29e0"
        " (runs in rewrite: 413 on a larger Content-Length, then caps the body as it is read)",
        22000,
        {
            "type": "object",
            "properties": {
                "category": {"type": "string"},
                "max_body_size": {"type": "integer", "minimum": 0},
            },
            "additionalProperties": False,
        },
    ),
    "request-id": PluginSchema(
        "apache/apisix apisix/plugins/request-id.lua @ 038da8c7a0a32e8b6d063242b0cfdacb27c13eb5"
        " (rewrite: keeps the client's id or sets one; header_filter: adds it to the answer"
        " unless the upstream sent one)",
        12015,
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
        "apache/apisix apisix/plugins/prometheus.lua @ d66f1579718f3c866331c929205af54aac380d79"
        " (no attributes; later versions add prefer_name, unused here)",
        500,
        {"type": "object", "additionalProperties": False},
    ),
    "proxy-rewrite": PluginSchema(
        "APISIX 3.x proxy-rewrite schema (headers as {add, set, remove}, documented at"
        " https://apisix.apache.org/docs/apisix/3.1/plugins/proxy-rewrite/); priority 1008 from"
        " apache/apisix apisix/plugins/proxy-rewrite.lua"
        " @ 9ca6ea0649a377c0bedca27130fafc37835a8d30;"
        " runs in rewrite",
        1008,
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
    "response-rewrite": PluginSchema(
        "apache/apisix apisix/plugins/response-rewrite.lua"
        " @ 0390b8acd10b113395aa8981fe112c355daf163a"
        " (header_filter: applies when `vars` match; header values resolve $variables)",
        899,
        {
            "type": "object",
            "properties": {
                "headers": {
                    "anyOf": [
                        {
                            "type": "object",
                            "minProperties": 1,
                            "patternProperties": {"^[^:]+$": STRING_OR_NUMBER},
                        },
                        {
                            "properties": {
                                "add": {
                                    "type": "array",
                                    "minItems": 1,
                                    "items": {"type": "string", "pattern": "^[^:]+:[^:]+[^/]$"},
                                },
                                "set": {
                                    "type": "object",
                                    "minProperties": 1,
                                    "patternProperties": {"^[^:]+$": STRING_OR_NUMBER},
                                },
                                "remove": {"type": "array", "minItems": 1, "items": HEADER_NAME},
                            }
                        },
                    ]
                },
                "body": {"type": "string"},
                "body_base64": {"type": "boolean"},
                "status_code": {"type": "integer", "minimum": 200, "maximum": 598},
                "vars": {"type": "array"},
                "filters": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["regex", "replace"],
                        "properties": {
                            "regex": {"type": "string", "minLength": 1},
                            "scope": {"type": "string", "enum": ["once", "global"]},
                            "replace": {"type": "string"},
                            "options": {"type": "string"},
                        },
                    },
                },
            },
            "dependencies": {
                "body": {"not": {"required": ["filters"]}},
                "filters": {"not": {"required": ["body"]}},
            },
            "additionalProperties": False,
        },
    ),
    "mocking": PluginSchema(
        "apache/apisix apisix/plugins/mocking.lua @ 08a0c550ec11bd8446c0b9bee31de0f5d00d5795"
        " (access phase: answers without an upstream)",
        9900,
        {
            "type": "object",
            "properties": {
                "delay": {"type": "integer"},
                "response_status": {"type": "integer", "minimum": 1},
                "content_type": {"type": "string"},
                "response_example": {"type": "string"},
                "response_schema": {"type": "object"},
                "with_mock_header": {"type": "boolean"},
            },
            "anyOf": [{"required": ["response_example"]}, {"required": ["response_schema"]}],
            "additionalProperties": False,
        },
    ),
}

# limit-count's quota headers (metadata_defaults in limit-count/init.lua @ 012624ad...).
LIMIT_COUNT_QUOTA_HEADERS = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}

# Core objects: apache/apisix apisix/schema_def.lua @ 01a5d170b376b2612d0aa4f4dcad8f30cfd739fe
# (route, upstream and global_rule have additionalProperties = false there too).
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
        "enum": ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"],
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
        "timeout": TIMEOUT,
        "tls": {"type": "object"},
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
        "uris": {"type": "array", "minItems": 1, "items": {"type": "string"}},
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
        "service_protocol": {"enum": ["grpc", "http"]},
        "enable_websocket": {"type": "boolean"},
        "status": {"type": "integer", "enum": [1, 0]},
    },
    "anyOf": [
        {"required": ["plugins", "uri"]},
        {"required": ["upstream", "uri"]},
        {"required": ["upstream_id", "uri"]},
        {"required": ["service_id", "uri"]},
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
    "required": ["plugins"],
    "additionalProperties": False,
}
OBJECT_SCHEMAS = {
    "upstreams": UPSTREAM_SCHEMA,
    "routes": ROUTE_SCHEMA,
    "global_rules": GLOBAL_RULE_SCHEMA,
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


def objects(doc: Doc, kind: str) -> list[Doc]:
    items = doc.get(kind) or []
    return [item for item in items if isinstance(item, dict)]


def by_id(doc: Doc, kind: str) -> dict[str, Doc]:
    return {str(item.get("id")): item for item in objects(doc, kind)}


def plugin_confs(doc: Doc) -> Iterator[tuple[str, str, Any]]:
    """(where, plugin name, its conf) for every plugin of every route and global rule."""
    for kind in ("routes", "global_rules"):
        for item in objects(doc, kind):
            for name, conf in (item.get("plugins") or {}).items():
                yield f"{kind}[{item.get('id')}]", name, conf


def route_for(doc: Doc, method: str, uri: str) -> Doc | None:
    for route in objects(doc, "routes"):
        if route.get("uri") == uri and method in (route.get("methods") or []):
            return route
    return None


def ingest_routes() -> dict[Endpoint, str]:
    """Each ingest endpoint and the Knative Service behind it, cross-checked with functions/."""
    assert set(INGEST_SERVICES) == set(Endpoint), "an endpoint the gateway does not route"
    for endpoint, service in INGEST_SERVICES.items():
        main = FUNCTIONS_DIR / service.replace("-", "_") / "main.py"
        source = main.read_text(encoding="utf-8")
        assert re.search(rf"\bEndpoint\.{endpoint.name}\b", source), f"{main} serves no {endpoint}"
    return INGEST_SERVICES


def schema_problems(schema: dict[str, Any], value: Any, where: str) -> Problems:
    problems = []
    for error in Draft7Validator(schema).iter_errors(value):
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.path)
        problems.append(f"{where}{path}: {error.message}")
    return problems


# --------------------------------------------------------------------------------------------
# The checks. Each returns the problems it finds; [] means the documents agree.
# --------------------------------------------------------------------------------------------


def end_marker_problems(text: str) -> Problems:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[-1] != "#END":
        return ["apisix.yaml does not end with #END: standalone APISIX would not load it"]
    return []


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
        target = route.get("upstream_id")
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
    """Exactly the code's endpoints (POST, to the function serving each) and GET /health."""
    problems = []
    expected_uris = {endpoint.value for endpoint in Endpoint} | {"/health"}
    uris = [route.get("uri") for route in objects(doc, "routes")]
    if sorted(uris) != sorted(expected_uris):
        problems.append(f"route uris {sorted(map(str, uris))} != {sorted(expected_uris)}")
    upstreams = by_id(doc, "upstreams")
    for endpoint, service in ingest_routes().items():
        route = route_for(doc, "POST", endpoint.value)
        if route is None:
            problems.append(f"no POST route for {endpoint.value}")
            continue
        if route.get("methods") != ["POST"]:
            problems.append(f"{endpoint.value}: methods {route.get('methods')} != ['POST']")
        upstream = upstreams.get(str(route.get("upstream_id")), {})
        nodes = list((upstream.get("nodes") or {}).keys())
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
    for endpoint in Endpoint:
        route = route_for(doc, "POST", endpoint.value) or {}
        conf = (route.get("plugins") or {}).get("forward-auth")
        where = f"{endpoint.value} forward-auth"
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


def limit_count_problems(doc: Doc) -> Problems:
    """The per-key quota: count and key from authorize's headers, shared Redis window."""
    problems = []
    confs = []
    for endpoint in Endpoint:
        route = route_for(doc, "POST", endpoint.value) or {}
        conf = (route.get("plugins") or {}).get("limit-count")
        where = f"{endpoint.value} limit-count"
        if not isinstance(conf, dict):
            problems.append(f"{where}: missing")
            continue
        confs.append(conf)
        expected = {
            "count": "$" + nginx_var(RATE_LIMIT_HEADER),
            "key": nginx_var(KEY_ID_HEADER),
            "key_type": "var",
            "time_window": WINDOW_SECONDS,
            "policy": "redis",
            "rejected_code": 429,
            "allow_degradation": True,
            "show_limit_quota_header": True,
            "redis_timeout": round(setting_default("redis_timeout_seconds") * 1000),
        }
        for name, value in expected.items():
            if conf.get(name) != value:
                problems.append(f"{where}: {name} is {conf.get(name)!r}, expected {value!r}")
        if not conf.get("group"):
            problems.append(f"{where}: no group: each route would count a key separately")
        password = str(conf.get("redis_password", ""))
        if not re.fullmatch(r"\$\{\{\s*[A-Z0-9_]+\s*\}\}", password):
            problems.append(f"{where}: redis_password must be a ${{{{VAR}}}} without default")
    if len(confs) == len(Endpoint) and any(conf != confs[0] for conf in confs):
        problems.append("limit-count differs between routes of one group (APISIX refuses it)")
    if set(rate_headers(RateDecision(True, 1, 1, 1))) != LIMIT_COUNT_QUOTA_HEADERS:
        problems.append("the code's X-RateLimit-* names differ from limit-count's")
    return problems


def body_limit_problems(doc: Doc) -> Problems:
    limits = {
        Endpoint.SINGLE: setting_default("max_event_bytes"),
        Endpoint.BATCH: setting_default("max_batch_body_bytes"),
    }
    problems = []
    for endpoint, limit in limits.items():
        route = route_for(doc, "POST", endpoint.value) or {}
        size = ((route.get("plugins") or {}).get("client-control") or {}).get("max_body_size")
        if size != limit:
            problems.append(f"{endpoint.value}: client-control max_body_size {size} != {limit}")
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
        for field, value in (conf or {}).items() if isinstance(conf, dict) else []:
            text = json.dumps(value).lower()
            if (name, field) not in allowed and any(s in text for s in spellings):
                problems.append(f"{where}.{name}.{field} touches an X-Audit-* header")
    for route in objects(doc, "routes"):
        if route.get("vars"):
            problems.append(f"routes[{route.get('id')}]: vars would read headers before auth")
    for endpoint in Endpoint:
        plugins = (route_for(doc, "POST", endpoint.value) or {}).get("plugins") or {}
        removed = ((plugins.get("proxy-rewrite") or {}).get("headers") or {}).get("remove", [])
        if API_KEY_HEADER not in removed:
            problems.append(f"{endpoint.value}: {API_KEY_HEADER} is not removed before upstream")
        rewritten = ((plugins.get("proxy-rewrite") or {}).get("headers") or {}).get("set", {})
        if rewritten.get(CLIENT_IP_HEADER) != "$remote_addr":
            # The functions read the client address from this header (CLIENT_IP_HEADER in
            # knative/); APISIX must overwrite whatever the client sent in it.
            problems.append(f"{endpoint.value}: {CLIENT_IP_HEADER} is not set from $remote_addr")
    order = PLUGIN_SCHEMAS
    if not order["proxy-rewrite"].priority < order["forward-auth"].priority:
        problems.append("proxy-rewrite would drop the key before forward-auth sends it")
    if not order["forward-auth"].priority > order["limit-count"].priority:
        problems.append("limit-count would run before forward-auth set its headers")
    return problems


def retry_after_problems(doc: Doc) -> Problems:
    """429 carries Retry-After (limit-count itself only sends X-RateLimit-Reset)."""
    problems = []
    for endpoint in Endpoint:
        plugins = (route_for(doc, "POST", endpoint.value) or {}).get("plugins") or {}
        conf = plugins.get("response-rewrite") or {}
        header_set = (conf.get("headers") or {}).get("set") or {}
        if conf.get("vars") != [["status", "==", 429]]:
            problems.append(f"{endpoint.value}: response-rewrite must apply to 429 only")
        if header_set.get("Retry-After") != "$sent_http_x_ratelimit_reset":
            problems.append(f"{endpoint.value}: 429 lacks Retry-After from X-RateLimit-Reset")
    return problems


def request_id_problems(doc: Doc) -> Problems:
    """Every answer carries the id the functions read and echo."""
    confs = [
        conf
        for rule in objects(doc, "global_rules")
        for name, conf in (rule.get("plugins") or {}).items()
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
    if not any(
        "prometheus" in (rule.get("plugins") or {}) for rule in objects(doc, "global_rules")
    ):
        problems.append("prometheus is not in a global rule")
    return problems


def health_problems(doc: Doc, health_schema: Doc) -> Problems:
    route = route_for(doc, "GET", "/health")
    if route is None:
        return ["no GET /health route"]
    conf = (route.get("plugins") or {}).get("mocking") or {}
    problems = []
    if (
        route.get("upstream_id")
        or route.get("upstream")
        or set(route.get("plugins", {})) != {"mocking"}
    ):
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
    header_hygiene_problems,
    retry_after_problems,
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


def env_references(value: Any) -> set[str]:
    """Environment variables a document's values name as ${{VAR}} (APISIX resolves values)."""
    if isinstance(value, dict):
        return set().union(*(env_references(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(env_references(item) for item in value))
    if isinstance(value, str):
        return set(re.findall(r"\$\{\{\s*([A-Za-z0-9_]+)", value))
    return set()


def config_problems(config: Doc, doc: Doc) -> Problems:
    """config.yaml: a yaml-fed data plane with exactly the plugins the routes use."""
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
    referenced = env_references(doc)
    missing = referenced - set(nginx.get("envs") or [])
    problems += [
        f"nginx_config.envs lacks {name} (workers could not read it)" for name in sorted(missing)
    ]
    return problems


def helm_key_paths(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict) and value and f"{prefix}.*" not in HELM_KEYS:
        paths: set[str] = set()
        for key, item in value.items():
            paths |= helm_key_paths(item, f"{prefix}.{key}" if prefix else str(key))
        return paths
    return {f"{prefix}.*" if f"{prefix}.*" in HELM_KEYS else prefix}


def helm_problems(values: Doc, config: Doc) -> Problems:
    """Helm: 3 gateways, 3 etcd members, dashboard, scraping; same plugins and logs."""
    problems = [
        f"values.yaml: the chart has no key {p}" for p in sorted(helm_key_paths(values) - HELM_KEYS)
    ]
    apisix = values.get("apisix") or {}
    admin = apisix.get("admin") or {}
    logs = (apisix.get("nginx") or {}).get("logs") or {}
    http = (config.get("nginx_config") or {}).get("http") or {}
    tag = str((values.get("image") or {}).get("tag", ""))
    version = tuple(int(part) for part in re.findall(r"\d+", tag)[:3])
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
        (
            version >= tuple(int(p) for p in MIN_APISIX.split(".")),
            f"image {tag!r} < {MIN_APISIX}",
        ),
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
    named = {AUTHORIZE_SERVICE} | set(ingest_routes().values())
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


def test_every_object_and_plugin_matches_apisix_schemas(standalone: Doc) -> None:
    assert schema_conformance_problems(standalone) == []


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda check: check.__name__)
def test_gateway_agrees_with_the_code(standalone: Doc, check: Callable[[Doc], Problems]) -> None:
    assert check(standalone) == []


def test_health_is_the_contracts_body(standalone: Doc) -> None:
    assert health_problems(standalone, openapi_health_schema()) == []


def test_config_yaml(config: Doc, standalone: Doc) -> None:
    assert config_problems(config, standalone) == []


def test_helm_values(helm_values: Doc, config: Doc) -> None:
    assert helm_problems(helm_values, config) == []


def test_etcd_mode_loads_the_standalone_objects(standalone: Doc, sync: ModuleType) -> None:
    env = {"APISIX_REDIS_PASSWORD": "pw-from-env"}
    requests = sync.admin_requests(sync.read_standalone(STANDALONE_FILE), env)
    assert etcd_parity_problems(standalone, requests, lambda v: sync.resolve_env(v, env)) == []
    route = next(r for r in requests if r.path == "/apisix/admin/routes/ingest-batch")
    limit = route.body["plugins"]["limit-count"]
    assert limit["redis_password"] == "pw-from-env"
    assert limit["redis_host"] == cluster_host("redis")  # the default after :=


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
    broken.write_text(STANDALONE_FILE.read_text(encoding="utf-8").replace("#END", ""))
    with pytest.raises(sync.SyncError, match="#END"):
        sync.read_standalone(broken)


def test_knative_services_exist_for_every_upstream(standalone: Doc) -> None:
    services, unreadable = knative_services(KNATIVE_DIR)
    if not services:
        pytest.skip(
            "knative/ has no Knative Service (serving.knative.dev) yet"
            + (f"; unparsable: {unreadable}" if unreadable else "")
            + ": the names are checked once the Knative issue adds them"
        )
    assert knative_problems(services, standalone) == []


def test_request_id_header_is_the_one_the_code_reads_and_echoes() -> None:
    scope = {"type": "http", "headers": [(REQUEST_ID_HEADER.lower().encode(), b"abc-1")]}
    assert request_id_of(Request(scope)) == "abc-1"
    response = problem_response(
        Unauthenticated("x"), instance="/", headers={REQUEST_ID_HEADER: "r"}
    )
    assert response.headers[REQUEST_ID_HEADER] == "r"


def test_plugin_sources_are_recorded() -> None:
    for name, known in PLUGIN_SCHEMAS.items():
        assert re.search(r"@ [0-9a-f]{40}", known.source), name
        assert known.priority > 0, name


def openapi_health_schema() -> Doc:
    spec = load_yaml(OPENAPI_FILE)
    schema: Doc = spec["components"]["schemas"]["Health"]
    return schema


# --------------------------------------------------------------------------------------------
# Mutations: each check fails on a broken copy.
# --------------------------------------------------------------------------------------------


def _route(doc: Doc, uri: str) -> Doc:
    return next(route for route in doc["routes"] if route["uri"] == uri)


def _plugins(doc: Doc, uri: str = Endpoint.SINGLE.value) -> Doc:
    plugins: Doc = _route(doc, uri)["plugins"]
    return plugins


def _set(path: str, value: Any) -> Callable[[Doc], None]:
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
    "unknown plugin": (_set("limit-counter", {"count": 1, "time_window": 1}), "limit-counter"),
    "bad proxy-rewrite headers": (
        _set("proxy-rewrite.headers", {"delete": ["X-API-Key"]}),
        "headers",
    ),
    "route typo": (lambda d: _route(d, "/health").update({"method": ["GET"]}), "method"),
    "upstream typo": (_upstream("passhost", "rewrite"), "passhost"),
    "dangling upstream_id": (
        lambda d: _route(d, "/v1/events").update({"upstream_id": "nope"}),
        "nope",
    ),
    "duplicate id": (lambda d: d["routes"][1].update({"id": d["routes"][0]["id"]}), "duplicate"),
}


@pytest.mark.parametrize("name", SCHEMA_MUTATIONS)
def test_schema_check_mutation(standalone: Doc, name: str) -> None:
    mutate, expected = SCHEMA_MUTATIONS[name]
    doc = copy.deepcopy(standalone)
    mutate(doc)
    problems = schema_conformance_problems(doc)
    assert any(expected in problem for problem in problems), problems


def _swap_upstreams(doc: Doc) -> None:
    single, batch = _route(doc, Endpoint.SINGLE.value), _route(doc, Endpoint.BATCH.value)
    single["upstream_id"], batch["upstream_id"] = batch["upstream_id"], single["upstream_id"]


def _remove(plugin: str, uri: str = Endpoint.BATCH.value) -> Callable[[Doc], None]:
    return lambda doc: _plugins(doc, uri).pop(plugin)


CONTRACT_MUTATIONS: dict[str, tuple[Callable[[Doc], Any], Callable[[Doc], Problems], str]] = {
    "wrong path": (
        lambda d: _route(d, "/v1/events/batch").update({"uri": "/v1/batch"}),
        route_table_problems,
        "route uris",
    ),
    "functions swapped": (_swap_upstreams, route_table_problems, "do not name"),
    "extra method": (
        lambda d: _route(d, "/v1/events").update({"methods": ["POST", "PUT"]}),
        route_table_problems,
        "methods",
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
    "no group": (lambda d: _plugins(d)["limit-count"].pop("group"), limit_count_problems, "group"),
    "event body limit": (
        _set("client-control.max_body_size", 1048576),
        body_limit_problems,
        "/v1/events:",
    ),
    "batch body limit missing": (
        _remove("client-control"),
        body_limit_problems,
        "/v1/events/batch",
    ),
    "spoofable quota": (
        _set(
            "proxy-rewrite.headers",
            {"set": {RATE_LIMIT_HEADER: "100000"}, "remove": [API_KEY_HEADER]},
        ),
        header_hygiene_problems,
        "X-Audit",
    ),
    "route vars": (
        lambda d: _route(d, "/v1/events").update({"vars": [["http_x_audit_tenant_id", "==", "t"]]}),
        header_hygiene_problems,
        "vars",
    ),
    "key forwarded upstream": (_remove("proxy-rewrite"), header_hygiene_problems, API_KEY_HEADER),
    "no Retry-After": (_remove("response-rewrite"), retry_after_problems, "Retry-After"),
    "rewrite every status": (
        lambda d: _plugins(d)["response-rewrite"].pop("vars"),
        retry_after_problems,
        "429 only",
    ),
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


def test_plugin_order_mutation(monkeypatch: pytest.MonkeyPatch, standalone: Doc) -> None:
    early = PluginSchema("test", 3000, PLUGIN_SCHEMAS["proxy-rewrite"].schema)
    monkeypatch.setitem(PLUGIN_SCHEMAS, "proxy-rewrite", early)
    assert any("before forward-auth" in p for p in header_hygiene_problems(standalone))


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


def test_health_mutation(standalone: Doc) -> None:
    schema = openapi_health_schema()
    doc = copy.deepcopy(standalone)
    _plugins(doc, "/health")["mocking"]["response_example"] = '{"status":"up"}'
    assert any("Health" in p for p in health_problems(doc, schema))
    doc = copy.deepcopy(standalone)
    _route(doc, "/health")["upstream_id"] = "ingest-event"
    assert any("gateway alone" in p for p in health_problems(doc, schema))


CONFIG_MUTATIONS: dict[str, tuple[Callable[[Doc], Any], str]] = {
    "role": (lambda c: c["deployment"].update({"role": "traditional"}), "data_plane"),
    "provider": (
        lambda c: c["deployment"]["role_data_plane"].update({"config_provider": "etcd"}),
        "yaml",
    ),
    "plugin not enabled": (lambda c: c["plugins"].remove("forward-auth"), "forward-auth is used"),
    "plugin enabled, unused": (lambda c: c["plugins"].append("key-auth"), "key-auth is enabled"),
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
    "too old": (lambda v: v["image"].update({"tag": "3.15.0-debian"}), "3.16.0"),
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

    names = sorted({AUTHORIZE_SERVICE, *ingest_routes().values()})
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
