"""Configuration loading: expansion, .env, provider resolution, and every error naming its key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.loader import ConfigError, load_settings, parse_settings

REPO_CONFIG = Path(__file__).parents[3] / "config" / "default.yaml"


def test_repo_default_config_loads_with_no_keys() -> None:
    settings = load_settings(REPO_CONFIG, None, {})
    assert settings.server.port == 8080
    assert settings.runtime.request_timeout == 60.0
    assert settings.runtime.router.provider_backoff == pytest.approx(0.05)
    assert all(p.status == "not-configured" for p in settings.providers.values())
    assert settings.models["gemini:flash-1.5"] == "gemini:gemini-1.5-flash"
    assert settings.routes["chat"].fallbacks == ["gemini:flash-1.5", "groq:llama3-70b"]


def test_key_from_environment_makes_provider_available() -> None:
    settings = load_settings(REPO_CONFIG, None, {"OPENAI_API_KEY": "sk-x"})
    openai = settings.providers["openai"]
    assert openai.status == "available"
    assert openai.missing_env is None
    assert "sk-x" not in repr(openai)
    assert settings.providers["gemini"].missing_env == "GEMINI_API_KEY"


def test_env_file_is_read_without_overriding_the_process(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("OPENAI_API_KEY=from-file\nGROQ_API_KEY=groq-file\n")
    settings = load_settings(REPO_CONFIG, env_file, {"OPENAI_API_KEY": "from-process"})
    assert settings.providers["openai"].api_key == "from-process"
    assert settings.providers["groq"].api_key == "groq-file"


def test_variables_expand_with_defaults() -> None:
    raw = {
        "server": {"port": "${PORT:-9090}", "host": "${HOST}"},
        "providers": {"openai": {"endpoint": "${OPENAI_ENDPOINT:-http://127.0.0.1:1/v1}"}},
    }
    settings = parse_settings(raw, {"HOST": "127.0.0.1"})
    assert settings.server.port == 9090
    assert settings.server.host == "127.0.0.1"
    assert settings.providers["openai"].endpoint == "http://127.0.0.1:1/v1"


def test_endpoint_falls_back_to_env_variable_then_public_url() -> None:
    settings = parse_settings({}, {"GROQ_ENDPOINT": "http://127.0.0.1:9/v1"})
    assert settings.providers["groq"].endpoint == "http://127.0.0.1:9/v1"
    assert settings.providers["openai"].endpoint == "https://api.openai.com/v1"


def test_ollama_needs_no_key_but_an_endpoint() -> None:
    assert parse_settings({}, {}).providers["ollama"].missing_env == "OLLAMA_ENDPOINT"
    ollama = parse_settings({}, {"OLLAMA_ENDPOINT": "http://127.0.0.1:11434/v1"}).providers[
        "ollama"
    ]
    assert ollama.status == "available"
    assert ollama.key_env is None


def test_custom_provider_with_wire_and_key_env() -> None:
    raw = {
        "providers": {
            "my-llm": {"wire": "openai", "endpoint": "http://127.0.0.1:5/v1", "apiKeyEnv": "MY_KEY"}
        }
    }
    provider = parse_settings(raw, {"MY_KEY": "k"}).providers["my-llm"]
    assert provider.status == "available"
    assert provider.wire == "openai"


def test_disabled_provider_reports_disabled() -> None:
    raw = {"providers": {"openai": {"enabled": False}}}
    assert parse_settings(raw, {"OPENAI_API_KEY": "k"}).providers["openai"].status == "disabled"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"server": {"prot": 1}}, "server: Object contains unknown field `prot`"),
        ({"bogus": {}}, "Object contains unknown field `bogus`"),
        (
            {"providers": {"openai": {"endpiont": "x"}}},
            "providers.openai: Object contains unknown field `endpiont`",
        ),
        (
            {"providers": {"openai": {"endpoint": "ftp://x"}}},
            "providers.openai.endpoint: expected an http(s) URL",
        ),
        (
            {"providers": {"openai": {"timeouts": {"read": "soon"}}}},
            "providers.openai.timeouts.read: expected a duration like 500ms or 30s",
        ),
        (
            {"health": {"breaker": {"resetTimeout": "-3s"}}},
            "health.breaker.resetTimeout: expected a duration",
        ),
        (
            {"runtime": {"requestTimeout": "10 parsecs"}},
            "runtime.requestTimeout: expected a duration",
        ),
        ({"server": {"port": "eighty"}}, "server.port: Expected `int`"),
        ({"providers": {"mystery": {"endpoint": "http://x"}}}, "providers.mystery.wire"),
        (
            {"routes": {"chat": {"primary": "openai:gpt", "fallbacks": ["nope:model"]}}},
            "routes.chat.fallbacks[0]: unknown provider 'nope'",
        ),
        (
            {"routes": {"chat": {"fallbacks": []}}},
            "routes.chat: Object missing required field `primary`",
        ),
        (
            {"routes": {"chat": {"primary": "gpt4"}}},
            "routes.chat.primary: expected 'provider:model'",
        ),
        (
            {"routes": {"chat": {"primary": "openai:a", "weights": {"openai:b": 1}}}},
            "routes.chat.weights: 'openai:b' is not a candidate",
        ),
        ({"models": {"fast": "gpt-4o"}}, "models.fast: expected 'provider:model'"),
        ({"models": {"a:b": "zzz:x"}}, "models.a:b: unknown provider 'zzz'"),
        ({"logging": {"level": "loud"}}, "logging.level: Invalid enum value 'loud'"),
        ([1, 2], "expected a mapping at the top level"),
    ],
)
def test_invalid_config_names_file_and_key_path(raw: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, {}, source="conf.yaml")
    message = str(info.value)
    assert message.startswith("conf.yaml: ")
    assert expected in message


def test_missing_file_and_bad_yaml_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml", None, {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad, None, {})


def test_admin_token_comes_from_its_variable_and_is_a_secret() -> None:
    settings = parse_settings({}, {"GATEWAY_ADMIN_TOKEN": "t0ken-value", "OPENAI_API_KEY": "k1"})
    assert settings.admin_token == "t0ken-value"
    assert set(settings.secrets()) == {"t0ken-value", "k1"}
    assert "t0ken-value" not in repr(settings)


def test_client_keys_from_variables_and_a_file_are_kept_only_as_digests(tmp_path: Path) -> None:
    import hashlib

    keys_file = tmp_path / "client-keys.yaml"
    digest = hashlib.sha256(b"from-file-key").hexdigest()
    keys_file.write_text(f"- name: filed\n  keySha256: {digest}\n  models: ['groq:*']\n")
    raw = {
        "auth": {
            "enabled": True,
            "clientKeys": [{"name": "env", "keyEnv": "TEAM_KEY", "requestsPerMinute": 5}],
            "clientKeysFile": str(keys_file),
        }
    }
    settings = parse_settings(raw, {"TEAM_KEY": "team-secret"})
    by_name = {k.name: k for k in settings.client_keys}
    assert by_name["env"].sha256 == hashlib.sha256(b"team-secret").digest()
    assert by_name["env"].requests_per_minute == 5
    assert by_name["filed"].sha256.hex() == digest
    assert by_name["filed"].models == ("groq:*",)
    assert "team-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"name": "a"}, "set exactly one of keyEnv or keySha256"),
        ({"name": "a", "keySha256": "xyz"}, "64 lowercase hex"),
        ({"name": "a", "keyEnv": "MISSING_VAR"}, "variable MISSING_VAR is not set"),
    ],
)
def test_bad_client_keys_are_config_errors(entry: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_settings({"auth": {"clientKeys": [entry]}}, {})
