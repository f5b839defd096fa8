"""docker-compose stack, Dockerfile, Prometheus and Grafana provisioning: validated
without a Docker engine (Compose Specification JSON schema, spendwatch's config loader,
pip's resolver against the pinned constraints)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

from spendwatch.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
SPENDWATCH_SERVICES = {"worker-1", "worker-2", "ingest", "sink", "pager", "migrate"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def compose_schema() -> dict:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def test_every_yaml_file_under_deploy_parses():
    files = [p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"} and "templates" not in p.parts]
    assert COMPOSE in files
    for path in files:
        list(yaml.safe_load_all(path.read_text()))


def test_compose_file_matches_the_compose_specification(compose):
    jsonschema.Draft7Validator(compose_schema()).validate(compose)


def test_compose_schema_check_catches_a_typo(compose):
    broken = json.loads(json.dumps(compose))
    broken["services"]["kafka"]["healthchek"] = broken["services"]["kafka"].pop("healthcheck")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(compose_schema()).validate(broken)


def test_compose_runs_apache_kafka_in_kraft_mode(compose):
    kafka = compose["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    # Transactions (exactly_once) need the transaction log to be creatable on one broker.
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1


def test_kafka_keeps_its_log_on_the_mounted_volume(compose):
    """apache/kafka writes to /tmp/kraft-combined-logs unless told: recreating the container lost every topic."""
    kafka = compose["services"]["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"].split(",")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in kafka["volumes"]}
    for log_dir in log_dirs:
        assert log_dir in mounts and mounts[log_dir] in compose["volumes"], (log_dir, mounts)


def test_ingest_starts_with_the_optional_tokens_empty_and_requires_them_once_set(monkeypatch):
    """.env.example calls SPENDWATCH_INGEST_TOKENS optional: empty, ingest serves without auth (loudly, on the
    host's loopback only by default) instead of restart-looping; set, the tokens are required."""
    from spendwatch.streams.ingest.server import load_tokens, unauthenticated_warning

    settings = load_settings(DEPLOY / "docker" / "spendwatch.yaml")
    env_example = (DEPLOY / "docker" / ".env.example").read_text()
    assert re.search(r"^SPENDWATCH_INGEST_TOKENS=$", env_example, re.MULTILINE)
    monkeypatch.setenv("SPENDWATCH_INGEST_TOKENS", "")
    assert load_tokens(settings) is None
    assert "NO AUTHENTICATION" in unauthenticated_warning(settings, "http://0.0.0.0:8787")
    monkeypatch.setenv("SPENDWATCH_INGEST_TOKENS", "litellm=s3cret-token-1")
    assert load_tokens(settings).gateway_for("Bearer s3cret-token-1") == "litellm"


def test_unauthenticated_ingest_is_published_on_loopback_by_default(compose):
    [port] = compose["services"]["ingest"]["ports"]
    assert port.startswith("${SPENDWATCH_INGEST_BIND:-127.0.0.1}:")


def test_compose_services_wait_for_healthy_dependencies_and_use_the_config(compose):
    services = compose["services"]
    assert SPENDWATCH_SERVICES <= set(services)
    for name in SPENDWATCH_SERVICES:
        svc = services[name]
        assert "--config" in svc["command"], name
        assert any(v.endswith(":/etc/spendwatch/spendwatch.yaml:ro") for v in svc["volumes"]), name
        deps = svc["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy", name
        assert deps["clickhouse"]["condition"] == "service_healthy", name
    # Each worker keeps its RocksDB state on its own named volume.
    state = [v for w in ("worker-1", "worker-2") for v in services[w]["volumes"] if v.endswith(":/var/lib/spendwatch")]
    assert len(set(state)) == 2
    for v in state:
        assert v.split(":")[0] in compose["volumes"]


def test_compose_secrets_come_from_the_environment(compose):
    text = COMPOSE.read_text()
    assert re.search(r"^\s*\w*(PASSWORD|TOKEN|KEY)\w*:\s*[^$\s]", text, re.MULTILINE) is None, "a literal password in docker-compose.yml"
    for name in SPENDWATCH_SERVICES:
        env = compose["services"][name]["environment"]
        assert env["CLICKHOUSE_PASSWORD"].startswith("${CLICKHOUSE_PASSWORD")


def test_compose_spendwatch_config_loads_and_points_at_the_stack(compose, tmp_path):
    settings = load_settings(DEPLOY / "docker" / "spendwatch.yaml")
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.clickhouse.url == "http://clickhouse:8123"
    assert settings.clickhouse.username == compose["services"]["clickhouse"]["environment"]["CLICKHOUSE_USER"]
    assert settings.streams.web_host == "0.0.0.0"
    ingest_ports = compose["services"]["ingest"]["ports"]
    assert any(p.endswith(f":{settings.ingest.port}") for p in ingest_ports)


def test_prometheus_scrapes_every_spendwatch_service(compose):
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t.split(":")[0] for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == SPENDWATCH_SERVICES - {"migrate"}
    assert targets <= set(compose["services"])


def test_grafana_provisioning_points_at_the_mounted_dashboards(compose):
    grafana = compose["services"]["grafana"]
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in grafana["volumes"] if v.startswith("./"))
    providers = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/spendwatch.yaml").read_text())["providers"]
    dashboards_in_container = providers[0]["options"]["path"]
    host_dir = next(h for h, c in mounts.items() if c == dashboards_in_container)
    assert list((DEPLOY / host_dir).glob("*.json")), "no dashboard JSON where the provider looks"
    sources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/clickhouse.yaml").read_text())["datasources"]
    clickhouse = next(s for s in sources if s["type"] == "grafana-clickhouse-datasource")
    assert clickhouse["jsonData"]["host"] in compose["services"]
    assert clickhouse["secureJsonData"]["password"].startswith("$")  # from the environment


# --- Dockerfile -----------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_copies_only_files_that_exist_and_the_ignore_file_keeps_them():
    ignore = (DEPLOY / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for word, rest in _dockerfile_instructions():
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _ = shlex.split(rest)
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
                assert src.rstrip("/") in kept, f"COPY {src}: excluded by Dockerfile.dockerignore"


def test_dockerfile_python_matches_the_project_and_runs_unprivileged():
    args = dict(rest.split("=", 1) for word, rest in _dockerfile_instructions() if word == "ARG" and "=" in rest)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f">={args['PYTHON_VERSION']}" in pyproject
    users = [rest for word, rest in _dockerfile_instructions() if word == "USER"]
    assert users and not users[-1].startswith(("0", "root"))


def _dockerfile_pip_install() -> list[str]:
    runs = [rest for word, rest in _dockerfile_instructions() if word == "RUN" and "pip install" in rest]
    assert len(runs) == 1, "one pip install in the Dockerfile"
    argv = shlex.split(runs[0].split("&&")[-1].strip())
    assert argv[:2] == ["/opt/spendwatch/bin/pip", "install"]
    return argv[2:]


def test_dockerfile_installs_with_the_pinned_constraints_and_every_dependency_is_pinned():
    """The image installs '.[rocksdb]' with -c constraints.txt; every package that pulls in is pinned.

    Walks the installed dependency tree (this environment is installed from the same
    constraints) from spendwatch's own requirements plus the extras the Dockerfile asks for.
    """
    from importlib.metadata import PackageNotFoundError, distribution

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    args = _dockerfile_pip_install()
    assert "-c" in args and args[args.index("-c") + 1] == "constraints.txt"
    target = next(a for a in args if a.startswith(".["))
    extras = set(target[2:-1].split(","))
    assert "rocksdb" in extras  # worker state on the volume
    pins = {
        canonicalize_name(line.split("==", 1)[0]): line.split("==", 1)[1].strip()
        for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line and not line.startswith("#")
    }
    seen: set[str] = set()
    todo = [(Requirement(r), extras) for r in distribution("spendwatch").requires or []]
    while todo:
        req, active = todo.pop()
        if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (active or {""})):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        assert name in pins, f"{req.name} (needed by the image) is not pinned in constraints.txt"
        try:
            dist = distribution(req.name)
        except PackageNotFoundError:
            pytest.fail(f"{req.name} is not installed: the environment does not match constraints.txt")
        assert dist.version == pins[name], f"{req.name}: installed {dist.version}, pinned {pins[name]}"
        todo += [(Requirement(r), set(req.extras)) for r in dist.requires or []]
    assert {"faust-streaming", "rocksdict", "clickhouse-connect", "noida-db"} <= seen


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SPENDWATCH_PIP_RESOLVE"),
                    reason="resolving against the index takes minutes; set SPENDWATCH_PIP_RESOLVE=1")
def test_dockerfile_install_resolves_against_the_index(tmp_path):
    """pip's own resolver, as a dry run of the Dockerfile's command (minutes: opt-in)."""
    args = [str(ROOT / a) if a == "constraints.txt" else a.replace(".[", f"{ROOT}[", 1) if a.startswith(".[") else a
            for a in _dockerfile_pip_install()]
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                             *args], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]