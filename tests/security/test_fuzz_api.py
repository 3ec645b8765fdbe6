"""Property-based fuzzing of the running gateway: no 5xx, every error in our JSON shape, no crash logged.

Two generators: schemathesis, from the OpenAPI schema Litestar publishes at ``/schema/openapi.json``
(it knows every route and path parameter), and a hand-written Hypothesis strategy of arbitrary JSON
bodies, because the handlers read raw bodies and the published request schemas say little about them.
The gateway is a real subprocess over the simulators, with auth on; its log is checked at the end.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.config.loader import parse_settings
from gateway.sim.cluster import SimCluster
from tests.security.support import GatewayProcess, sim_env, start_gateway_process

# One bearer token that is both a client key and the admin token, so admin routes get fuzzed too.
TOKEN = "fuzz-token-5c2a9e7d1b3f4860"
AUTH = {"authorization": f"Bearer {TOKEN}"}
FUZZ_SETTINGS = settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@dataclass(frozen=True)
class FuzzTarget:
    gateway: GatewayProcess
    agent_id: str
    session_id: str
    patch_agent_id: str

    @property
    def messages(self) -> str:
        return f"/agents/{self.agent_id}/sessions/{self.session_id}/messages"


@pytest.fixture(scope="module")
def fuzz_target(
    canary_cluster: SimCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    canary_cluster.reset()
    env = {**sim_env(canary_cluster), "CLIENT_KEY": TOKEN, "GATEWAY_ADMIN_TOKEN": TOKEN}
    config = {
        "logging": {"level": "info", "format": "json"},
        "server": {"drainTimeout": "2s"},
        "auth": {"enabled": True, "clientKeys": [{"name": "fuzzer", "keyEnv": "CLIENT_KEY"}]},
        "routes": {"chat": {"primary": "openai:gpt-4o-mini", "fallbacks": ["gemini:g"]}},
    }
    gateway = start_gateway_process(tmp_path_factory.mktemp("fuzz"), config, env, name="fuzz")
    try:
        with gateway.client(headers=AUTH) as http:
            model = "openai:gpt-4o-mini"
            agent_id = http.post("/agents", json={"name": "fuzz", "model": model}).json()["agentId"]
            session_id = http.post(f"/agents/{agent_id}/sessions", json={}).json()["sessionId"]
            patched = http.post("/agents", json={"name": "fuzz-patch", "model": model})
            patch_agent_id = patched.json()["agentId"]
        yield FuzzTarget(gateway, agent_id, session_id, patch_agent_id)
    finally:
        gateway.stop()
        canary_cluster.reset()
    _assert_clean_log(gateway)


def _assert_clean_log(gateway: GatewayProcess) -> None:
    """Every line is JSON; no unhandled exception, no 5xx, nothing at error level."""
    events = gateway.log_events()
    assert any(e.get("event") == "request" for e in events)
    bad = [
        e
        for e in events
        if e.get("event") in ("unhandled_error", "stream_failed_unexpectedly")
        or e.get("level") in ("error", "critical")
        or "exception" in e
        or (e.get("event") == "request" and int(e.get("status", 0)) >= 500)
    ]
    assert bad == [], bad[:5]


def assert_error_shape(path: str, status: int, content_type: str, body: bytes) -> None:
    """No 5xx; a 4xx is JSON in our shape (OpenAI's under /v1)."""
    assert status < 500, (status, path, body[:500])
    if status < 400:
        return
    assert content_type.startswith("application/json"), (path, content_type)
    data = json.loads(body)
    assert isinstance(data, dict), (path, data)
    if path.startswith("/v1/"):
        error = data.get("error")
        assert isinstance(error, dict), (path, data)
        assert isinstance(error.get("message"), str) and error["message"], (path, data)
        assert isinstance(error.get("type"), str) and error["type"], (path, data)
        assert isinstance(error.get("code"), str) and error["code"], (path, data)
    else:
        assert isinstance(data.get("code"), str) and data["code"], (path, data)
        assert isinstance(data.get("message"), str) and data["message"], (path, data)
        assert isinstance(data.get("details"), dict), (path, data)
    assert "Traceback" not in body.decode("utf-8", "replace")


# -- schemathesis, from the published OpenAPI schema ----------------------------------------------


def _published_schema() -> dict[str, Any]:
    """The OpenAPI document the gateway serves at ``/schema/openapi.json``, built without a server so
    pytest can collect one test per operation (the test checks the running server serves the same)."""
    settings_ = parse_settings({}, {}, source="fuzz")
    document: dict[str, Any] = create_app(settings_).openapi_schema.to_schema()
    return document


PUBLISHED = _published_schema()
schema = schemathesis.openapi.from_dict(
    PUBLISHED,
    config=schemathesis.Config.from_dict(
        {"generation": {"mode": "all", "database": "none"}, "suppress-health-check": ["all"]}
    ),
)


def test_the_running_gateway_publishes_the_fuzzed_schema(fuzz_target: FuzzTarget) -> None:
    with fuzz_target.gateway.client() as http:
        served = http.get("/schema/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(PUBLISHED))
    assert len(PUBLISHED["paths"]) >= 10


def _pick(value: object) -> bool:
    """Deterministic coin: half of the generated ids are swapped for real ones."""
    return hashlib.sha256(repr(value).encode()).digest()[0] % 2 == 0


@schema.parametrize()
@FUZZ_SETTINGS
def test_openapi_operations_never_fail_with_5xx(case: Any, fuzz_target: FuzzTarget) -> None:
    params = case.path_parameters or {}
    if case.method.upper() != "DELETE":  # keep the real agent and session alive
        if "agent_id" in params and _pick(params["agent_id"]):
            params["agent_id"] = fuzz_target.agent_id
        if "session_id" in params and _pick(params["session_id"]):
            params["session_id"] = fuzz_target.session_id
    response = case.call(base_url=fuzz_target.gateway.url, headers=AUTH, timeout=15)
    content_type = (response.headers.get("content-type") or [""])[0]
    assert_error_shape(case.formatted_path, response.status_code, content_type, response.content)


# -- arbitrary JSON bodies on every body-taking route ---------------------------------------------

KEYS = st.sampled_from(
    [
        "model",
        "messages",
        "role",
        "content",
        "stream",
        "fallbacks",
        "fallbackModel",
        "fallbackModels",
        "config",
        "tools",
        "registered",
        "enabled",
        "name",
        "metadata",
        "taskType",
        "userId",
        "provider",
        "modelId",
        "maxTokens",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "n",
        "stream_options",
        "include_usage",
        "tool_choice",
        "response_format",
        "tool_calls",
        "tool_call_id",
        "function",
        "arguments",
    ]
)
STRINGS = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "openai:gpt-4o-mini",
            "gemini:gemini-2.0-flash",
            "anthropic:claude-3-5-haiku-latest",
            "groq:llama3-70b-8192",
            "ollama:qwen3:4b",
            "nope:model",
            "chat",
            "user",
            "assistant",
            "system",
            "tool",
            "",
        ]
    ),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    STRINGS,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(KEYS, st.text(max_size=8)), children, max_size=5),
    ),
    max_leaves=20,
)
MESSAGE = st.fixed_dictionaries({"role": STRINGS, "content": JSON_VALUES})
BODIES = st.one_of(
    JSON_VALUES,
    st.dictionaries(KEYS, JSON_VALUES, max_size=6),
    st.fixed_dictionaries({"model": STRINGS, "messages": st.lists(MESSAGE, max_size=3)}),
    st.fixed_dictionaries({"messages": st.lists(MESSAGE, max_size=3)}),
)


