"""The monitoring part of ``make deploy-check``: the PodMonitors, the PrometheusRule and the
Grafana dashboards of deploy/components/monitoring, as an overlay renders them.

- PodMonitor, ServiceMonitor and PrometheusRule are validated (strict: no unknown field)
  against the JSON schemas vendored in deploy/schemas/ (made from the Prometheus Operator's
  models, see deploy/schemas/README.md); kubernetes-validate knows only Kubernetes' own kinds.
- Every expression of a rule and of a dashboard panel is parsed as PromQL (promql-parser, the
  Rust parser of GreptimeDB; promtool is not published on any registry this project can use)
  and every metric it names must be one the code exports: the catalog is read from the source
  (OpenTelemetry instruments and prometheus_client metrics, named as the Prometheus exporters
  name them), so renaming a metric in the code fails the check until the rules follow.
- An ``rpc_method="..."`` matcher must name an RPC of protos/.
- Every Deployment has a PodMonitor whose port is one of its container ports, and every
  monitored service has a dashboard.

Runs with the deploy virtualenv's Python (PyYAML, jsonschema, promql-parser)."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import promql_parser
from jsonschema.exceptions import best_match

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "deploy" / "schemas"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}
DASHBOARD_LABEL = "grafana_dashboard"

# Series every scrape target has without the code making them: Prometheus' own (up, ...),
# the OpenTelemetry exporter's target_info, and prometheus_client's default collectors on
# the metrics port that runtime/telemetry.py starts (process_*, python_*).
BUILT_IN = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "target_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "python_gc_objects_collected_total",
        "python_gc_objects_uncollectable_total",
        "python_gc_collections_total",
        "python_info",
    }
)

# OpenTelemetry instrument -> Prometheus kind (opentelemetry-exporter-prometheus).
_OTEL_KINDS = {
    "create_counter": "counter",
    "create_observable_counter": "counter",
    "create_histogram": "histogram",
    "create_up_down_counter": "gauge",
    "create_observable_up_down_counter": "gauge",
    "create_gauge": "gauge",
    "create_observable_gauge": "gauge",
}
_CLIENT_KINDS = {
    "Counter": "counter",
    "Histogram": "histogram",
    "Gauge": "gauge",
    "Summary": "summary",
}
# UCUM units the exporter spells out (the ones this project uses; others are left off).
_UNITS = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "1": "ratio"}


@dataclass(frozen=True)
class Instrument:
    """One metric the code defines: where, its name there, and what it becomes."""

    where: str
    name: str
    kind: str
    series: frozenset[str]


def _otel_series(name: str, unit: str, kind: str) -> frozenset[str]:
    base = re.sub(r"[^a-zA-Z0-9_:]", "_", name)
    suffix = _UNITS.get(unit, "")
    if suffix and not base.endswith(f"_{suffix}"):
        base = f"{base}_{suffix}"
    if kind == "counter":
        return frozenset({f"{base}_total"})
    if kind == "histogram":
        return frozenset({f"{base}_bucket", f"{base}_count", f"{base}_sum"})
    return frozenset({base})


def _client_series(name: str, kind: str) -> frozenset[str]:
    base = name.removesuffix("_total") if kind == "counter" else name
    if kind == "counter":
        return frozenset({f"{base}_total", f"{base}_created"})
    if kind == "histogram":
        return frozenset({f"{base}_bucket", f"{base}_count", f"{base}_sum", f"{base}_created"})
    if kind == "summary":
        return frozenset({f"{base}_count", f"{base}_sum", f"{base}_created"})
    return frozenset({base})


def _string(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def instruments(root: Path = ROOT) -> list[Instrument]:
    """Every metric defined in runtime/ and services/ (tests left out)."""
    found = []
    for path in sorted([*root.glob("runtime/**/*.py"), *root.glob("services/**/*.py")]):
        if "tests" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            function = node.func
            attribute = function.attr if isinstance(function, ast.Attribute) else None
            called = attribute or (function.id if isinstance(function, ast.Name) else None)
            name = _string(node.args[0])
            if name is None or called is None:
                continue
            where = f"{path.relative_to(root)}:{node.lineno}"
            if called in _OTEL_KINDS and attribute:
                unit = next((_string(k.value) or "" for k in node.keywords if k.arg == "unit"), "")
                kind = _OTEL_KINDS[called]
                found.append(Instrument(where, name, kind, _otel_series(name, unit, kind)))
            elif called in _CLIENT_KINDS and (
                attribute is None
                or (
                    isinstance(function, ast.Attribute)
                    and isinstance(function.value, ast.Name)
                    and function.value.id == "prometheus_client"
                )
            ):
                kind = _CLIENT_KINDS[called]
                found.append(Instrument(where, name, kind, _client_series(name, kind)))
    return found


@cache
def known_series(root: Path = ROOT) -> frozenset[str]:
    """Every series name a scrape of the services can return."""
    return BUILT_IN | frozenset(s for i in instruments(root) for s in i.series)


@cache
def rpc_methods(root: Path = ROOT) -> frozenset[str]:
    """``/package.Service/Method`` of every RPC in protos/."""
    methods = set()
    for path in root.glob("protos/**/*.proto"):
        text = path.read_text()
        package = re.search(r"^package\s+([\w.]+);", text, re.M)
        prefix = f"{package.group(1)}." if package else ""
        for service in re.finditer(r"^service\s+(\w+)\s*\{(.*?)^\}", text, re.M | re.S):
            for rpc in re.finditer(r"^\s*rpc\s+(\w+)\s*\(", service.group(2), re.M):
                methods.add(f"/{prefix}{service.group(1)}/{rpc.group(1)}")
    return frozenset(methods)


def _selectors(expr: Any) -> list[Any]:
    found: list[Any] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(expr, visit)
    return found


def _matchers(selector: Any) -> list[Any]:
    matchers = list(selector.matchers.matchers)
    for group in selector.matchers.or_matchers or []:
        matchers.extend(group)
    return matchers


def metric_names(expression: str) -> set[str]:
    """The metric names an expression selects (raises ValueError when it does not parse)."""
    names = set()
    for selector in _selectors(promql_parser.parse(expression)):
        if selector.name:
            names.add(selector.name)
        for matcher in _matchers(selector):
            if matcher.name == "__name__" and matcher.op == promql_parser.MatchOp.Equal:
                names.add(matcher.value)
    return names


def check_expression(
    where: str, expression: str, known: frozenset[str], methods: frozenset[str]
) -> list[str]:
    """Parses; every metric known; every exact rpc_method an RPC of protos/."""
    # Grafana's variables are not PromQL: give them a value of the right shape first.
    concrete = expression.replace("$namespace", "askvault")
    try:
        parsed = promql_parser.parse(concrete)
    except ValueError as error:
        return [f"{where}: does not parse as PromQL: {error}"]
    problems = []
    selectors = _selectors(parsed)
    if not selectors:
        problems.append(f"{where}: selects no metric")
    for name in sorted(metric_names(concrete) - known):
        problems.append(f"{where}: unknown metric {name} (not exported by the code)")
    for selector in selectors:
        for matcher in _matchers(selector):
            exact = matcher.op == promql_parser.MatchOp.Equal
            if matcher.name == "rpc_method" and exact and matcher.value not in methods:
                problems.append(f"{where}: rpc_method {matcher.value} is no RPC of protos/")
    return problems


@cache
def _validator(file_name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMAS / file_name).read_text()))


def check_schema(document: dict[str, Any]) -> list[str] | None:
    """Strict validation against a vendored CRD schema; None when the kind has none."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key not in CRD_SCHEMAS:
        return None
    error = best_match(_validator(CRD_SCHEMAS[key]).iter_errors(document))  # type: ignore[index]
    if error is None:
        return []
    where = ".".join(str(part) for part in error.absolute_path)
    return [f"{document['kind']}/{document['metadata']['name']}: {where}: {error.message[:300]}"]


