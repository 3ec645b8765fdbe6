"""deploy/k8s: built with kustomize, validated against the Kubernetes schemas offline, and checked for the
properties the deployment relies on (probes, drain, disruption budget, autoscaling, secrets, network).

- Schemas: kubernetes-validate (dev extra) bundles the OpenAPI-derived JSON schemas of every Kubernetes
  minor version it supports; ``strict=True`` also rejects unknown fields. Checked against the oldest
  version we support and the newest bundled. The Prometheus Operator's CRDs (ServiceMonitor,
  PrometheusRule) have no bundled schema: they are checked field by field here, and the rules inside the
  PrometheusRule by ``promtool check rules`` (test_deploy_prometheus.py).
- Build: ``kubectl kustomize`` (kubectl embeds kustomize) or a standalone ``kustomize``; a missing binary
  fails the test (``GATEWAY_ALLOW_MISSING_KUSTOMIZE=1`` skips it on a laptop). A small Python rendering of
  kustomization.yaml (resources, configMapGenerator, namespace, images) is checked too, and compared with
  the binary's output, so the properties below are tested on what ``kubectl apply -k`` would send.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.config.loader import parse_settings
from gateway.config.schema import Duration
from tests.deploy.deploy_support import K8S_CONFIG, K8S_DIR, load_yaml, load_yaml_docs

OLDEST_SUPPORTED = "1.30.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
CLUSTER_SCOPED = {"Namespace"}
NAMESPACE = "llm-gateway"
POD_LABELS = {"app.kubernetes.io/name": "llm-gateway", "app.kubernetes.io/component": "gateway"}
HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


def kustomization() -> dict[str, Any]:
    document = load_yaml(K8S_DIR / "kustomization.yaml")
    assert document["kind"] == "Kustomization"
    return document


def mini_build() -> list[dict[str, Any]]:
    """What ``kustomize build deploy/k8s`` makes of this kustomization (the features it uses)."""
    spec = kustomization()
    allowed = {
        "apiVersion",
        "kind",
        "namespace",
        "resources",
        "configMapGenerator",
        "generatorOptions",
        "images",
    }
    assert set(spec) <= allowed, f"update mini_build for {set(spec) - allowed}"
    docs: list[dict[str, Any]] = []
    for resource in spec["resources"]:
        path = K8S_DIR / resource
        assert path.is_file(), f"resource {resource} does not exist"
        assert path.resolve().is_relative_to(K8S_DIR), "kustomize loads no file outside deploy/k8s"
        loaded = load_yaml_docs(path)
        assert loaded, f"{resource} is empty"
        docs.extend(loaded)
    labels = spec.get("generatorOptions", {}).get("labels", {})
    for generator in spec.get("configMapGenerator", []):
        data = {}
        for entry in generator["files"]:
            key, _, rel = entry.rpartition("=") if "=" in entry else (Path(entry).name, "", entry)
            path = K8S_DIR / rel
            assert path.is_file(), f"configMapGenerator file {rel} does not exist"
            data[key] = path.read_text(encoding="utf-8")
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"], "labels": dict(labels)},
                "data": data,
            }
        )
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = spec["namespace"]
    images = {i["name"]: i for i in spec.get("images", [])}
    for doc in docs:
        for container in pod_spec(doc).get("containers", []) if doc["kind"] == "Deployment" else []:
            name = container["image"].split(":")[0]
            if name in images:
                new = images[name]
                container["image"] = f"{new.get('newName', name)}:{new['newTag']}"
    return docs


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    result = {}
    for doc in docs:
        assert doc["kind"] not in result, f"two {doc['kind']} objects: extend the tests"
        result[doc["kind"]] = doc
    return result


@pytest.fixture(scope="module")
def built() -> dict[str, dict[str, Any]]:
    return by_kind(mini_build())


@pytest.fixture(scope="module")
def gateway_container(built) -> dict[str, Any]:
    containers = pod_spec(built["Deployment"])["containers"]
    assert [c["name"] for c in containers] == ["gateway"]
    container: dict[str, Any] = containers[0]
    return container


def secret_template() -> list[dict[str, Any]]:
    return load_yaml_docs(K8S_DIR / "secret.example.yaml")


# ---- schemas --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [OLDEST_SUPPORTED, kubernetes_validate.latest_version()])
def test_manifests_match_the_kubernetes_schemas(version: str) -> None:
    docs = mini_build() + secret_template()
    checked = set()
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} ({version}): {exc}")
        checked.add(doc["kind"])
    expected = {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Secret",
    }
    assert checked == expected


def test_schema_validation_has_teeth(built) -> None:
    """A misspelled field and a wrong type are caught (strict mode), so the test above means something."""
    deployment = copy.deepcopy(built["Deployment"])
    pod_spec(deployment)["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/ready"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST_SUPPORTED, strict=True)
    hpa = copy.deepcopy(built["HorizontalPodAutoscaler"])
    hpa["spec"]["minReplicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, OLDEST_SUPPORTED, strict=True)


def test_servicemonitor_structure(built) -> None:
    monitor = built["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= {"jobLabel", "selector", "endpoints", "namespaceSelector"}
    assert spec["selector"]["matchLabels"].items() <= built["Service"]["metadata"]["labels"].items()
    service_ports = {p["name"] for p in built["Service"]["spec"]["ports"]}
    assert spec["endpoints"], "at least one endpoint"
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert endpoint["port"] in service_ports
        assert endpoint["path"] == "/metrics"
        assert re.fullmatch(r"\d+s", endpoint["interval"])
        assert Duration.parse(endpoint["scrapeTimeout"]) <= Duration.parse(endpoint["interval"])
    assert spec["jobLabel"] in built["Service"]["metadata"]["labels"]


def test_prometheusrule_structure(built) -> None:
    rule = built["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(rule["spec"]) == {"groups"}
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        assert group["name"] and group["rules"]
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item)
            assert set(item) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert isinstance(item["expr"], str) and item["expr"].strip()
            if "for" in item:
                Duration.parse(item["for"])
            for mapping in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in item.get(mapping, {}).values())


def test_prometheusrule_is_generated_from_alerts_yml() -> None:
    import runpy

    generator = runpy.run_path(str(K8S_DIR / "generate_prometheusrule.py"))
    expected = generator["render"]()
    actual = (K8S_DIR / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert actual == expected, "run: python deploy/k8s/generate_prometheusrule.py"
    alerts = load_yaml(K8S_DIR.parent / "prometheus" / "alerts.yml")
    assert yaml.safe_load(actual)["spec"]["groups"] == alerts["groups"]


# ---- kustomize ------------------------------------------------------------------------------------------


def kustomize_command() -> list[str]:
    kubectl, kustomize = shutil.which("kubectl"), shutil.which("kustomize")
    if kubectl:
        return [kubectl, "kustomize", str(K8S_DIR)]
    if kustomize:
        return [kustomize, "build", str(K8S_DIR)]
    message = (
        "neither kubectl nor kustomize is on PATH (Debian: apt-get install kubernetes-client; "
        "or a kustomize release)"
    )
    if os.environ.get("GATEWAY_ALLOW_MISSING_KUSTOMIZE") == "1":
        pytest.skip(f"{message}; skipped because GATEWAY_ALLOW_MISSING_KUSTOMIZE=1")
    pytest.fail(
        f"{message}, or set GATEWAY_ALLOW_MISSING_KUSTOMIZE=1 to skip this check on a laptop"
    )


def test_kustomize_builds_what_the_tests_check(tmp_path) -> None:
    # No cluster, no network: HOME and KUBECONFIG point at an empty directory.
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    env["KUBECONFIG"] = str(tmp_path / "none")
    result = subprocess.run(
        kustomize_command(), capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    output = [d for d in yaml.safe_load_all(result.stdout) if d]
    expected = mini_build()

    def identity(doc: dict[str, Any]) -> tuple[str, str, str | None]:
        name = doc["metadata"]["name"]
        if doc["kind"] == "ConfigMap":
            name = HASH_SUFFIX.sub("", name)
        return doc["kind"], name, doc["metadata"].get("namespace")

    assert sorted(map(identity, output)) == sorted(map(identity, expected))
    for doc in output:
        if doc["kind"] not in CRD_KINDS:
            kubernetes_validate.validate(doc, OLDEST_SUPPORTED, strict=True)
    built, rendered = by_kind(output), by_kind(expected)
    config_map = built["ConfigMap"]["metadata"]["name"]
    assert HASH_SUFFIX.search(config_map), "a content hash, so a config change rolls the pods"
    volumes = {v["name"]: v for v in pod_spec(built["Deployment"])["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map
    assert built["ConfigMap"]["data"] == rendered["ConfigMap"]["data"]
    # Apart from that hash, kustomize's objects are the ones the other tests check.
    volumes["config"]["configMap"]["name"] = HASH_SUFFIX.sub("", config_map)
    for kind, doc in built.items():
        assert doc.get("spec") == rendered[kind].get("spec"), kind


def test_every_object_lands_in_the_namespace(built) -> None:
    assert kustomization()["namespace"] == NAMESPACE
    assert built["Namespace"]["metadata"]["name"] == NAMESPACE
    labels = built["Namespace"]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    for kind, doc in built.items():
        if kind not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == NAMESPACE


def test_secret_template_is_not_applied_and_holds_no_value() -> None:
    resources = kustomization()["resources"]
    assert "secret.example.yaml" not in resources
    for doc in secret_template():
        assert doc["kind"] == "Secret"
        assert "data" not in doc, "stringData only, so placeholders stay readable"
        for key, value in doc["stringData"].items():
            assert "REPLACE_ME" in value, f"{doc['metadata']['name']}.{key} holds a value"


# ---- what the Deployment promises --------------------------------------------------------------------


def test_labels_and_selectors_agree(built) -> None:
    deployment = built["Deployment"]
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == POD_LABELS
    assert POD_LABELS.items() <= template_labels.items()
    assert built["Service"]["spec"]["selector"] == POD_LABELS
    assert built["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == POD_LABELS
    assert built["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"] == POD_LABELS
    target = built["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert pod_spec(deployment)["serviceAccountName"] == built["ServiceAccount"]["metadata"]["name"]


def test_replicas_rollout_and_disruption(built) -> None:
    spec = built["Deployment"]["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pdb = built["PodDisruptionBudget"]["spec"]
    assert pdb["minAvailable"] == 2
    hpa = built["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 10)
    assert pdb["minAvailable"] < hpa["minReplicas"], "a node drain can always evict one pod"
    [metric] = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


def test_probes(gateway_container) -> None:
    def probe(name: str) -> dict[str, Any]:
        found: dict[str, Any] = gateway_container[name]
        assert found["httpGet"]["port"] == "http"
        return found

    assert probe("readinessProbe")["httpGet"]["path"] == "/ready"
    assert probe("livenessProbe")["httpGet"]["path"] == "/health"
    startup = probe("startupProbe")
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30
    ports = {p["name"]: p["containerPort"] for p in gateway_container["ports"]}
    assert ports == {"http": 8080}


def test_graceful_shutdown_budget(built, gateway_container) -> None:
    """preStop sleep + shutdownDelay + drainTimeout < terminationGracePeriodSeconds: nothing in flight
    is killed. After SIGTERM the gateway answers /ready with 503 for server.shutdownDelay, then stops
    accepting and lets in-flight requests (streams included) finish within server.drainTimeout."""
    raw = load_yaml(K8S_CONFIG)
    raw["auth"]["clientKeysFile"] = None
    env = {"GATEWAY_STORAGE_URL": "postgresql+asyncpg://u:p@db/gw", "GATEWAY_CLIENT_KEY": "k"}
    server = parse_settings(raw, env, source=str(K8S_CONFIG)).server
    command = gateway_container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    assert pre_stop >= 3, "long enough for endpoint removal to reach kube-proxy and ingresses"
    grace = pod_spec(built["Deployment"])["terminationGracePeriodSeconds"]
    assert grace >= pre_stop + server.shutdown_delay + server.drain_timeout + 5


def test_security_context(built, gateway_container) -> None:
    pod = pod_spec(built["Deployment"])["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    container = gateway_container["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert pod_spec(built["Deployment"])["automountServiceAccountToken"] is False
    mounts = {m["mountPath"]: m["name"] for m in gateway_container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(built["Deployment"])["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "a writable /tmp on a read-only root"
    writable = [m for m in gateway_container["volumeMounts"] if not m.get("readOnly")]
    assert [m["mountPath"] for m in writable] == ["/tmp"]


def test_resources(gateway_container) -> None:
    resources = gateway_container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}


def test_config_secrets_and_mounts(built, gateway_container) -> None:
    args = gateway_container["args"]
    config_path = Path(args[args.index("--config") + 1])
    mounts = {m["name"]: m["mountPath"] for m in gateway_container["volumeMounts"]}
    assert str(config_path.parent) == mounts["config"]
    assert config_path.name in built["ConfigMap"]["data"]
    template = {d["metadata"]["name"]: d for d in secret_template()}
    env_secrets = [e["secretRef"]["name"] for e in gateway_container["envFrom"]]
    assert env_secrets == ["llm-gateway-secrets"]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in gateway_container["env"]
        if "valueFrom" in e
    }
    assert set(refs) == {"GATEWAY_STORAGE_URL", "GATEWAY_ADMIN_TOKEN", "GATEWAY_CLIENT_KEY"}
    for ref in refs.values():
        assert ref["key"] in template[ref["name"]]["stringData"]
    config = load_yaml(K8S_CONFIG)
    assert config["auth"]["adminTokenEnv"] in refs
    assert {k["keyEnv"] for k in config["auth"]["clientKeys"]} <= set(refs)
    assert config["storage"]["url"] == "${GATEWAY_STORAGE_URL}"
    keys_file = Path(config["auth"]["clientKeysFile"])
    volumes = {v["name"]: v for v in pod_spec(built["Deployment"])["volumes"]}
    assert str(keys_file.parent) == mounts["client-keys"]
    secret_name = volumes["client-keys"]["secret"]["secretName"]
    assert keys_file.name in template[secret_name]["stringData"]


def test_service(built) -> None:
    spec = built["Service"]["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]


def test_network_policy(built) -> None:
    spec = built["NetworkPolicy"]["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = spec["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 8080}]
    namespaces = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in ingress["from"]
        if "namespaceSelector" in peer
    }
    assert namespaces == {"ingress-nginx", "monitoring"}
    assert {"podSelector": {}} in ingress["from"], "clients in the same namespace"
    egress_ports = sorted(
        {(p["protocol"], p["port"]) for rule in spec["egress"] for p in rule["ports"]}
    )
    assert egress_ports == [("TCP", 53), ("TCP", 443), ("TCP", 5432), ("UDP", 53)]
