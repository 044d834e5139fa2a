"""Deployment files: compose.yaml, deploy/Dockerfile, deploy/prometheus.yml, deploy/alerts.yml,
deploy/grafana (provisioning and dashboard).

compose.yaml is checked with Debian's ``docker-compose config`` (package ``docker-compose``)
and the Prometheus files with ``promtool`` (package ``prometheus``). Neither needs a Docker
engine or a running Prometheus. A missing tool fails the test with the install command.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core.settings import Settings, load_settings

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS = ROOT / "deploy" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "alerts.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "astrostream.json"

SERVICES = {"kafka", "qdrant", "worker", "ingest", "prometheus", "grafana"}
VOLUMES = {
    "kafka-data",
    "qdrant-storage",
    "models",
    "ingest-data",
    "prometheus-data",
    "grafana-data",
}
PRODUCTION_BROKER_TIMEOUTS = {
    "ASTRO_BROKER_SESSION_TIMEOUT": "30",
    "ASTRO_BROKER_HEARTBEAT_INTERVAL": "3",
    "ASTRO_BROKER_REBALANCE_TIMEOUT": "60",
}


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed. Install Debian's `{package}` package: "
            f"`apt-get update && apt-get install -y {package}` (the Makefile does this).",
            pytrace=False,
        )
    return path


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@functools.cache
def _compose_config(overrides: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """``docker-compose config`` of compose.yaml, isolated from the caller's env and .env."""
    binary = _tool("docker-compose", "docker-compose")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    env.update(overrides)
    # An empty --env-file: a developer's .env must not change what is checked.
    with tempfile.TemporaryDirectory() as tmp:
        env_file = Path(tmp) / "empty.env"
        env_file.touch()
        proc = _run([binary, "--env-file", str(env_file), "-f", str(COMPOSE), "config"], env=env)
    assert proc.returncode == 0, f"docker-compose config failed:\n{proc.stderr}\n{proc.stdout}"
    config = yaml.safe_load(proc.stdout)
    assert isinstance(config, dict)
    return config


def _service(name: str, **overrides: str) -> dict[str, Any]:
    services = _compose_config(tuple(sorted(overrides.items())))["services"]
    assert name in services, f"compose.yaml has no service {name!r}"
    return services[name]