def check_rules(
    documents: Iterable[dict[str, Any]], known: frozenset[str], methods: frozenset[str]
) -> list[str]:
    """Structure and expressions of every PrometheusRule."""
    problems = []
    for document in documents:
        if document.get("kind") != "PrometheusRule":
            continue
        name = f"PrometheusRule/{document['metadata']['name']}"
        groups = document.get("spec", {}).get("groups") or []
        if not groups:
            problems.append(f"{name}: no rule groups")
        group_names = [group.get("name") for group in groups]
        if len(set(group_names)) != len(group_names):
            problems.append(f"{name}: group names repeat: {group_names}")
        for group in groups:
            for index, rule in enumerate(group.get("rules") or []):
                label = rule.get("alert") or rule.get("record") or f"rule {index}"
                where = f"{name} {group.get('name')}/{label}"
                if bool(rule.get("alert")) == bool(rule.get("record")):
                    problems.append(f"{where}: needs exactly one of alert and record")
                if rule.get("alert"):
                    if not rule.get("labels", {}).get("severity"):
                        problems.append(f"{where}: no severity label")
                    if not rule.get("annotations", {}).get("summary"):
                        problems.append(f"{where}: no summary annotation")
                if "for" in rule:
                    try:
                        promql_parser.parse_duration(str(rule["for"]))
                    except ValueError:
                        problems.append(f"{where}: for: {rule['for']!r} is no duration")
                problems += check_expression(where, str(rule.get("expr", "")), known, methods)
    return problems


