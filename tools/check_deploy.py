"""`make check-deploy`: the deployment manifests, checked with the tools the cluster uses.

    python tools/check_deploy.py [--knative DIR] [--apisix DIR]

- knative/: `kustomize build` of every overlay (kustomize from the Go module proxy, pinned),
  then `knative-validate` (tools/knative-validate: Knative's own SetDefaults/Validate for
  Services, Brokers, Triggers and EventPolicies, strict decoding into client-go's types for
  Kubernetes objects, dangling ConfigMap/Secret/ServiceAccount references). An overlay lists
  the objects created outside git (such as production's Secret) in `external-objects.txt`.
- apisix/ (when present): every YAML file parses, and every standalone `apisix.yaml` ends
  with `#END` (APISIX reads a standalone file only up to that line). The deep APISIX checks
  belong to the gateway's own tests.
- ops/prometheus/: Prometheus's own `promtool` (pinned, from the Go module proxy) checks the
  alerting rules (`promtool check rules`) and runs their unit tests (`promtool test rules` on
  `alerts_test.yaml`: each alert fires, or stays silent, on the series given).

The Go tools are built once into .dev/bin, keyed by their version (kustomize, promtool) or by
a hash of their sources and go.sum (knative-validate), so later runs only execute them. The
first build of promtool takes about 4 minutes on 2 cores (its module graph is large); a
rebuild from Go's caches, 7 s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".dev" / "bin"
KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
# v5.8.3 needs Go 1.27; v5.8.2 is the newest that builds with the Go 1.26 toolchain here.
KUSTOMIZE_VERSION = "v5.8.2"
VALIDATOR_SOURCE = REPO / "tools" / "knative-validate"
PROMTOOL_PACKAGE = "github.com/prometheus/prometheus/cmd/promtool"
# Prometheus 3.x's Go module versions are v0.3xx.y; the newest that builds with Go 1.26 here.
PROMTOOL_VERSION = "v0.316.0"
RULES_FILE = "alerts.yaml"
RULES_TESTS = "alerts_test.yaml"
EXTERNAL_OBJECTS = "external-objects.txt"


class CheckFailed(Exception):
    pass


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-mod=mod")
    env.setdefault("GOTOOLCHAIN", "local")  # never download another toolchain
    return env


def _go(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    go = shutil.which("go")
    if go is None:
        raise CheckFailed("the Go toolchain (`go`) is needed to build the checks' tools")
    done = subprocess.run([go, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise CheckFailed(f"go {' '.join(args)} failed:\n{done.stderr}")


def _go_install(package: str, version: str, name: str) -> Path:
    """`go install package@version` (binary `name`) into .dev/bin as `<name>-<version>`."""
    target = BIN / f"{name}-{version}"
    if target.exists():
        return target
    BIN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BIN) as gobin:
        env = {**go_env(), "GOBIN": gobin}
        _go(["install", f"{package}@{version}"], REPO, env)
        os.replace(Path(gobin) / name, target)  # atomic: concurrent runs are safe
    return target


def ensure_kustomize() -> Path:
    """kustomize at the pinned version, built from the Go module proxy on first use."""
    return _go_install(KUSTOMIZE_MODULE, KUSTOMIZE_VERSION, "kustomize")


def ensure_promtool() -> Path:
    """Prometheus's promtool at the pinned version, built from the Go module proxy on first use."""
    return _go_install(PROMTOOL_PACKAGE, PROMTOOL_VERSION, "promtool")


def validator_key() -> str:
    digest = hashlib.sha256()
    for path in sorted(VALIDATOR_SOURCE.iterdir()):
        if path.suffix == ".go" or path.name in ("go.mod", "go.sum"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_validator() -> Path:
    """tools/knative-validate, built once per version of its sources and go.sum."""
    target = BIN / f"knative-validate-{validator_key()}"
    if target.exists():
        return target
    BIN.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    _go(["build", "-trimpath", "-o", str(partial), "."], VALIDATOR_SOURCE, go_env())
    os.replace(partial, target)
    for stale in BIN.glob("knative-validate-*"):
        if stale != target and not stale.name.endswith(".tmp"):
            stale.unlink(missing_ok=True)
    return target


def external_objects(overlay: Path) -> list[str]:
    listing = overlay / EXTERNAL_OBJECTS
    if not listing.exists():
        return []
    lines = (line.split("#", 1)[0].strip() for line in listing.read_text().splitlines())
    return [line for line in lines if line]


def check_overlay(overlay: Path, kustomize: Path, validator: Path) -> str:
    """Build one overlay and validate the result; returns the validator's summary."""
    built = subprocess.run(
        [str(kustomize), "build", str(overlay)], capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        raise CheckFailed(f"kustomize build {overlay} failed:\n{built.stderr.strip()}")
    flags = [arg for name in external_objects(overlay) for arg in ("-external", name)]
    checked = subprocess.run(
        [str(validator), *flags, "-"],
        input=built.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    if checked.returncode != 0:
        raise CheckFailed(f"{overlay}:\n{checked.stderr.strip()}")
    return checked.stdout.strip()


def check_knative(root: Path) -> list[str]:
    overlays = sorted(p.parent for p in (root / "overlays").glob("*/kustomization.yaml"))
    if not overlays:
        raise CheckFailed(f"no overlays under {root / 'overlays'}")
    kustomize, validator = ensure_kustomize(), ensure_validator()
    return [f"{o.name}: {check_overlay(o, kustomize, validator)}" for o in overlays]


def check_apisix(root: Path) -> list[str]:
    problems: list[str] = []
    files = sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")])
    for path in files:
        try:
            list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as exc:
            problems.append(f"{path}: not valid YAML: {exc}")
        if path.name == "apisix.yaml":
            lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
            if not lines or lines[-1] != "#END":
                problems.append(f"{path}: a standalone apisix.yaml must end with a #END line")
    if problems:
        raise CheckFailed("\n".join(problems))
    return [f"apisix: {len(files)} YAML file(s) ok"]


def check_prometheus(root: Path) -> list[str]:
    """The alerting rules as Prometheus reads them, and their unit tests run by promtool."""
    promtool = str(ensure_promtool())
    rules, tests = root / RULES_FILE, root / RULES_TESTS
    lines = []
    for args, what in (
        (["check", "rules", str(rules)], f"{rules.name}: promtool check rules: ok"),
        (["test", "rules", str(tests)], f"{tests.name}: promtool test rules: ok"),
    ):
        done = subprocess.run(
            [promtool, *args], capture_output=True, text=True, check=False, timeout=120
        )
        if done.returncode != 0:
            raise CheckFailed(f"promtool {' '.join(args)}:\n{(done.stdout + done.stderr).strip()}")
        lines.append(what)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--knative", type=Path, default=REPO / "knative")
    parser.add_argument("--apisix", type=Path, default=REPO / "apisix")
    parser.add_argument("--prometheus", type=Path, default=REPO / "ops" / "prometheus")
    args = parser.parse_args(argv)
    started = time.monotonic()
    failures = 0
    checks = [
        ("knative", check_knative, args.knative),
        ("apisix", check_apisix, args.apisix),
        ("prometheus", check_prometheus, args.prometheus),
    ]
    for name, check, root in checks:
        if name == "apisix" and not root.exists():
            print("check-deploy: apisix/ not present, skipped")
            continue
        try:
            for line in check(root):
                print(f"check-deploy: {line}")
        except CheckFailed as failure:
            failures += 1
            print(f"check-deploy: {name} FAILED\n{failure}", file=sys.stderr)
    print(f"check-deploy: {'FAILED' if failures else 'ok'} in {time.monotonic() - started:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
