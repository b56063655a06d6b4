"""Which metric names exist, and which ones a PromQL expression uses (for the dashboard and
alert tests).

Ours come from prometheus_client's registry once `audit_ingest.metrics` is imported, with the
series names each type exposes (`_total` for counters; `_bucket`, `_count`, `_sum` for
histograms). APISIX's are the documented ones of its `prometheus` plugin.
"""

from __future__ import annotations

import re

from prometheus_client import REGISTRY

import audit_ingest.metrics  # noqa: F401 - registers the families
from audit_ingest.sealer import metrics as sealer_metrics  # noqa: F401 - the sealer's

# APISIX's prometheus plugin (APISIX 3.x; apisix/helm/values.yaml deploys 3.17), from
#   https://github.com/apache/apisix/blob/master/docs/en/latest/plugins/prometheus.md
#   ("Available metrics", and the sample output there), and the definitions in
#   https://github.com/apache/apisix/blob/master/apisix/plugins/prometheus/exporter.lua
#   (`http_init`: prefix `apisix_`, the default `metric_prefix`).
# Labels: http_status{code, route, matched_uri, matched_host, service, consumer, node};
# http_latency{type=request|upstream|apisix, route, service, consumer, node} in milliseconds;
# bandwidth{type=ingress|egress, route, service, consumer, node} in bytes.
APISIX_FAMILIES: dict[str, str] = {
    "apisix_http_status": "counter",
    "apisix_http_latency": "histogram",
    "apisix_bandwidth": "counter",
    "apisix_http_requests_total": "gauge",
    "apisix_nginx_http_current_connections": "gauge",
    "apisix_nginx_metric_errors_total": "counter",
    "apisix_etcd_reachable": "gauge",
    "apisix_etcd_modify_indexes": "gauge",
    "apisix_node_info": "gauge",
    "apisix_shared_dict_capacity_bytes": "gauge",
    "apisix_shared_dict_free_space_bytes": "gauge",
    "apisix_batch_process_entries": "gauge",
}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


def our_series() -> dict[str, str]:
    """Every series name our /metrics can expose -> its family (from the default registry)."""
    names: dict[str, str] = {}
    for family in REGISTRY.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.name
        for sample in family.samples:
            names[sample.name] = family.name
    return names


def our_families() -> set[str]:
    """The audit_ingest_* families defined in audit_ingest.metrics."""
    return {family.name for family in REGISTRY.collect() if family.name.startswith("audit_ingest_")}


def apisix_series() -> dict[str, str]:
    """APISIX's series names (the plugin's counters carry no `_total` suffix) -> family."""
    names: dict[str, str] = {}
    for family, kind in APISIX_FAMILIES.items():
        suffixes = ("_bucket", "_count", "_sum") if kind == "histogram" else ("",)
        for suffix in suffixes:
            names[family + suffix] = family
    return names


_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_VARIABLES = re.compile(r"\$\{?\w+\}?")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+", re.IGNORECASE)
_IDENTIFIER = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


def metric_names(expression: str) -> set[str]:
    """The metric names an expression selects (not functions, keywords or label names).

    Also names given as `{__name__="..."}`. Grafana variables (`$__rate_interval`) are ignored.
    """
    names = set(re.findall(r'__name__\s*=\s*"([^"]+)"', expression))
    text = _STRINGS.sub('""', expression)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _VARIABLES.sub(" ", text)
    for match in _IDENTIFIER.finditer(text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in _KEYWORDS or re.fullmatch(r"\d.*", word):
            continue
        names.add(word)
    return names