def _env(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # "KEY=VALUE" form
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return env


def _volume_targets(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (named volume or host path), for short or long syntax."""
    targets: dict[str, str] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source", ""), volume["target"]
        targets[target] = source
    return targets


def _healthcheck_text(service: dict[str, Any]) -> str:
    test = service.get("healthcheck", {}).get("test")
    assert test, "no healthcheck"
    return test if isinstance(test, str) else " ".join(test)


# compose.yaml ---------------------------------------------------------------------------------


def test_compose_config_is_valid() -> None:
    config = _compose_config()
    assert set(config["services"]) >= SERVICES
    assert set(config.get("volumes") or {}) >= VOLUMES


def test_worker_service() -> None:
    worker = _service("worker")
    assert worker["command"] == ["worker", "--roles", "embed,alerts,api"]
    assert Path(worker["build"]["context"]).resolve() == ROOT
    assert worker["build"]["dockerfile"] == "deploy/Dockerfile"
    assert worker["restart"] == "unless-stopped"
    env = _env(worker)
    assert env["ASTRO_KAFKA_URL"] == "kafka://kafka:9092"
    assert env["ASTRO_QDRANT_URL"] == "http://qdrant:6333"
    assert env["ASTRO_WEB_HOST"] == "0.0.0.0"
    assert env["ASTRO_DEVICE"] == "auto"
    assert env["ASTRO_ROLES"] == "embed,alerts,api"
    assert env["ASTRO_MODEL"] == "adsabs/astroBERT"
    for key, value in PRODUCTION_BROKER_TIMEOUTS.items():
        assert str(env[key]) == value, key
    # Pass-through variables stay unset when the caller does not set them.
    assert env.get("ASTRO_API_TOKEN") is None
    assert env.get("ASTRO_MODEL_VERSION") is None
    assert _volume_targets(worker)["/models"] == "models"
    assert {name: dep["condition"] for name, dep in worker["depends_on"].items()} == {
        "kafka": "service_healthy",
        "qdrant": "service_healthy",
    }


def test_worker_reserves_one_nvidia_gpu() -> None:
    devices = _service("worker")["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    device = devices[0]
    assert device["driver"] == "nvidia"
    assert int(device["count"]) == 1
    assert device["capabilities"] == ["gpu"]


def test_compose_interpolates_model_and_image_settings() -> None:
    worker = _service("worker", ASTRO_MODEL="/models/astro-sbert-v2", TORCH_VERSION="2.13.0")
    assert _env(worker)["ASTRO_MODEL"] == "/models/astro-sbert-v2"
    assert worker["build"]["args"]["TORCH_VERSION"] == "2.13.0"
    default_index = _service("worker")["build"]["args"]["TORCH_INDEX"]
    assert default_index.startswith("https://download.pytorch.org/whl/cu12")


def test_ingest_service() -> None:
    ingest, worker = _service("ingest"), _service("worker")
    assert ingest["command"] == ["ingest", "--metrics-port", "6066"]
    assert ingest["image"] == worker["image"]
    assert ingest["build"]["dockerfile"] == "deploy/Dockerfile"
    env = _env(ingest)
    assert env["ASTRO_ROLES"] == "ingest"
    assert env["ASTRO_KAFKA_URL"] == "kafka://kafka:9092"
    assert env["ASTRO_DATA_DIR"] == "/data"
    assert _volume_targets(ingest)["/data"] == "ingest-data"
    assert ingest["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "deploy" not in ingest, "ingest does not embed: no GPU reservation"


def test_kafka_service_is_single_node_kraft() -> None:
    kafka = _service("kafka")
    assert kafka["image"].startswith("apache/kafka:3.")
    env = _env(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_LISTENERS"] == "PLAINTEXT://:9092,CONTROLLER://:9093"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"
    assert len(env["CLUSTER_ID"]) == 22, "CLUSTER_ID must be a base64 UUID"
    assert _volume_targets(kafka)[env["KAFKA_LOG_DIRS"]] == "kafka-data"
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in _healthcheck_text(kafka)


def test_qdrant_service() -> None:
    qdrant = _service("qdrant")
    assert qdrant["image"].startswith("qdrant/qdrant:v1.15.")
    assert _volume_targets(qdrant)["/qdrant/storage"] == "qdrant-storage"
    assert any(str(p.get("target", p)).endswith("6333") for p in qdrant["ports"])
    assert "6333" in _healthcheck_text(qdrant)


def test_prometheus_service_mounts_the_config() -> None:
    prometheus = _service("prometheus")
    assert prometheus["image"].startswith("prom/prometheus:")
    mounts = _volume_targets(prometheus)
    assert Path(mounts["/etc/prometheus/prometheus.yml"]).resolve() == PROMETHEUS
    assert Path(mounts["/etc/prometheus/alerts.yml"]).resolve() == ALERTS
    assert mounts["/prometheus"] == "prometheus-data"
    assert any(str(p.get("target", p)).endswith("9090") for p in prometheus["ports"])


@pytest.mark.parametrize("name", ["worker", "ingest"])
def test_compose_environment_is_valid_configuration(name: str) -> None:
    """Every ASTRO_* variable in compose.yaml is a real setting with a valid value."""
    env = {k: v for k, v in _env(_service(name)).items() if k.startswith("ASTRO_") and v}
    fields = {key.removeprefix("ASTRO_").lower(): value for key, value in env.items()}
    unknown = sorted(set(fields) - set(Settings.model_fields))
    assert not unknown, f"compose.yaml sets unknown variables: {unknown}"
    settings = load_settings(**fields)
    assert settings.broker_session_timeout == 30.0
    assert settings.broker_heartbeat_interval == 3.0
    assert settings.broker_rebalance_timeout == 60.0
    assert settings.bootstrap_servers == "kafka:9092"
    assert settings.web_port == 6066


# Prometheus -----------------------------------------------------------------------------------


def test_promtool_check_config() -> None:
    promtool = _tool("promtool", "prometheus")
    proc = _run([promtool, "check", "config", str(PROMETHEUS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 rule files found" in proc.stdout + proc.stderr


def test_promtool_check_rules() -> None:
    promtool = _tool("promtool", "prometheus")
    proc = _run([promtool, "check", "rules", str(ALERTS)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_scrapes_every_worker_replica() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    assert config["global"]["scrape_interval"] == "15s"
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker = jobs["astrostream"]
    assert worker.get("metrics_path", "/metrics") == "/metrics"
    assert worker["dns_sd_configs"] == [
        {"names": ["worker"], "type": "A", "port": 6066, "refresh_interval": "30s"}
    ]
    ingest_sd = [sd for job in jobs.values() for sd in job.get("dns_sd_configs", [])]
    assert any(sd["names"] == ["ingest"] and sd["port"] == 6066 for sd in ingest_sd)


def test_alert_rules_use_the_service_metrics() -> None:
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    exprs = " ".join(rule["expr"] for rule in rules)
    for metric in (
        "up{",
        "astrostream_deadletters_total",
        "astrostream_consumer_lag",
        "astrostream_ingest_last_success_timestamp_seconds",
    ):
        assert metric in exprs
    assert all(rule["labels"]["severity"] in {"warning", "critical"} for rule in rules)
    assert {rule["alert"] for rule in rules} >= {
        "AstrostreamConsumerLagHigh",
        "AstrostreamIngestStale",
    }


# Grafana --------------------------------------------------------------------------------------


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of the provisioned dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]


def test_grafana_service_provisions_the_dashboard() -> None:
    grafana = _service("grafana")
    assert grafana["image"].startswith("grafana/grafana:")
    assert any(str(p.get("target", p)).endswith("3000") for p in grafana["ports"])
    mounts = _volume_targets(grafana)
    assert mounts["/var/lib/grafana"] == "grafana-data"
    provisioning = "/etc/grafana/provisioning"
    assert (
        Path(mounts[f"{provisioning}/datasources/astrostream.yml"]) == GRAFANA / "datasources.yml"
    )
    assert Path(mounts[f"{provisioning}/dashboards/astrostream.yml"]) == GRAFANA / "dashboards.yml"
    providers = yaml.safe_load((GRAFANA / "dashboards.yml").read_text())["providers"]
    folder = providers[0]["options"]["path"]
    assert Path(mounts[folder]) == DASHBOARD.parent, "the provider reads the mounted folder"
    home = _env(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{folder}/{DASHBOARD.name}"


def test_grafana_datasource_is_the_compose_prometheus() -> None:
    sources = yaml.safe_load((GRAFANA / "datasources.yml").read_text())["datasources"]
    assert len(sources) == 1
    source = sources[0]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in _compose_config()["services"]
    dashboard = json.loads(DASHBOARD.read_text())
    used = {
        item["datasource"]["uid"]
        for panel in dashboard["panels"]
        for item in [panel, *panel.get("targets", [])]
        if "datasource" in item
    }
    assert used == {source["uid"]}


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel query (as recording rules: it has no bare-query check)."""
    promtool = _tool("promtool", "prometheus")
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = _run([promtool, "check", "rules", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "astrostream"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


# Dockerfile -----------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return result


def _first(instructions: list[tuple[str, str]], keyword: str, contains: str = "") -> int:
    for index, (kw, args) in enumerate(instructions):
        if kw == keyword and contains in args:
            return index
    raise AssertionError(f"no {keyword} {contains!r} in deploy/Dockerfile")


def test_dockerfile_base_user_entrypoint() -> None:
    ins = _instructions()
    assert ins[0] == ("FROM", "python:3.11-slim")
    assert json.loads(dict(ins)["ENTRYPOINT"]) == ["astrostream"]
    assert json.loads(dict(ins)["CMD"]) == ["worker"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "astrostream" in scripts
    users = [args for kw, args in ins if kw == "USER"]
    assert users, "the image must not run as root"
    assert users[-1] not in {"root", "0"}
    assert _first(ins, "USER") > _first(ins, "RUN", "pip install .")
    assert "6066" in dict(ins)["EXPOSE"].split()
    volumes = json.loads(dict(ins)["VOLUME"])
    assert {"/models", "/data"} <= set(volumes)
    env = dict(item.split("=", 1) for kw, args in ins if kw == "ENV" for item in shlex.split(args))
    assert env["ASTRO_DATA_DIR"] == "/data"


def test_dockerfile_installs_torch_from_its_index_before_the_project() -> None:
    ins = _instructions()
    args = {a.split("=", 1)[0]: a.partition("=")[2] for kw, a in ins if kw == "ARG"}
    assert args["TORCH_INDEX"].startswith("https://download.pytorch.org/whl/cu12")
    assert "TORCH_VERSION" in args
    torch_step = _first(ins, "RUN", "TORCH_INDEX")
    assert "torch" in ins[torch_step][1]
    project_step = _first(ins, "RUN", "pip install .")
    assert torch_step < project_step
    assert _first(ins, "COPY", "pyproject.toml") > torch_step, "torch layer must not be rebuilt"


def test_dockerfile_healthcheck_uses_python_urllib() -> None:
    ins = _instructions()
    healthcheck = dict(ins)["HEALTHCHECK"]
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    assert "urllib" in command[2]
    assert "http://127.0.0.1:6066/health" in command[2]
    compile(command[2], "<healthcheck>", "exec")


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "data", "models", ".git"} <= ignored
    for kw, args in _instructions():
        if kw != "COPY" or args.startswith("--from"):
            continue
        *sources, _dest = shlex.split(args)
        for source in sources:
            if source.startswith("--"):
                continue
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
            assert source.split("/")[0] not in ignored, f"COPY {source}: excluded by .dockerignore"
