"""Every Deployment of every overlay, as ``kubectl kustomize`` renders it: probes, requests
and limits, non-root, read-only root filesystem, dropped capabilities, and a NetworkPolicy
selecting its pods. Uses the deploy virtualenv's kubectl and PyYAML (``make deploy-check``
creates .venv-deploy; the main .venv has neither)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_VENV = ROOT / ".venv-deploy" / "bin"
OVERLAYS = ("dev", "prod", "prod-llm", "prod-monitoring")

_TO_JSON = (
    "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))"
)

# It renders and validates with the manifest tools (processes).
pytestmark = pytest.mark.integration


def render(overlay: str) -> list[dict[str, Any]]:
    if not (DEPLOY_VENV / "kubectl").exists():
        pytest.skip("no .venv-deploy: run `make deploy-check` (make test does it first)")
    rendered = subprocess.run(
        [str(DEPLOY_VENV / "kubectl"), "kustomize", str(ROOT / "deploy" / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    converted = subprocess.run(
        [str(DEPLOY_VENV / "python"), "-c", _TO_JSON],
        input=rendered,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    documents: list[dict[str, Any]] = json.loads(converted)
    return documents


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    selector = policy["spec"]["podSelector"]
    assert "matchExpressions" not in selector
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_deployment_is_hardened_probed_limited_and_isolated(overlay: str) -> None:
    documents = render(overlay)
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    policies = [d for d in documents if d["kind"] == "NetworkPolicy"]
    names = {d["metadata"]["name"] for d in deployments}
    assert {"identity", "policy", "billing-gateway", "notifier", "edge"} <= names
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            where = f"{name}/{container['name']}"
            assert container["readinessProbe"] and container["livenessProbe"], where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
        assert any(_selects(policy, labels) for policy in policies), f"{name}: no NetworkPolicy"


# The Deployments that serve HTTP (probed on /readyz), not gRPC.
HTTP_SERVERS = ("edge", "console")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_services_use_native_grpc_probes_and_outlast_their_drain(overlay: str) -> None:
    documents = render(overlay)
    configs = {d["metadata"]["name"]: d["data"] for d in documents if d["kind"] == "ConfigMap"}
    for deployment in (d for d in documents if d["kind"] == "Deployment"):
        if deployment["metadata"]["labels"].get("app.kubernetes.io/part-of") != "askvault":
            continue  # the dev emulators
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        config_name = container["envFrom"][0]["configMapRef"]["name"]
        config = configs[config_name]
        drain = float(config["SHUTDOWN_DELAY_SECONDS"]) + float(config["SHUTDOWN_GRACE_SECONDS"])
        assert pod["terminationGracePeriodSeconds"] > drain, name
        assert config["MIGRATE_ON_START"] == "false", name  # the migration Job migrates
        assert config["OTEL_EXPORTER_OTLP_ENDPOINT"], name
        if name in HTTP_SERVERS:
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            continue
        assert container["readinessProbe"]["grpc"].get("service", "") == ""
        assert container["livenessProbe"]["grpc"]["service"] == "liveness"
        assert container["ports"][0]["name"] == "grpc"


def test_only_the_edge_is_reachable_from_outside_and_callers_match_the_call_graph() -> None:
    documents = render("prod")
    ingresses = [d for d in documents if d["kind"] == "Ingress"]
    assert [
        i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] for i in ingresses
    ] == ["edge"]
    callers: dict[str, set[str]] = {}
    for policy in (d for d in documents if d["kind"] == "NetworkPolicy"):
        target = policy["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    callers.setdefault(target, set()).add(
                        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
                    )
    assert callers == {
        "identity": {"edge", "policy", "billing-gateway"},
        "policy": {"edge", "billing-gateway", "console"},
        "billing-gateway": {"edge", "console"},
        "notifier": {"edge", "billing-gateway", "console"},
        "edge": {"console"},
    }


def _edge_egress_outside(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The egress rules of policies selecting the edge's pods that reach an address range."""
    edge = {"app.kubernetes.io/name": "edge", "app.kubernetes.io/component": "server"}
    return [
        rule
        for policy in documents
        if policy["kind"] == "NetworkPolicy" and _selects(policy, edge)
        for rule in policy["spec"].get("egress", [])
        if any("ipBlock" in peer for peer in rule.get("to", []))
        and not any(port.get("port") == 5432 for port in rule.get("ports", []))
    ]


