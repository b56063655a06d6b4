"""ops/prometheus/alerts.yaml: valid alerting rules over metrics that exist.

Prometheus's own `promtool` checks the same file and runs its unit tests
(ops/prometheus/alerts_test.yaml) in `make check-deploy` (tools/check_deploy.py;
tests/deploy/test_check_deploy.py breaks copies of them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.prometheus_names import apisix_series, metric_names, our_series

RULES = Path(__file__).resolve().parents[2] / "ops" / "prometheus" / "alerts.yaml"
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")

# The alerts the operations guide promises, by what they watch.
EXPECTED = {
    "AuditIngestHigh5xxRatio",
    "AuditIngestSinkUnavailable",
    "AuditIngestLatencyP99High",
    "AuditIngestDeadLettersProduceFailed",
    "AuditIngestDeadLetterRateHigh",
    "AuditIngestRateLimitFailOpen",
    "AuditIngestKeyStoreUnavailable",
    "AuditIngestNoEventsAccepted",
}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_file_is_a_rule_file() -> None:
    document = yaml.safe_load(RULES.read_text())
    assert set(document) == {"groups"}
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit", "labels"}
        assert group["name"] and group["rules"]
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    assert set(names) >= EXPECTED


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_each_rule(rule: dict[str, Any]) -> None:
    assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
    if "for" in rule:
        assert DURATION.match(rule["for"]), rule["for"]
    assert rule["labels"]["severity"] in {"page", "ticket", "info"}
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    # The runbook link points at a heading of docs/operations.md.
    path, _, anchor = annotations["runbook"].partition("#")
    assert path == "docs/operations.md" and anchor in anchors(OPERATIONS.read_text())
    known = {**our_series(), **apisix_series()}
    used = metric_names(rule["expr"])
    assert used and used <= set(known), sorted(used - set(known))
    assert rule["expr"].count("(") == rule["expr"].count(")")


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    found = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return found