def _routes(target: FuzzTarget) -> list[tuple[str, str]]:
    return [
        ("POST", "/agents"),
        ("PATCH", f"/agents/{target.patch_agent_id}"),
        ("POST", f"/agents/{target.agent_id}/sessions"),
        ("POST", target.messages),
        ("POST", f"{target.messages}?stream=true"),
        ("POST", "/v1/chat/completions"),
    ]


@settings(FUZZ_SETTINGS, max_examples=100)
@given(body=BODIES, route=st.integers(min_value=0, max_value=5))
def test_arbitrary_json_bodies_get_4xx_in_our_shape_never_5xx(
    fuzz_target: FuzzTarget, body: Any, route: int
) -> None:
    method, url = _routes(fuzz_target)[route]
    with (
        httpx.Client(base_url=fuzz_target.gateway.url, headers=AUTH, timeout=15) as http,
        http.stream(method, url, content=json.dumps(body).encode()) as response,
    ):
        content = response.read()
    content_type = response.headers.get("content-type", "")
    assert_error_shape(url, response.status_code, content_type, content)


@settings(FUZZ_SETTINGS, max_examples=40)
@given(
    raw=st.one_of(
        st.binary(max_size=64),
        st.sampled_from([b"", b"{", b"[]", b"null", b'{"a":', b"\xff\xfe", b'"x"', b"1e999"]),
    ),
    route=st.integers(min_value=0, max_value=5),
)
def test_bodies_that_are_not_json_get_400(fuzz_target: FuzzTarget, raw: bytes, route: int) -> None:
    method, url = _routes(fuzz_target)[route]
    with httpx.Client(base_url=fuzz_target.gateway.url, headers=AUTH, timeout=15) as http:
        response = http.request(method, url, content=raw)
    content_type = response.headers.get("content-type", "")
    assert_error_shape(url, response.status_code, content_type, response.content)


def test_log_of_the_fuzzed_gateway_is_clean_so_far(fuzz_target: FuzzTarget) -> None:
    """Checked here as well as at teardown, so a crash fails a test and not only the fixture."""
    _assert_clean_log(fuzz_target.gateway)