def dashboards(documents: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``configmap/key`` -> the dashboard, for every ConfigMap labelled for Grafana's sidecar
    (raises ValueError naming one that is no JSON)."""
    found = {}
    for document in documents:
        labels = document.get("metadata", {}).get("labels") or {}
        if document.get("kind") != "ConfigMap" or DASHBOARD_LABEL not in labels:
            continue
        for key, text in (document.get("data") or {}).items():
            where = f"ConfigMap/{document['metadata']['name']}/{key}"
            try:
                found[where] = json.loads(text)
            except ValueError as error:
                raise ValueError(f"{where}: not JSON: {error}") from None
    return found


def check_dashboards(
    documents: Iterable[dict[str, Any]], known: frozenset[str], methods: frozenset[str]
) -> list[str]:
    """Every dashboard: uid and title, panels each with a Prometheus datasource and targets
    whose expressions parse and name known metrics."""
    problems = []
    try:
        found = dashboards(documents)
    except ValueError as error:
        return [str(error)]
    uids: dict[str, str] = {}
    for where, dashboard in found.items():
        for field in ("uid", "title", "panels"):
            if not dashboard.get(field):
                problems.append(f"{where}: no {field}")
        uid = str(dashboard.get("uid"))
        if uid in uids:
            problems.append(f"{where}: uid {uid} also in {uids[uid]}")
        uids[uid] = where
        ids = [panel.get("id") for panel in dashboard.get("panels", [])]
        if len(set(ids)) != len(ids):
            problems.append(f"{where}: panel ids repeat")
        for panel in dashboard.get("panels", []):
            at = f"{where} panel {panel.get('title')!r}"
            if (panel.get("datasource") or {}).get("type") != "prometheus":
                problems.append(f"{at}: no Prometheus datasource")
            targets = panel.get("targets") or []
            if not targets:
                problems.append(f"{at}: no targets")
            for target in targets:
                if not target.get("refId"):
                    problems.append(f"{at}: a target without refId")
                if not target.get("expr"):
                    problems.append(f"{at}: a target without expr")
                    continue
                problems += check_expression(at, target["expr"], known, methods)
    return problems


def expressions(documents: Iterable[dict[str, Any]]) -> list[str]:
    """Every rule's and dashboard panel's expression (Grafana's variables given a value)."""
    documents = list(documents)
    found = [
        str(rule.get("expr", ""))
        for document in documents
        if document.get("kind") == "PrometheusRule"
        for group in document.get("spec", {}).get("groups") or []
        for rule in group.get("rules") or []
    ]
    for dashboard in dashboards(documents).values():
        for panel in dashboard.get("panels", []):
            for target in panel.get("targets") or []:
                found.append(str(target.get("expr", "")).replace("$namespace", "askvault"))
    return found


def referenced(documents: Iterable[dict[str, Any]]) -> set[str]:
    """The metric names the rules and dashboards select (expressions that parse)."""
    names: set[str] = set()
    for expression in expressions(documents):
        try:
            names |= metric_names(expression)
        except ValueError:
            continue
    return names


def check_coverage(documents: list[dict[str, Any]]) -> list[str]:
    """Every Deployment scraped by a PodMonitor on one of its container ports, and a dashboard
    naming each monitored service."""
    monitors = [d for d in documents if d.get("kind") == "PodMonitor"]
    if not monitors:
        return []
    problems = []
    texts = [json.dumps(d) for d in dashboards(documents).values()]
    for deployment in (d for d in documents if d.get("kind") == "Deployment"):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]
        labels = pod["metadata"]["labels"]
        ports = {p.get("name") for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        matching = [
            monitor
            for monitor in monitors
            if all(
                labels.get(key) == value
                for key, value in monitor["spec"]["selector"].get("matchLabels", {}).items()
            )
        ]
        if not matching:
            problems.append(f"Deployment/{name}: no PodMonitor selects its pods")
        for monitor in matching:
            for endpoint in monitor["spec"].get("podMetricsEndpoints", []):
                if endpoint.get("port") not in ports:
                    problems.append(
                        f"PodMonitor/{monitor['metadata']['name']}: port {endpoint.get('port')}"
                        f" is not a port of Deployment/{name} ({sorted(ports)})"
                    )
        if not any(f'service=\\"{name}\\"' in text for text in texts):
            problems.append(f"Deployment/{name}: no dashboard shows service={name!r}")
    return problems


def check(documents: list[dict[str, Any]], root: Path = ROOT) -> list[str]:
    """Everything above, for one rendered overlay."""
    known, methods = known_series(root), rpc_methods(root)
    return (
        check_rules(documents, known, methods)
        + check_dashboards(documents, known, methods)
        + check_coverage(documents)
    )
