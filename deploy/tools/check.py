"""``make deploy-check``: render every overlay, validate it against the Kubernetes schemas of
1.30 to 1.34 (strict) and the Prometheus Operator's kinds against deploy/schemas/, check the
alert rules and dashboards (monitoring.py: PromQL parsed, every metric one the code exports),
scan it with checkov, lint the Dockerfile. Runs with the deploy virtualenv's Python
(.venv-deploy), which has PyYAML, kubernetes-validate, jsonschema, promql-parser, checkov,
kubectl and hadolint; nothing here needs the network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import monitoring
import yaml
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod", "prod-llm", "prod-monitoring")
KUBERNETES_VERSIONS = ("1.30", "1.31", "1.32", "1.33", "1.34")
BIN = Path(sys.executable).parent

# Kinds whose schema is not among Kubernetes' own: kubernetes-validate only *warns* on an
# unknown kind and passes it, so each one is skipped here by name, with the reason, and any
# other unknown kind fails the check.
SKIPPED_KINDS = {
    ("postgresql.cnpg.io/v1", "Cluster"): (
        "CloudNativePG's CRD (dev overlay only); its schema ships with the operator, not with"
        " Kubernetes, and is checked by the operator's admission webhook when applied"
    ),
}


def render(overlay: str, out_dir: Path) -> Path:
    """``kubectl kustomize`` of one overlay, written to out_dir/<overlay>.yaml."""
    rendered = subprocess.run(  # noqa: S603 - fixed argv: the deploy venv's own tools
        [str(BIN / "kubectl"), "kustomize", str(DEPLOY / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = out_dir / f"{overlay}.yaml"
    path.write_text(rendered)
    return path


def validate(path: Path) -> list[str]:
    """Strict schema validation of every document for every supported Kubernetes version."""
    problems = []
    for document in yaml.safe_load_all(path.read_text()):
        if not document:
            continue
        kind, api_version = document["kind"], document["apiVersion"]
        name = f"{kind}/{document['metadata']['name']}"
        crd_problems = monitoring.check_schema(document)
        if crd_problems is not None:
            problems += [f"{path.name} {problem}" for problem in crd_problems]
            continue
        if (api_version, kind) in SKIPPED_KINDS:
            print(f"  skip {path.name} {name}: {SKIPPED_KINDS[(api_version, kind)]}")
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kv.validate(document, version, strict=True)
            except kv.ValidationError as error:
                where = ".".join(str(part) for part in error.path)
                problems.append(f"{path.name} {name} (k8s {version}): {where}: {error.message}")
            except kv.SchemaNotFoundError:
                problems.append(f"{path.name} {name}: no schema for {api_version} in {version}")
    return problems


def checkov(paths: list[Path]) -> list[str]:
    """checkov's Kubernetes checks; skips are only those annotated in the manifests."""
    result = subprocess.run(  # noqa: S603 - fixed argv: the deploy venv's own tools
        [
            str(BIN / "checkov"),
            *(arg for path in paths for arg in ("-f", str(path))),
            "--framework",
            "kubernetes",
            "--skip-download",
            "--compact",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "BC_SKIP_MAPPING": "TRUE",
        },
    )
    reports = json.loads(result.stdout)
    problems = []
    for report in reports if isinstance(reports, list) else [reports]:
        results = report.get("results", {})
        summary = report.get("summary", {})
        print(f"  checkov {report.get('check_type')}: {summary}")
        for failed in results.get("failed_checks", []):
            problems.append(
                f"{failed['check_id']} {failed['check_name']}: {failed['resource']}"
                f" ({Path(failed['file_path']).name})"
            )
        for skipped in results.get("skipped_checks", []):
            reason = (skipped.get("check_result") or {}).get("suppress_comment", "")
            if not reason.strip():
                problems.append(
                    f"{skipped['check_id']} skipped without a reason: {skipped['resource']}"
                )
        if summary.get("parsing_errors"):
            problems.append(f"checkov could not parse {summary['parsing_errors']} file(s)")
    if result.returncode not in (0, 1):
        problems.append(f"checkov exited with {result.returncode}: {result.stderr[-2000:]}")
    return problems


def hadolint() -> list[str]:
    """hadolint over the image recipe (its own rules, no ignores)."""
    result = subprocess.run(  # noqa: S603 - fixed argv: the deploy venv's own tools
        [str(BIN / "hadolint"), str(DEPLOY / "docker" / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    return (
        [line for line in result.stdout.splitlines() if line.strip()] if result.returncode else []
    )


def promtool(paths: list[Path], out_dir: Path) -> list[str]:
    """``promtool check rules`` (expressions and annotation templates) over every
    PrometheusRule, when a promtool is at hand: $PROMTOOL, .venv-deploy/bin/promtool or the
    PATH. No registry this project installs from ships it as a package of its own (Debian's
    ``prometheus`` package has it: deploy/README.md, "Monitoring"); without it, the rules'
    PromQL is still parsed by promql-parser (monitoring.py)."""
    found = os.environ.get("PROMTOOL") or (
        str(BIN / "promtool") if (BIN / "promtool").exists() else shutil.which("promtool")
    )
    if not found:
        print("  promtool not found: rules checked by promql-parser and the schema only")
        return []
    problems = []
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "PrometheusRule":
                continue
            name = f"{path.stem}-{document['metadata']['name']}"
            rules = out_dir / f"{name}.rules.yaml"
            rules.write_text(yaml.safe_dump({"groups": document["spec"]["groups"]}))
            result = subprocess.run(  # noqa: S603 - the promtool found above, fixed arguments
                [found, "check", "rules", str(rules)], capture_output=True, text=True
            )
            if result.returncode:
                problems.append(f"promtool check rules {name}: {result.stdout}{result.stderr}")
    return problems


def main() -> int:
    out_dir = ROOT / ".data" / "deploy"
    out_dir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    started = time.monotonic()

    step = time.monotonic()
    paths = [render(overlay, out_dir) for overlay in OVERLAYS]
    names = ", ".join(path.name for path in paths)
    print(f"rendered {names} into {out_dir} ({time.monotonic() - step:.1f}s)")

    step = time.monotonic()
    for path in paths:
        failures += validate(path)
    versions = f"{KUBERNETES_VERSIONS[0]} to {KUBERNETES_VERSIONS[-1]}"
    print(f"kubernetes-validate --strict, {versions} ({time.monotonic() - step:.1f}s)")

    step = time.monotonic()
    for path in paths:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
        failures += [f"{path.name} {problem}" for problem in monitoring.check(documents)]
    known = len(monitoring.known_series())
    print(
        f"alert rules and dashboards: PromQL parsed, metrics among the {known} series the code"
        f" exports, PodMonitor per Deployment ({time.monotonic() - step:.1f}s)"
    )

    step = time.monotonic()
    failures += promtool(paths, out_dir)
    print(f"promtool check rules ({time.monotonic() - step:.1f}s)")

    step = time.monotonic()
    failures += checkov(paths)
    print(f"checkov ({time.monotonic() - step:.1f}s)")

    step = time.monotonic()
    failures += hadolint()
    print(f"hadolint deploy/docker/Dockerfile ({time.monotonic() - step:.1f}s)")

    for failure in failures:
        print(f"FAIL {failure}")
    print(f"deploy-check: {'FAILED' if failures else 'ok'} in {time.monotonic() - started:.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
