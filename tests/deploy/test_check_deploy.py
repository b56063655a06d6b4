"""`make check-deploy` passes on the repository's manifests and fails on broken copies of them.

Each case copies knative/, apisix/ and ops/prometheus/ to a temporary folder, breaks one thing,
and runs the real check (kustomize, knative-validate, promtool) on the copy.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tools.check_deploy import ensure_kustomize, ensure_promtool, ensure_validator

from tests.stack import REPO

CHECK = REPO / "tools" / "check_deploy.py"


@pytest.fixture(scope="session", autouse=True)
def _tools() -> None:
    ensure_kustomize()
    ensure_validator()
    ensure_promtool()


def run_check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(CHECK),
            "--knative",
            str(root / "knative"),
            "--apisix",
            str(root / "apisix"),
            "--prometheus",
            str(root / "ops" / "prometheus"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "knative", tmp_path / "knative")
    if (REPO / "apisix").exists():
        shutil.copytree(REPO / "apisix", tmp_path / "apisix")
    shutil.copytree(REPO / "ops" / "prometheus", tmp_path / "ops" / "prometheus")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


SERVICES = Path("knative/base/functions/services")


def test_the_repository_manifests_pass() -> None:
    done = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "dev: knative-validate: ok" in done.stdout
    assert "prod: knative-validate: ok" in done.stdout
    assert "alerts.yaml: promtool check rules: ok" in done.stdout
    assert "alerts_test.yaml: promtool test rules: ok" in done.stdout


Breakage = Callable[[Path], None]

CASES: dict[str, tuple[Breakage, str]] = {
    "invalid autoscaling annotation": (
        lambda root: edit(
            root / SERVICES / "ingest-event.yaml",
            'autoscaling.knative.dev/min-scale: "0"',
            'autoscaling.knative.dev/min-scale: "-1"',
        ),
        "autoscaling.knative.dev/min-scale",
    ),
    "target utilization above 100 percent": (
        lambda root: edit(
            root / SERVICES / "ingest-batch.yaml",
            "autoscaling.knative.dev/class: kpa.autoscaling.knative.dev",
            "autoscaling.knative.dev/class: kpa.autoscaling.knative.dev\n"
            '        autoscaling.knative.dev/target-utilization-percentage: "250"',
        ),
        "target-utilization-percentage",
    ),
    "negative containerConcurrency": (
        lambda root: edit(
            root / SERVICES / "authorize.yaml",
            "containerConcurrency: 100",
            "containerConcurrency: -1",
        ),
        "containerConcurrency",
    ),
    "timeout above Knative's maximum": (
        lambda root: edit(
            root / SERVICES / "ingest-event.yaml", "timeoutSeconds: 30", "timeoutSeconds: 3600"
        ),
        "timeoutSeconds",
    ),
    "unknown field in a Knative Service": (
        lambda root: edit(
            root / SERVICES / "ingest-event.yaml",
            "containerConcurrency: 50",
            "containerConcurrency: 50\n      containerConcurency: 50",
        ),
        "containerConcurency",
    ),
    "Trigger without a subscriber": (
        lambda root: edit(
            root / "knative/tenants/demo/trigger.yaml",
            "  subscriber:\n"
            "    uri: http://ingest-eventing.audit-ingest.svc.cluster.local\n"
            "    audience: audit-ingest/ingest-eventing\n",
            "",
        ),
        "spec.subscriber",
    ),
    "Broker with an invalid delivery": (
        lambda root: edit(
            root / "knative/tenants/demo/broker.yaml", "backoffDelay: PT0.5S", "backoffDelay: 5s"
        ),
        "backoffDelay",
    ),
    "unknown field in a Job": (
        lambda root: edit(
            root / "knative/base/functions/migrate-job.yaml",
            "  backoffLimit: 4",
            "  backoffLimit: 4\n  restartPolicy: Never",
        ),
        'unknown field "spec.restartPolicy"',
    ),
    "wrong type in a ServiceAccount": (
        lambda root: edit(
            root / "knative/base/functions/serviceaccounts.yaml",
            "automountServiceAccountToken: false",
            "automountServiceAccountToken: nope",
        ),
        "automountServiceAccountToken",
    ),
    "misspelt kind": (
        lambda root: edit(
            root / "knative/base/functions/namespace.yaml", "kind: Namespace", "kind: Namespce"
        ),
        "Namespce",
    ),
    "kustomization referencing a missing file": (
        lambda root: (root / SERVICES / "authorize.yaml").unlink(),
        "authorize.yaml",
    ),
    "generated names not rewritten inside Knative Services": (
        lambda root: edit(
            root / "knative/base/functions/kustomization.yaml",
            "configurations:\n  - kustomizeconfig.yaml\n",
            "",
        ),
        "refers to ConfigMap/audit-ingest/audit-ingest-config",
    ),
    "a Secret reference nobody creates": (
        lambda root: (root / "knative/overlays/prod/external-objects.txt").unlink(),
        "refers to Secret/audit-ingest/audit-ingest-secrets",
    ),
    "an alert expression Prometheus cannot parse": (
        lambda root: edit(
            root / "ops/prometheus/alerts.yaml",
            'status=~"5.."}[5m]))',
            'status=~"5.."}[5m])',
        ),
        "promtool check rules",
    ),
    "an alert that no longer fires in its unit test": (
        # 4xx instead of 5xx: valid PromQL, but the broker outage no longer pages.
        lambda root: edit(
            root / "ops/prometheus/alerts.yaml",
            'endpoint=~"single|batch",status=~"5.."',
            'endpoint=~"single|batch",status=~"4.."',
        ),
        "alertname: AuditIngestHigh5xxRatio",
    ),
    "Topic without partitions": (
        lambda root: edit(
            root / "knative/base/topics/topics.yaml", "partitions: 12", "partitions: 0"
        ),
        "spec.partitions",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_broken_manifests_fail(copy: Path, case: str) -> None:
    assert run_check(copy).returncode == 0  # the copy passes before it is broken
    breakage, expected = CASES[case]
    breakage(copy)
    done = run_check(copy)
    assert done.returncode == 1, done.stdout
    assert "FAILED" in done.stderr
    assert expected in done.stderr, done.stderr


needs_apisix = pytest.mark.skipif(not (REPO / "apisix").exists(), reason="no apisix/ yet")


@needs_apisix
def test_apisix_yaml_must_be_well_formed(copy: Path) -> None:
    (copy / "apisix" / "broken.yaml").write_text("routes:\n  - uri: /x\n   bad: [\n")
    done = run_check(copy)
    assert done.returncode == 1
    assert "broken.yaml: not valid YAML" in done.stderr


@needs_apisix
def test_a_standalone_apisix_yaml_must_end_with_END(copy: Path) -> None:
    standalone = copy / "apisix" / "extra" / "apisix.yaml"
    standalone.parent.mkdir(parents=True)
    standalone.write_text("routes: []\n")
    done = run_check(copy)
    assert done.returncode == 1
    assert "must end with a #END line" in done.stderr
    standalone.write_text("routes: []\n#END\n")
    assert run_check(copy).returncode == 0
