"""deploy/compose/compose.yaml against the Compose Specification, and against the rest of the repository.

The schema is vendored (no network at test time): ``compose-spec.json`` is the compose-spec project's
``schema/compose-spec.json`` as shipped in the check-jsonschema 0.39.0 wheel on PyPI
(``check_jsonschema/builtin_schemas/vendor/compose-spec.json``, sha256 d549057e...e64), Apache-2.0
(``compose-spec.LICENSE``). Validated with jsonschema (Draft 2020-12) of the dev extra.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

from gateway.config.loader import load_settings
from gateway.sim.__main__ import parse_provider
from tests.deploy.deploy_support import (
    COMPOSE_CONFIG,
    COMPOSE_DIR,
    COMPOSE_FILE,
    DASHBOARDS_DIR,
    REPO,
    load_yaml,
)

SCHEMA = Path(__file__).with_name("compose-spec.json")
SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
CORE = ("gateway", "postgres", "prometheus", "grafana")
DEMO = ("sims", "traffic")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = load_yaml(COMPOSE_FILE)
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors_of(validator: jsonschema.Draft202012Validator, document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_vendored_schema_is_the_recorded_one() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_compose_file_matches_the_compose_specification(validator, compose) -> None:
    assert errors_of(validator, compose) == []


def test_the_schema_has_teeth(validator, compose) -> None:
    """Misspelled or mistyped keys are rejected: the validation above means something."""
    broken = copy.deepcopy(compose)
    broken["services"]["gateway"]["dependson"] = ["postgres"]
    assert errors_of(validator, broken)
    broken = copy.deepcopy(compose)
    broken["services"]["postgres"]["healthcheck"]["retires"] = 3
    assert errors_of(validator, broken)
    broken = copy.deepcopy(compose)
    broken["services"]["gateway"]["ports"] = {"http": 8080}
    assert errors_of(validator, broken)
    broken = copy.deepcopy(compose)
    broken["volumes"]["postgres-data"] = {"drver": "local"}
    assert errors_of(validator, broken)


def test_services_and_profiles(compose) -> None:
    services = compose["services"]
    assert set(services) == set(CORE) | set(DEMO)
    for name in CORE:
        assert "profiles" not in services[name], f"{name} starts with a plain `up`"
    for name in DEMO:
        assert services[name]["profiles"] == ["demo"]
    image = services["gateway"]["image"]
    for name in ("sims", "traffic"):
        assert services[name]["image"] == image, "one image for gateway, sims and traffic"
        assert services[name]["build"] == services["gateway"]["build"]


def test_build_context_is_the_repository(compose) -> None:
    build = compose["services"]["gateway"]["build"]
    context = (COMPOSE_DIR / build["context"]).resolve()
    assert context == REPO
    assert (context / build["dockerfile"]).is_file()


def test_host_paths_exist(compose) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name}: {source} does not exist"
        for env_file in service.get("env_file", []):
            entry = env_file if isinstance(env_file, dict) else {"path": env_file}
            if entry.get("required", True):
                assert (COMPOSE_DIR / entry["path"]).is_file(), f"{name}: {entry['path']}"


def test_published_ports_are_loopback_only(compose) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (
                f"{name}: {port} is published on all interfaces"
            )


def test_gateway_runs_on_postgres(compose) -> None:
    services = compose["services"]
    gateway, postgres = services["gateway"], services["postgres"]
    assert gateway["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert postgres["image"].startswith("postgres:16")
    url = urlsplit(gateway["environment"]["GATEWAY_STORAGE_URL"])
    env = postgres["environment"]
    assert url.scheme == "postgresql+asyncpg"
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert (url.username, url.password) == (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"])
    assert url.path.lstrip("/") == env["POSTGRES_DB"]
    assert gateway["environment"]["GATEWAY_AUTH_ENABLED"] == "true"
    # The container listens where the published port and the image's healthcheck expect it.
    assert gateway["environment"]["GATEWAY_PORT"] == "8080"
    assert [p.rsplit(":", 1)[1] for p in gateway["ports"]] == ["8080"]


def test_gateway_config_is_mounted_and_valid(compose, tmp_path) -> None:
    gateway = compose["services"]["gateway"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in gateway["volumes"]}
    config_arg = gateway["command"][gateway["command"].index("--config") + 1]
    assert (COMPOSE_DIR / mounts[config_arg]).resolve() == COMPOSE_CONFIG
    env = env_file_values(COMPOSE_DIR / "gateway.env")
    env.update({k: str(v) for k, v in gateway["environment"].items()})
    env["GATEWAY_STORAGE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    settings = load_settings(COMPOSE_CONFIG, None, environ=env)
    assert settings.auth.enabled
    assert [k.name for k in settings.client_keys] == ["demo"]
    assert settings.admin_token
    # Both simulated providers are configured by the compose environment (SIM_API_KEY).
    assert settings.providers["sim-openai"].status == "available"
    assert settings.providers["sim-gemini"].status == "available"


def env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_demo_env_defaults_hold_no_real_key() -> None:
    values = env_file_values(COMPOSE_DIR / "gateway.env")
    assert set(values) == {"DEMO_CLIENT_KEY", "GATEWAY_ADMIN_TOKEN"}
    assert all(v.startswith("demo-") for v in values.values())


def test_sims_serve_what_the_gateway_config_expects(compose) -> None:
    sims = compose["services"]["sims"]
    assert sims["entrypoint"] == ["python", "-m", "gateway.sim"]
    args = dict(a.removeprefix("--").split("=", 1) for a in sims["command"] if "=" in a)
    assert args["host"] == "0.0.0.0"
    specs = [
        parse_provider(a.split("=", 1)[1], args["api-key"], None)
        for a in sims["command"]
        if a.startswith("--provider=")
    ]
    config = load_yaml(COMPOSE_CONFIG)
    gateway_env = compose["services"]["gateway"]["environment"]
    for spec in specs:
        provider = config["providers"][spec.name]
        assert provider["wire"] == spec.wire
        default = re.fullmatch(r"\$\{\w+:-(.*)\}", provider["endpoint"])
        assert default, provider["endpoint"]
        endpoint = urlsplit(default.group(1))
        assert (endpoint.hostname, endpoint.port) == ("sims", spec.port)
        assert endpoint.path == spec.endpoint_path
        assert set(provider["models"]) <= set(spec.listed_models)
        assert gateway_env[provider["apiKeyEnv"]] == spec.api_key
    route = config["routes"]["demo"]
    assert {c.split(":")[0] for c in [route["primary"], *route["fallbacks"]]} == {
        s.name for s in specs
    }
    check = sims["healthcheck"]["test"]
    compile(check[-1], "<sims healthcheck>", "exec")
    for spec in specs:
        assert str(spec.port) in check[-1]


def test_traffic_generator_targets_the_demo(compose) -> None:
    traffic = compose["services"]["traffic"]
    script = traffic["volumes"][0].split(":")
    assert (COMPOSE_DIR / script[0]).is_file()
    assert traffic["entrypoint"] == ["python", script[1]]
    assert traffic["environment"]["GATEWAY_URL"] == "http://gateway:8080"
    sims = compose["services"]["sims"]["command"]
    ports = {int(a.split(":")[2]) for a in sims if a.startswith("--provider=")}
    controls = traffic["environment"]["SIM_CONTROL_URLS"].split(",")
    assert {urlsplit(u).port for u in controls} == ports
    assert traffic["depends_on"]["gateway"]["condition"] == "service_healthy"
    assert traffic["depends_on"]["sims"]["condition"] == "service_healthy"
    compile((COMPOSE_DIR / script[0]).read_text(encoding="utf-8"), script[0], "exec")


def test_prometheus_loads_config_and_alerts(compose) -> None:
    prometheus = compose["services"]["prometheus"]
    mounts = {v.split(":")[1]: (COMPOSE_DIR / v.split(":")[0]) for v in prometheus["volumes"]}
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_path = config_flag.split("=", 1)[1]
    config = load_yaml(mounts[config_path])
    for rule_file in config.get("rule_files", []):
        target = str(Path(config_path).parent / rule_file)
        assert target in mounts, f"{rule_file} is not mounted next to the config"
        assert mounts[target].is_file()
    targets = [
        t
        for job in config["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    ]
    assert "gateway:8080" in targets


def test_grafana_is_provisioned(compose) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {
        v.split(":")[1]: (COMPOSE_DIR / v.split(":")[0]).resolve() for v in grafana["volumes"]
    }
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = load_yaml(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    assert [(d["uid"], d["type"], d["url"]) for d in datasources] == [
        ("prometheus", "prometheus", "http://prometheus:9090")
    ]
    assert datasources[0]["isDefault"] is True
    providers = load_yaml(provisioning / "dashboards" / "llm-gateway.yaml")["providers"]
    assert len(providers) == 1
    path = providers[0]["options"]["path"]
    assert path == "/var/lib/grafana/dashboards"
    assert mounts[path] == DASHBOARDS_DIR
    dashboards = sorted(DASHBOARDS_DIR.glob("*.json"))
    assert dashboards, "dashboards/ holds the provisioned dashboards"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(path + "/") and (DASHBOARDS_DIR / Path(home).name).is_file()
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_images_are_pinned(compose) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        if name in ("gateway", "sims", "traffic"):
            continue  # built from the repository
        _, _, tag = image.partition(":")
        assert tag and tag != "latest", f"{name}: {image} is not pinned"


def test_gateway_command_is_accepted_by_the_cli(compose) -> None:
    from gateway.cli import build_parser

    entrypoint = ["serve", "--config", "/app/config/default.yaml", "--host", "0.0.0.0"]
    args = build_parser().parse_args(entrypoint + compose["services"]["gateway"]["command"])
    assert args.config == "/etc/gateway/gateway.yaml"
    assert args.host == "0.0.0.0"
    assert shlex.join(compose["services"]["gateway"]["command"])
