"""Load ``config/default.yaml`` and ``.env`` into ``Settings``: the only place that reads the environment.

Order: read ``.env`` (variables already set in the process win), expand ``${VAR}`` and
``${VAR:-default}`` in YAML string values, decode into frozen structs that reject unknown keys, then
resolve each provider's endpoint and key. Every error names the file, the key path and what is expected.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import msgspec
import yaml
from dotenv import dotenv_values

from gateway.config.schema import (
    AuthSection,
    ClientKeySection,
    FileSettings,
    ProviderSection,
    RouteSection,
    TimeoutsSection,
    dec_hook,
)
from gateway.config.settings import KNOWN_PROVIDERS, ClientKey, ProviderRuntime, Settings

T = TypeVar("T")

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, key path and expectation."""


def read_environment(env_file: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    """``.env`` values overlaid by the real environment (variables already set win)."""
    merged: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(environ)
    return merged


def _expand(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, dict):
        return {k: _expand(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env) for v in value]
    return value


def _convert(data: Any, type_: type[T], source: str, prefix: str) -> T:
    try:
        # strict=False: values that came from ${VAR} are strings, e.g. port: ${PORT:-8080}.
        return msgspec.convert(data, type_, dec_hook=dec_hook, strict=False)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        assert match is not None
        path = (match.group("path") or "$").replace("$", prefix, 1).lstrip(".") or "(top level)"
        raise ConfigError(f"{source}: {path}: {match.group('msg')}") from None


def _resolve_provider(
    name: str, section: ProviderSection, env: Mapping[str, str], source: str
) -> ProviderRuntime:
    known = KNOWN_PROVIDERS.get(name)
    wire = section.wire or (known.wire if known else None)
    if wire is None:
        raise ConfigError(
            f"{source}: providers.{name}.wire: unknown provider needs 'wire' "
            "(one of openai, gemini, anthropic)"
        )
    upper = re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    endpoint = (
        section.endpoint or env.get(f"{upper}_ENDPOINT", "") or (known.endpoint if known else "")
    )
    if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
        raise ConfigError(
            f"{source}: providers.{name}.endpoint: expected an http(s) URL, got {endpoint!r}"
        )
    needs_key = known.needs_key if known else True
    key_env = section.api_key_env or (f"{upper}_API_KEY" if needs_key else None)
    return ProviderRuntime(
        name=name,
        wire=wire,
        endpoint=endpoint.rstrip("/"),
        key_env=key_env,
        api_key=(env.get(key_env) or None) if key_env else None,
        enabled=section.enabled,
        timeouts=section.timeouts or TimeoutsSection(),
        max_connections=section.max_connections,
        models=tuple(section.models),
        capabilities=known.capabilities if known else ("chat", "streaming"),
    )


def _client_keys(auth: AuthSection, env: Mapping[str, str], source: str) -> tuple[ClientKey, ...]:
    """Every client key, hashed; the key text itself is not kept."""
    entries = [(f"auth.clientKeys[{i}]", entry) for i, entry in enumerate(auth.client_keys)]
    if auth.client_keys_file:
        path = Path(auth.client_keys_file)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{source}: auth.clientKeysFile: cannot read {path}: {exc}") from None
        if not isinstance(raw, list):
            raise ConfigError(f"{path}: expected a list of client keys")
        for i, item in enumerate(raw):
            entries.append(
                (f"{path}[{i}]", _convert(item, ClientKeySection, source, f"{path}[{i}]"))
            )
    keys = []
    for where, entry in entries:
        if entry.key_env is not None:
            secret = env.get(entry.key_env)
            if not secret:
                raise ConfigError(f"{source}: {where}.keyEnv: variable {entry.key_env} is not set")
            digest = hashlib.sha256(secret.encode()).digest()
        else:
            digest = bytes.fromhex(entry.key_sha256 or "")
        keys.append(
            ClientKey(
                entry.name,
                digest,
                tuple(entry.models),
                entry.requests_per_minute,
                entry.tokens_per_minute,
            )
        )
    return tuple(keys)


def _check_model_name(name: str, providers: Mapping[str, Any], where: str, source: str) -> None:
    provider, sep, model = name.partition(":")
    if not sep or not model:
        raise ConfigError(f"{source}: {where}: expected 'provider:model', got {name!r}")
    if provider not in providers:
        raise ConfigError(f"{source}: {where}: unknown provider {provider!r} in {name!r}")


def _check_references(settings: Settings, source: str) -> None:
    for alias, target in settings.models.items():
        _check_model_name(target, settings.providers, f"models.{alias}", source)
    for route_name, route in settings.routes.items():
        targets = [route.primary, *route.fallbacks]
        for index, target in enumerate(targets):
            where = f"routes.{route_name}." + (
                "primary" if index == 0 else f"fallbacks[{index - 1}]"
            )
            _check_model_name(target, settings.providers, where, source)
        for target in route.weights or {}:
            if target not in targets:
                raise ConfigError(
                    f"{source}: routes.{route_name}.weights: {target!r} is not a candidate of the route"
                )


def parse_settings(
    raw: Any,
    env: Mapping[str, str],
    *,
    source: str = "<config>",
    config_path: Path | None = None,
    env_file: Path | None = None,
) -> Settings:
    """Turn a parsed YAML document into ``Settings`` (no file access: handy for tests)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    data = _expand(raw, env)
    file = _convert(data, FileSettings, source, "")
    provider_sections = {name: ProviderSection() for name in KNOWN_PROVIDERS}
    for name, section in file.providers.items():
        provider_sections[name] = _convert(
            section or {}, ProviderSection, source, f"providers.{name}"
        )
    providers = {
        name: _resolve_provider(name, section, env, source)
        for name, section in provider_sections.items()
    }
    routes = {
        name: _convert(section, RouteSection, source, f"routes.{name}")
        for name, section in file.routes.items()
    }
    settings = Settings(
        server=file.server,
        logging=file.logging,
        providers=providers,
        models=dict(file.models),
        memory=file.memory,
        runtime=file.runtime,
        routes=routes,
        health=file.health,
        storage=file.storage,
        auth=file.auth,
        admin_token=env.get(file.auth.admin_token_env) or None,
        client_keys=_client_keys(file.auth, env, source),
        metrics_multiproc_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        config_path=config_path,
        env_file=env_file,
    )
    _check_references(settings, source)
    return settings


def load_settings(
    config_path: Path | str | None,
    env_file: Path | str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read the YAML file and ``.env``; ``environ`` defaults to the process environment."""
    env_path = Path(env_file) if env_file is not None else None
    env = read_environment(env_path, os.environ if environ is None else environ)
    path = Path(config_path) if config_path is not None else None
    raw: Any = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    return parse_settings(raw, env, source=source, config_path=path, env_file=env_path)
