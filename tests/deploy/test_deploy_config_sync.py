"""The deployment configs mirror config/default.yaml.

kustomize reads no file outside deploy/k8s, and the Compose stack needs client keys that default.yaml
only shows in a comment, so deploy/k8s/config/gateway.yaml and deploy/compose/gateway.yaml are copies.
They may differ from default.yaml only where listed here; any other change to default.yaml (a new
provider, route, alias, limit or section) must be made to the copies too, or this test fails.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config.loader import parse_settings
from tests.deploy.deploy_support import (
    COMPOSE_CONFIG,
    DEFAULT_CONFIG,
    K8S_CONFIG,
    K8S_DIR,
    load_yaml,
    load_yaml_docs,
)

# Where a copy may differ from default.yaml: (section, key) pairs, None = the whole section.
ALLOWED = {
    "k8s": {("server", "host"), ("server", "port"), ("logging", "format"), ("storage", None)},
    "compose": {("server", "host"), ("logging", "format"), ("storage", None)},
}
# Compose only: the demo profile's simulated providers and their route.
COMPOSE_EXTRA_PROVIDERS = {"sim-openai", "sim-gemini"}
COMPOSE_EXTRA_ROUTES = {"demo"}


def strip(raw: dict[str, Any], allowed: set[tuple[str, str | None]]) -> dict[str, Any]:
    data = copy.deepcopy(raw)
    data.pop("auth", None)  # compared separately: auth is what the copies are for
    for section, key in allowed:
        if key is None:
            data.pop(section, None)
        else:
            data.get(section, {}).pop(key, None)
    return data


@pytest.mark.parametrize(
    ("name", "path"), [("k8s", K8S_CONFIG), ("compose", COMPOSE_CONFIG)], ids=["k8s", "compose"]
)
def test_copy_matches_default_yaml(name: str, path: Path) -> None:
    default = load_yaml(DEFAULT_CONFIG)
    mirror = load_yaml(path)
    if name == "compose":
        assert set(mirror["providers"]) - set(default["providers"]) == COMPOSE_EXTRA_PROVIDERS
        assert set(mirror["routes"]) - set(default["routes"]) == COMPOSE_EXTRA_ROUTES
        for provider in COMPOSE_EXTRA_PROVIDERS:
            del mirror["providers"][provider]
        for route in COMPOSE_EXTRA_ROUTES:
            del mirror["routes"][route]
    assert strip(mirror, ALLOWED[name]) == strip(default, ALLOWED[name])


def test_k8s_copy_listens_everywhere_with_auth_and_postgres() -> None:
    mirror = load_yaml(K8S_CONFIG)
    assert mirror["server"]["host"] == "0.0.0.0"
    assert mirror["server"]["port"] == 8080, "the Service, probes and NetworkPolicy use 8080"
    assert mirror["storage"]["url"] == "${GATEWAY_STORAGE_URL}", "no SQLite fallback on Kubernetes"
    assert mirror["auth"]["enabled"] is True
    default_auth = load_yaml(DEFAULT_CONFIG)["auth"]
    assert mirror["auth"]["adminTokenEnv"] == default_auth["adminTokenEnv"]


def test_compose_copy_has_auth_and_the_demo_key() -> None:
    mirror = load_yaml(COMPOSE_CONFIG)
    assert mirror["auth"]["enabled"] is True
    assert mirror["auth"]["clientKeys"] == [{"name": "demo", "keyEnv": "DEMO_CLIENT_KEY"}]
    assert mirror["storage"]["url"].startswith("${GATEWAY_STORAGE_URL")


def client_keys_example(tmp_path: Path) -> Path:
    """The client-keys file of secret.example.yaml, placeholders filled, as the pod would read it."""
    [secret] = [
        d
        for d in load_yaml_docs(K8S_DIR / "secret.example.yaml")
        if d["metadata"]["name"] == "llm-gateway-client-keys"
    ]
    digest = hashlib.sha256(b"a client key").hexdigest()
    text = secret["stringData"]["client-keys.yaml"].replace(
        "keySha256: REPLACE_ME", f"keySha256: {digest}"
    )
    path = tmp_path / "client-keys.yaml"
    path.write_text(text.replace("REPLACE_ME", "team-a"), encoding="utf-8")
    return path


def test_k8s_config_loads_as_a_pod_would(tmp_path: Path) -> None:
    raw = load_yaml(K8S_CONFIG)
    raw["auth"]["clientKeysFile"] = str(client_keys_example(tmp_path))
    env = {
        "GATEWAY_STORAGE_URL": "postgresql+asyncpg://gateway:pw@db:5432/gateway",
        "GATEWAY_ADMIN_TOKEN": "t" * 32,
        "GATEWAY_CLIENT_KEY": "k" * 32,
        "OPENAI_API_KEY": "x",
    }
    settings = parse_settings(raw, env, source=str(K8S_CONFIG))
    assert settings.auth.enabled
    assert [k.name for k in settings.client_keys] == ["default", "team-a"]
    assert settings.storage.url.startswith("postgresql+asyncpg://")
    assert settings.providers["openai"].status == "available"
    assert settings.server.host == "0.0.0.0"


def test_default_yaml_is_still_a_mapping_of_known_sections() -> None:
    """Guards the comparison above: it reads every section of default.yaml."""
    default = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    assert {"server", "providers", "routes", "storage", "auth"} <= set(default)
