"""The monitoring kit (deploy/components/monitoring) against the code: every metric an alert
rule or a dashboard names is one the services really export (scraped here from real
exporters after real calls), deploy-check's own catalog of metrics agrees with them, and
deploy-check refuses a rule or panel naming an unknown metric or RPC, or a malformed
PodMonitor. The checks run in the deploy virtualenv (promql-parser, jsonschema), as
``make deploy-check`` runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from tests.deploy.test_manifests import DEPLOY_VENV, ROOT, render

# It runs the monitoring checks in the deploy virtualenv (a process).
pytestmark = pytest.mark.integration

OVERLAY = "prod-monitoring"

# Run by the deploy virtualenv's Python: reads documents (JSON) on stdin, applies one
# mutation, prints deploy-check's problems for them.
_CHECK = """
import json, sys
sys.path.insert(0, {tools!r})
import monitoring
documents = json.load(sys.stdin)
mutation = {mutation!r}
exec(mutation, {{"documents": documents}})
problems = [p for d in documents for p in (monitoring.check_schema(d) or [])]
print(json.dumps({{
    "problems": problems + monitoring.check(documents),
    "referenced": sorted(monitoring.referenced(documents)),
    "catalog": sorted(monitoring.known_series()),
}}))
"""

# Run by the main virtualenv's Python: a real gRPC server with the runtime's interceptor,
# one call, every edge instrument used once and every service's own instrument recorded once
# (through the functions the services call); prints the names of the samples the
# OpenTelemetry Prometheus exporter then serves (prometheus_client's default registry, which
# the metrics port and the edge's /metrics serve).
_EXPORTED = """
import asyncio, json
import grpc, prometheus_client
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client.parser import text_string_to_metric_families

metrics.set_meter_provider(MeterProvider(metric_readers=[PrometheusMetricReader()]))
from runtime.interceptors import ServerInterceptor
from edge import metrics as edge_metrics
from billing_gateway import gateway_metrics
from notifier import outbox_metrics
from policy import policy_metrics

async def call():
    server = grpc.aio.server(interceptors=[ServerInterceptor("test")])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    await server.stop(None)

asyncio.run(call())
outbox_metrics.count_dead_letter("email")
outbox_metrics.outbox_age.update({"email": 1.0})
gateway_metrics.count_signature_failure("SIGNATURE_INVALID")
gateway_metrics.count_differences(gateway_metrics.MISSED_EVENT)
gateway_metrics.count_refund({"amount": 100, "currency": "usd"})
gateway_metrics.count_case_opened(True)
gateway_metrics.count_case_closed("recovered")
policy_metrics.count_chain_failure(policy_metrics.VERIFY_CHAIN)
policy_metrics.count_escalation_opened("refund")
policy_metrics.count_escalation_decided("approved")
policy_metrics.count_late_commit(over_bound=False)
for instrument in vars(edge_metrics).values():
    if isinstance(instrument, metrics.Counter):
        instrument.add(1, {"x": "x"})
    elif isinstance(instrument, metrics.Histogram):
        instrument.record(1, {"x": "x"})
names = set()
text = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
for family in text_string_to_metric_families(text):
    names.update(sample.name for sample in family.samples)
