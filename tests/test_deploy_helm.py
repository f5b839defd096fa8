"""The Helm chart, rendered by real Helm (helm-python-sdk binds Helm's Go SDK), each
manifest validated against the Kubernetes JSON schemas (kubernetes-validate, strict),
and the ConfigMap's YAML loaded by spendwatch's own config loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (test extra) renders the chart")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from spendwatch.config import load_settings  # noqa: E402

CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "spendwatch"
#: The oldest Kubernetes the chart declares (Chart.yaml kubeVersion) and the newest schemas shipped.
KUBE_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
REQUIRED = {"kafka": {"bootstrapServers": "kafka-0.kafka:9092"}, "clickhouse": {"url": "https://clickhouse:8443"}}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Render the chart with ``values`` over REQUIRED; every Kubernetes object, in order."""
    merged = _merge(REQUIRED, values or {})
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(merged, name="sw", namespace="spend")
    docs = []
    for name, text in sorted(files.items()):
        if not name.endswith((".yaml", ".yml")):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


@pytest.fixture(scope="module")
def default_docs() -> list[dict]:
    return render()


def test_every_manifest_is_valid_kubernetes(default_docs):
    variants = [
        default_docs,
        render({"worker": {"persistence": {"enabled": False}, "podDisruptionBudget": {"enabled": False}},
                "ingest": {"enabled": False}, "pager": {"enabled": False}, "migrations": {"enabled": False},
                "serviceAccount": {"create": False}, "metrics": {"annotations": False}}),
        render({"secrets": {"existingSecret": "spend-secrets", "env": {"SLACK_BOT_TOKEN": {"name": "slack", "key": "t"}}},
                "extraEnv": [{"name": "LOG_LEVEL", "value": "debug"}], "imagePullSecrets": [{"name": "regcred"}],
                "nodeSelector": {"pool": "stream"}, "worker": {"persistence": {"storageClass": "fast-ssd"}}}),
    ]
    for docs in variants:
        assert docs
        for doc in docs:
            for version in KUBE_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_would_catch_a_broken_manifest(default_docs):
    worker = dict(by_kind(default_docs, "StatefulSet")["sw-spendwatch-worker"])
    worker["spec"] = {**worker["spec"], "replicas": "two"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBE_VERSIONS[-1], strict=True)


def test_configmap_is_a_valid_spendwatch_config(default_docs, tmp_path):
    cm = by_kind(default_docs, "ConfigMap")["sw-spendwatch"]
    path = tmp_path / "spendwatch.yaml"
    path.write_text(cm["data"]["spendwatch.yaml"])
    settings = load_settings(path)
    assert settings.kafka.bootstrap_servers == "kafka-0.kafka:9092"
    assert settings.clickhouse.url == "https://clickhouse:8443"
    assert settings.streams.web_host == "0.0.0.0"
    assert str(settings.data_dir) == "/var/lib/spendwatch"


def test_user_config_is_merged_into_the_configmap(tmp_path):
    docs = render({"config": {"streams": {"partitions": 24}, "kafka": {"topics": {"raw": "gateway-events"}}}})
    text = by_kind(docs, "ConfigMap")["sw-spendwatch"]["data"]["spendwatch.yaml"]
    path = tmp_path / "spendwatch.yaml"
    path.write_text(text)
    settings = load_settings(path)
    assert settings.streams.partitions == 24
    assert settings.kafka.topics.raw == "gateway-events"
    assert settings.kafka.bootstrap_servers == "kafka-0.kafka:9092"  # chart-set keys survive the merge


def test_missing_kafka_or_clickhouse_fails_with_a_clear_message():
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(Exception, match="kafka.bootstrapServers is required"):
            chart.render({"clickhouse": REQUIRED["clickhouse"]}, name="sw", namespace="spend")
        with pytest.raises(Exception, match="clickhouse.url is required"):
            chart.render({"kafka": REQUIRED["kafka"]}, name="sw", namespace="spend")


def test_workers_keep_rocksdb_state_on_a_persistent_volume(default_docs):
    worker = by_kind(default_docs, "StatefulSet")["sw-spendwatch-worker"]
    claims = {c["metadata"]["name"]: c for c in worker["spec"]["volumeClaimTemplates"]}
    assert claims["state"]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    mounts = {m["name"]: m["mountPath"] for m in containers(worker)[0]["volumeMounts"]}
    assert mounts["state"] == "/var/lib/spendwatch"
    assert containers(worker)[0]["args"][0] == "worker"
    assert worker["spec"]["serviceName"] in by_kind(default_docs, "Service")


def test_every_long_running_pod_is_probed_and_scraped(default_docs):
    workloads = {**by_kind(default_docs, "StatefulSet"), **by_kind(default_docs, "Deployment")}
    assert {n.removeprefix("sw-spendwatch-") for n in workloads} == {"worker", "ingest", "pager", "sink"}
    for name, doc in workloads.items():
        (container,) = containers(doc)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, name
            assert get["port"] in ports, f"{name}: {probe} targets an undeclared port"
        annotations = doc["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        assert int(annotations["prometheus.io/port"]) in ports.values(), name


def test_secrets_are_only_referenced_never_created():
    docs = render({"secrets": {"existingSecret": "spend-secrets",
                               "env": {"PAGERDUTY_ROUTING_KEY": {"name": "pd", "key": "routing-key"}}}})
    assert not by_kind(docs, "Secret")
    workloads = [*by_kind(docs, "StatefulSet").values(), *by_kind(docs, "Deployment").values(), *by_kind(docs, "Job").values()]
    for doc in workloads:
        (container,) = containers(doc)
        assert container["envFrom"] == [{"secretRef": {"name": "spend-secrets"}}]
        env = {e["name"]: e for e in container["env"]}
        assert env["PAGERDUTY_ROUTING_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "pd", "key": "routing-key"}
        assert all("value" not in e or e["name"] in {"SPENDWATCH_HOME"} for e in container["env"])


def test_config_change_rolls_the_pods():
    def checksum(docs: list[dict]) -> str:
        worker = by_kind(docs, "StatefulSet")["sw-spendwatch-worker"]
        return worker["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum(render()) != checksum(render({"config": {"streams": {"partitions": 16}}}))


def test_migrations_run_as_a_hook_with_their_own_config(default_docs):
    job = by_kind(default_docs, "Job")["sw-spendwatch-migrate"]
    assert "pre-upgrade" in job["metadata"]["annotations"]["helm.sh/hook"]
    assert containers(job)[0]["args"][:2] == ["db", "migrate"]
    volume = next(v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    hook_cm = by_kind(default_docs, "ConfigMap")[volume["configMap"]["name"]]
    assert "helm.sh/hook" in hook_cm["metadata"]["annotations"]  # exists before the Job runs


def test_chart_lints_clean_in_strict_mode():
    report = helm.lint(str(CHART), REQUIRED, strict=True, kube_version=f"v{KUBE_VERSIONS[0]}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []  # 2 = warning, 3 = error


def test_values_schema_rejects_typos_and_bad_types():
    with helm.Chart.load(str(CHART)) as chart:
        for bad, where in (({"wroker": {"replicas": 3}}, "wroker"), ({"worker": {"replicas": "three"}}, "replicas"),
                           ({"clickhouse": {"url": "clickhouse:8123"}}, "url")):
            with pytest.raises(Exception, match=where):
                chart.render(_merge(REQUIRED, bad), name="sw", namespace="spend")
