"""The rendered overlays agree with the code: settings names, timeouts, probes, scaling, the
eventing path's audience and sender identity, and the topics' durability."""

from __future__ import annotations

import subprocess
from functools import cache
from typing import Any

import orjson
import pytest
import yaml
from pydantic import ValidationError
from tools.check_deploy import ensure_kustomize

from audit_ingest.cli import DLQ_RETENTION_MS, EVENTS_RETENTION_MS, SEALS_RETENTION_MS
from audit_ingest.settings import Settings
from tests.stack import REPO

OVERLAYS = ("dev", "prod")
# Read by the runtime, not by Settings: audit-ingest-serve (functions-framework's CLI options)
# and gunicorn.
RUNTIME_VARS = {"PORT", "WORKERS", "FUNCTION_TARGET", "FUNCTION_SOURCE"}
SCALING = "autoscaling.knative.dev/"


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    output = subprocess.run(
        [str(ensure_kustomize()), "build", str(REPO / "knative" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return tuple(doc for doc in yaml.safe_load_all(output) if doc)


def of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in rendered(overlay) if doc["kind"] == kind]


def services(overlay: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in of_kind(overlay, "Service")}


def config_maps(overlay: str) -> dict[str, dict[str, str]]:
    """ConfigMaps by their name without kustomize's hash suffix."""
    return {
        doc["metadata"]["name"].rsplit("-", 1)[0]: doc["data"]
        for doc in of_kind(overlay, "ConfigMap")
    }


def container_env(overlay: str, service: dict[str, Any]) -> dict[str, str | None]:
    """The environment a Service's container gets: ConfigMaps, then env (secrets as None)."""
    (container,) = service["spec"]["template"]["spec"]["containers"]
    maps = {doc["metadata"]["name"]: doc["data"] for doc in of_kind(overlay, "ConfigMap")}
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_four_services(overlay: str) -> None:
    assert set(services(overlay)) == {
        "ingest-event",
        "ingest-batch",
        "authorize",
        "ingest-eventing",
    }
    for service in services(overlay).values():
        assert service["metadata"]["namespace"] == "audit-ingest"
        labels = service["metadata"]["labels"]
        assert labels["networking.knative.dev/visibility"] == "cluster-local"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_is_a_setting(overlay: str) -> None:
    known = {name.upper() for name in Settings.model_fields} | RUNTIME_VARS
    for name, service in services(overlay).items():
        unknown = set(container_env(overlay, service)) - known
        assert not unknown, f"{name}: {unknown} are read by nothing"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_configuration_is_accepted_by_settings(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each Service's plain values (secrets stand-ins aside) are valid Settings."""
    for name, service in services(overlay).items():
        with monkeypatch.context() as env:
            for variable, value in container_env(overlay, service).items():
                env.setenv(variable, "s" * 32 if value is None else value)
            try:
                Settings()
            except ValidationError as exc:
                pytest.fail(f"{overlay}/{name}: {exc}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_modes_secrets_and_probes(overlay: str) -> None:
    expected_mode = {
        "ingest-event": "gateway",
        "ingest-batch": "gateway",
        "ingest-eventing": "eventing",
    }
    for name, service in services(overlay).items():
        spec = service["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        env = container_env(overlay, service)
        if name in expected_mode:
            assert env["AUTH_MODE"] == expected_mode[name]
        secrets = {
            item["name"]
            for item in container.get("env", [])
            if "secretKeyRef" in item.get("valueFrom", {})
        }
        needs = {
            "ingest-event": {"GATEWAY_SIGNING_SECRET", "REDIS_URL"},
            "ingest-batch": {"GATEWAY_SIGNING_SECRET", "REDIS_URL"},
            "authorize": {"DATABASE_URL", "GATEWAY_SIGNING_SECRET"},
            "ingest-eventing": {"DATABASE_URL", "REDIS_URL"},
        }[name]
        assert needs <= secrets, name
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["securityContext"]["runAsNonRoot"] is True
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_scaling_and_timeouts(overlay: str) -> None:
    for name, service in services(overlay).items():
        template = service["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert annotations[SCALING + "class"] == "kpa.autoscaling.knative.dev"
        assert annotations[SCALING + "min-scale"] == "0", name  # scales to zero
        assert int(annotations[SCALING + "max-scale"]) >= 1
        assert annotations[SCALING + "scale-down-delay"]
        target = float(annotations[SCALING + "target"])
        concurrency = template["spec"]["containerConcurrency"]
        # The soft target must be reachable below the hard limit, or KPA never scales out
        # before requests queue.
        assert 0 < target < concurrency, name
        env = container_env(overlay, service)
        if name != "authorize":  # the ingest handlers wait for the broker's acknowledgement
            ack_wait = int(env.get("KAFKA_DELIVERY_TIMEOUT_MS") or 10_000) / 1000 + 1
            assert template["spec"]["timeoutSeconds"] > ack_wait, name


def test_the_eventing_path_is_consistent() -> None:
    overlay = "dev"
    (trigger,) = of_kind(overlay, "Trigger")
    (broker,) = of_kind(overlay, "Broker")
    (policy,) = of_kind(overlay, "EventPolicy")
    namespace = trigger["metadata"]["namespace"]
    subscriber = trigger["spec"]["subscriber"]
    assert subscriber["uri"] == "http://ingest-eventing.audit-ingest.svc.cluster.local"
    eventing = config_maps(overlay)["audit-ingest-eventing"]
    assert subscriber["audience"] == eventing["EVENTING_AUDIENCE"]
    # Knative's name for a Trigger's OIDC identity: <trigger>-oidc-<group>-<kind>.
    sender = (
        f"system:serviceaccount:{namespace}:"
        f"{trigger['metadata']['name']}-oidc-eventing.knative.dev-trigger"
    )
    assert sender in orjson.loads(eventing["EVENTING_BINDINGS"])
    assert trigger["spec"]["broker"] == broker["metadata"]["name"]
    assert broker["metadata"]["namespace"] == policy["metadata"]["namespace"] == namespace
    assert policy["spec"]["from"] == [{"sub": f"system:serviceaccount:{namespace}:*"}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics(overlay: str) -> None:
    topics = {doc["metadata"]["name"]: doc["spec"] for doc in of_kind(overlay, "Topic")}
    (config,) = [
        data for name, data in config_maps(overlay).items() if name == "audit-ingest-config"
    ]
    assert set(topics) == {config["KAFKA_TOPIC"], config["KAFKA_DLQ_TOPIC"], config["SEALS_TOPIC"]}
    for spec in topics.values():
        assert spec["replicationFactor"] == 3
        assert spec["additionalConfig"]["min.insync.replicas"] == "2"
    # Seals are kept forever; the others for a while. The seal of events partition p is
    # stored in seals partition p.
    seals = topics.pop(config["SEALS_TOPIC"])
    assert int(seals["additionalConfig"]["retention.ms"]) == SEALS_RETENTION_MS == -1
    assert seals["partitions"] >= topics[config["KAFKA_TOPIC"]]["partitions"]
    for spec in topics.values():
        assert int(spec["additionalConfig"]["retention.ms"]) > 0
    # `audit-ingest topics create` (clusters without the operator) makes the same topics.
    assert int(topics[config["KAFKA_TOPIC"]]["additionalConfig"]["retention.ms"]) == (
        EVENTS_RETENTION_MS
    )
    assert int(topics[config["KAFKA_DLQ_TOPIC"]]["additionalConfig"]["retention.ms"]) == (
        DLQ_RETENTION_MS
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_generated_names_are_rewritten_inside_the_services(overlay: str) -> None:
    names = {doc["metadata"]["name"] for doc in of_kind(overlay, "ConfigMap")}
    assert all(name.rsplit("-", 1)[-1] for name in names)
    for service in services(overlay).values():
        (container,) = service["spec"]["template"]["spec"]["containers"]
        for source in container["envFrom"]:
            assert source["configMapRef"]["name"] in names


# The sealer: a plain Deployment (a consumer is never scaled to zero on HTTP traffic), its
# variables are settings, its key comes from a Secret, its metrics port is the setting's.
def sealer(overlay: str) -> dict[str, Any]:
    (deployment,) = [
        d for d in of_kind(overlay, "Deployment") if d["metadata"]["name"] == "audit-sealer"
    ]
    return deployment


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_sealer_deployment(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = sealer(overlay)
    assert deployment["metadata"]["namespace"] == "audit-ingest"
    assert deployment["spec"]["replicas"] >= 1
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] == ["audit-ingest", "seals", "run"]
    env = {}
    maps = {doc["metadata"]["name"]: doc["data"] for doc in of_kind(overlay, "ConfigMap")}
    for source in container["envFrom"]:
        env.update(maps[source["configMapRef"]["name"]])  # the generated, suffixed name
    env.update({item["name"]: item.get("value") for item in container["env"]})
    known = {name.upper() for name in Settings.model_fields}
    assert set(env) <= known, set(env) - known
    assert env["NODE_NAME"] is None  # from the pod's name: the transactional id
    # The key file is in the mounted Secret.
    (mount,) = container["volumeMounts"]
    assert env["SEAL_SIGNING_KEY_FILE"].startswith(mount["mountPath"] + "/")
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "audit-ingest-seal-key"
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["metrics"]
    assert str(port) == env["SEALER_METRICS_PORT"]
    with monkeypatch.context() as patched:
        for name, value in env.items():
            patched.setenv(name, value or "sealer-0")
        assert Settings().seals_topic == config_maps(overlay)["audit-ingest-config"]["SEALS_TOPIC"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "memory" in container["resources"]["limits"]