print(json.dumps(sorted(names)))
"""


def _check(documents: list[dict[str, Any]], mutation: str = "") -> dict[str, Any]:
    script = _CHECK.format(tools=str(ROOT / "deploy" / "tools"), mutation=mutation)
    result = subprocess.run(
        [str(DEPLOY_VENV / "python"), "-c", script],
        input=json.dumps(documents),
        capture_output=True,
        text=True,
        check=True,
    )
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def _exported() -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", _EXPORTED], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(json.loads(result.stdout))


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    return render(OVERLAY)


def test_the_kit_passes_and_names_only_metrics_the_services_export(
    documents: list[dict[str, Any]],
) -> None:
    checked = _check(documents)
    assert checked["problems"] == []
    exported = _exported()
    referenced = set(checked["referenced"])
    # The alerts and dashboards really use the services' metrics, not only built-in ones.
    assert {"askvault_rpc_server_calls_total", "askvault_edge_turns_total"} <= referenced
    # Every alert issue 18 asks for has the metric behind it.
    assert {
        "askvault_notifier_outbox_oldest_age_seconds",
        "askvault_notifier_dead_letters_total",
        "askvault_billing_webhook_signature_failures_total",
        "askvault_billing_stripe_breakers_open",
        "askvault_policy_audit_chain_failures_total",
        "askvault_billing_reconciliation_differences_total",
        # Issue 19: a released grant committed late past its bound.
        "askvault_policy_grants_committed_late_total",
    } <= referenced
    # ``up`` is Prometheus' own series of every target; everything else comes from the code.
    assert referenced - {"up"} <= exported, referenced - exported
    # deploy-check's catalog (read from the source) names what the exporters serve.
    ours = {name for name in exported if name.startswith("askvault_")}
    catalog = {name for name in checked["catalog"] if name.startswith("askvault_")}
    assert ours == catalog
    kinds = {d["kind"] for d in documents}
    assert {"PodMonitor", "PrometheusRule"} <= kinds


def _rule(index: int) -> str:
    return f'documents_rule = [d for d in documents if d["kind"] == "PrometheusRule"][0]["spec"]["groups"][0]["rules"][{index}]'  # noqa: E501


_BAD = {
    "a rule naming an unknown metric": (
        _rule(0) + '\ndocuments_rule["expr"] = documents_rule["expr"].replace('
        '"askvault_rpc_server_calls_total", "askvault_rpc_server_call_total")',
        "unknown metric askvault_rpc_server_call_total",
    ),
    "a rule naming a service metric the code does not export": (
        'rules = [d for d in documents if d["kind"] == "PrometheusRule"][0]["spec"]["groups"]\n'
        "for g in rules:\n"
        "    for r in g['rules']:\n"
        "        r['expr'] = r['expr'].replace('askvault_notifier_dead_letters_total',"
        " 'askvault_notifier_dead_letter_total')",
        "unknown metric askvault_notifier_dead_letter_total",
    ),
    "a rule that is no PromQL": (
        _rule(0) + '\ndocuments_rule["expr"] = "sum(rate(askvault_rpc_server_calls_total[5m])"',
        "does not parse as PromQL",
    ),
    "an alert without severity": (
        _rule(1) + '\ndocuments_rule["labels"] = {}',
        "no severity label",
    ),
    "a rule naming an RPC that does not exist": (
        _rule(0) + "\ndocuments_rule['expr'] = 'sum(rate(askvault_rpc_server_calls_total{"
        'rpc_method="/askvault.billing.v1.BillingGatewayService/IngestStripeEvents"}[5m])) > 1\'',
        "rpc_method /askvault.billing.v1.BillingGatewayService/IngestStripeEvents is no RPC",
    ),
    "a dashboard panel naming an unknown metric": (
        "import json as j\n"
        'm = [d for d in documents if d["kind"] == "ConfigMap" and "grafana_dashboard" in'
        ' d["metadata"].get("labels", {})][0]\n'
        'key = sorted(m["data"])[0]\n'
        'board = j.loads(m["data"][key])\n'
        'board["panels"][0]["targets"][0]["expr"] = "sum(rate(askvault_nothing_total[5m]))"\n'
        'm["data"][key] = j.dumps(board)',
        "unknown metric askvault_nothing_total",
    ),
    "a dashboard panel without a datasource": (
        "import json as j\n"
        'm = [d for d in documents if d["kind"] == "ConfigMap" and "grafana_dashboard" in'
        ' d["metadata"].get("labels", {})][0]\n'
        'key = sorted(m["data"])[0]\n'
        'board = j.loads(m["data"][key])\n'
        'del board["panels"][0]["datasource"]\n'
        'm["data"][key] = j.dumps(board)',
        "no Prometheus datasource",
    ),
    "a PodMonitor with an unknown field": (
        'p = [d for d in documents if d["kind"] == "PodMonitor"][0]\n'
        'p["spec"]["podMetricsEndpoints"][0]["portName"] = "metrics"',
        "'portName' was unexpected",
    ),
    "a PodMonitor on a port the pods do not have": (
        'p = [d for d in documents if d["kind"] == "PodMonitor"'
        ' and d["metadata"]["name"] == "policy"][0]\n'
        'p["spec"]["podMetricsEndpoints"][0]["port"] = "prometheus"',
        "port prometheus is not a port of Deployment/policy",
    ),
    "a Deployment no PodMonitor scrapes": (
        'documents[:] = [d for d in documents if not (d["kind"] == "PodMonitor"'
        ' and d["metadata"]["name"] == "notifier")]',
        "Deployment/notifier: no PodMonitor selects its pods",
    ),
}


@pytest.mark.parametrize("case", sorted(_BAD))
def test_deploy_check_refuses(case: str, documents: list[dict[str, Any]]) -> None:
    mutation, expected = _BAD[case]
    problems = _check(documents, mutation)["problems"]
    assert any(expected in problem for problem in problems), problems


def test_the_base_overlays_need_no_prometheus_operator() -> None:
    for overlay in ("dev", "prod", "prod-llm"):
        kinds = {d["apiVersion"] for d in render(overlay)}
        assert not any(kind.startswith("monitoring.coreos.com/") for kind in kinds), overlay


def test_dashboards_are_one_per_service_and_one_for_the_skill(
    documents: list[dict[str, Any]],
) -> None:
    boards = [
        d
        for d in documents
        if d["kind"] == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard")
    ]
    keys = {key for board in boards for key in board["data"]}
    services = ("identity", "policy", "billing-gateway", "notifier", "edge", "console", "skill")
    assert keys == {f"askvault-{name}.json" for name in services}
    skill = json.loads(next(b["data"]["askvault-skill.json"] for b in boards))
    titles = " ".join(panel["title"].lower() for panel in skill["panels"])
    for word in ("turns", "intent", "refunds", "escalations", "recovery"):
        assert word in titles, word