def test_the_edge_reaches_a_model_host_only_where_llm_mode_is_configured() -> None:
    for overlay in ("dev", "prod"):
        documents = render(overlay)
        configs = {d["metadata"]["name"]: d["data"] for d in documents if d["kind"] == "ConfigMap"}
        edge_config = next(v for k, v in configs.items() if k.startswith("edge-config"))
        assert "LLM_BASE_URL" not in edge_config, overlay
        assert _edge_egress_outside(documents) == [], overlay
    documents = render("prod-llm")
    configs = {d["metadata"]["name"]: d["data"] for d in documents if d["kind"] == "ConfigMap"}
    edge_config = next(v for k, v in configs.items() if k.startswith("edge-config"))
    assert edge_config["LLM_BASE_URL"].startswith("https://")
    [rule] = _edge_egress_outside(documents)
    assert rule["ports"] == [{"port": 443, "protocol": "TCP"}]
    # The rest of prod is unchanged: the same policies plus the model's.
    prod = {d["metadata"]["name"] for d in render("prod") if d["kind"] == "NetworkPolicy"}
    with_llm = {d["metadata"]["name"] for d in documents if d["kind"] == "NetworkPolicy"}
    assert with_llm - prod == {"edge-llm-egress"} and prod <= with_llm


def test_no_secret_values_in_git() -> None:
    for overlay in OVERLAYS:
        assert not [d for d in render(overlay) if d["kind"] == "Secret"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_pod_holds_anything_that_signs_admin_credentials(overlay: str) -> None:
    # Admin credentials come from the identity provider; the services read its public keys.
    # A pod holding a signing key (the old shared ADMIN_TOKEN_SECRET) mints admins for every
    # service. The four services serving admin RPCs and the console (which checks its
    # signed-in admins by the same rules) know the provider; the edge does not.
    knows_provider = set()
    for document in render(overlay):
        if document["kind"] not in ("Deployment", "Job"):
            continue
        name = f"{document['kind']}/{document['metadata']['name']}"
        pod = document["spec"]["template"]["spec"]
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            names = {env["name"] for env in container.get("env", [])}
            assert not {"ADMIN_TOKEN_SECRET", "ADMIN_SIGNING_KEY"} & names, name
            sources = {
                ref.get("configMapRef", {}).get("name", "") for ref in container.get("envFrom", [])
            }
            if any(source.startswith("admin-identity") for source in sources):
                knows_provider.add(name)
    assert knows_provider == {
        "Deployment/identity",
        "Deployment/policy",
        "Deployment/billing-gateway",
        "Deployment/notifier",
        "Deployment/console",
    }, knows_provider
    provider = next(
        d
        for d in render(overlay)
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("admin-identity")
    )
    assert provider["data"]["ADMIN_ISSUER"].startswith("https://")


SERVICES = ("identity", "policy", "billing-gateway", "notifier", "edge", "console")
# The services with a database, hence a migration Job (the console keeps no data).
WITH_DATABASE = ("identity", "policy", "billing-gateway", "notifier", "edge")


def _secrets_referenced(pod: dict[str, Any]) -> set[str]:
    """Names of every Secret a pod reads: env, envFrom and volumes."""
    names = set()
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        for env in container.get("env", []):
            reference = env.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                names.add(reference["name"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_deployment_holds_only_its_own_service_key(overlay: str) -> None:
    # A pod that holds a service's private key can speak as that service: each Deployment
    # reads its own key and no other service's, the migration Jobs read none, and the
    # verifiers get public keys only (a ConfigMap, not a Secret).
    key_secrets = {f"{service}-service-key" for service in SERVICES}
    held: dict[str, set[str]] = {}
    for document in render(overlay):
        if document["kind"] not in ("Deployment", "Job"):
            continue
        if document["metadata"]["labels"].get("app.kubernetes.io/part-of") != "askvault":
            continue  # the dev emulators and database
        pod = document["spec"]["template"]["spec"]
        where = f"{document['kind']}/{document['metadata']['name']}"
        held[where] = _secrets_referenced(pod) & key_secrets
        env = {e["name"]: e for c in pod["containers"] for e in c.get("env", [])}
        assert "SERVICE_TOKEN_SECRET" not in env, where
        if document["kind"] == "Job":
            assert not {"SERVICE_SIGNING_KEY", "SERVICE_SIGNING_KEY_FILE"} & set(env), where
            continue
        name = document["metadata"]["name"]
        signing = env["SERVICE_SIGNING_KEY"]["valueFrom"]["secretKeyRef"]
        assert signing["name"] == f"{name}-service-key", where
        if name not in HTTP_SERVERS:  # these serve HTTP and verify no service credential
            public = env["SERVICE_PUBLIC_KEYS"]["valueFrom"]
            assert public["configMapKeyRef"]["name"] == "askvault-service-public-keys", where
            assert "optional" not in public["configMapKeyRef"], where  # the check is on
    assert held == {
        **{f"Deployment/{service}": {f"{service}-service-key"} for service in SERVICES},
        **{f"Job/{service}-migrate": set() for service in WITH_DATABASE},
    }, held


# Where the schema owner's DSN lives, per overlay: only the migration Jobs may reference it.
_OWNER_SECRETS = {
    "prod": "askvault-database-owner",
    "prod-llm": "askvault-database-owner",
    "prod-monitoring": "askvault-database-owner",
    "dev": "askvault-pg-app",
}


def _env(document: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = document["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def _secret(variable: dict[str, Any]) -> str:
    return str(variable.get("valueFrom", {}).get("secretKeyRef", {}).get("name", ""))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migration_jobs_run_as_the_owner_and_services_as_their_own_role(overlay: str) -> None:
    owner = _OWNER_SECRETS[overlay]
    documents = [
        d
        for d in render(overlay)
        if d["kind"] in ("Deployment", "Job")
        and d["metadata"]["labels"].get("app.kubernetes.io/part-of") == "askvault"
    ]
    jobs = [d for d in documents if d["kind"] == "Job"]
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    assert len(jobs) == 5 and len(deployments) == 6
    assert {d["metadata"]["name"] for d in deployments} - {
        j["metadata"]["name"].removesuffix("-migrate") for j in jobs
    } == {"console"}
    for job in jobs:
        variables = {v["name"]: v for v in _env(job)}
        name = job["metadata"]["name"]
        assert _secret(variables["MIGRATION_DATABASE_URL"]) == owner, name
        assert _secret(variables["DATABASE_URL"]) == owner, name
        # The owner's pod never holds the key that would let it recompute the audit chain,
        # nor any other key of the service: `migrate` reads the database settings only.
        assert "AUDIT_MAC_KEYS" not in variables, name
        assert set(variables) == {"MIGRATION_DATABASE_URL", "DATABASE_URL"}, name
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        variables = {v["name"]: v for v in _env(deployment)}
        assert "MIGRATION_DATABASE_URL" not in variables, name
        assert all(_secret(v) != owner for v in variables.values()), name
        if name == "console":  # no database at all
            assert "DATABASE_URL" not in variables
            continue
        url = variables["DATABASE_URL"]
        if overlay == "dev":
            role = name.replace("-", "_")
            assert url["value"].startswith(f"postgresql://askvault_{role}_login:"), name
            assert _secret(variables["DATABASE_PASSWORD"]) == f"askvault-pg-{name}", name
        else:
            assert _secret(url) == f"{name}-secrets", name
    policy = next(d for d in deployments if d["metadata"]["name"] == "policy")
    keys = next(v for v in _env(policy) if v["name"] == "AUDIT_MAC_KEYS")
    assert _secret(keys) == "policy-secrets"


def test_the_dev_database_manages_a_group_and_a_login_role_per_service() -> None:
    cluster = next(d for d in render("dev") if d["kind"] == "Cluster")
    roles = {role["name"]: role for role in cluster["spec"]["managed"]["roles"]}
    for service in ("identity", "policy", "billing_gateway", "notifier", "edge"):
        group = roles[f"askvault_{service}_service"]
        login = roles[f"askvault_{service}_login"]
        assert group["login"] is False
        assert login["login"] is True
        assert login["inRoles"] == [group["name"]]
        assert login["passwordSecret"]["name"] == f"askvault-pg-{service.replace('_', '-')}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grpc_callers_balance_over_every_replica_through_headless_services(overlay: str) -> None:
    """Each *_TARGET is dns:///<service>-headless:<port>: a headless Service selecting the
    callee's pods on its gRPC port, so each caller's channel round-robins its calls over all
    ready replicas (runtime/clients.py) instead of one connection to one ClusterIP."""
    documents = render(overlay)
    services = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Service"}
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    config_maps = [d for d in documents if d["kind"] == "ConfigMap"]
    targets = {
        f"{config['metadata']['name']}/{key}": value
        for config in config_maps
        for key, value in (config.get("data") or {}).items()
        if key.endswith("_TARGET")
    }
    assert len(targets) >= 11, targets
    for where, target in targets.items():
        assert target.startswith("dns:///"), where
        host, port = target.removeprefix("dns:///").rsplit(":", 1)
        assert host.endswith("-headless"), where
        service = services[host]
        assert service["spec"]["clusterIP"] == "None", host
        assert [p["port"] for p in service["spec"]["ports"]] == [int(port)], host
        callee = deployments[host.removesuffix("-headless")]
        pod = callee["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items()), host
        ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
        assert ports[service["spec"]["ports"][0]["targetPort"]] == int(port), host
