"""Hardening: request ids, headers and URLs from clients, upstream redirects, log injection, path tricks.

One gateway subprocess (auth on, JSON logs at info) over the canary simulators plus four tiny loopback
servers of our own: ``raw`` (an OpenAI-wire upstream that records the exact headers it receives),
``redir`` (an upstream that answers with a redirect to ``trap``), ``trap`` (which must never be
contacted by anyone) and ``echo`` (an upstream whose 400 quotes a client value).
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from gateway.sim.cluster import SimCluster
from tests.security.support import (
    CANARY_KEYS,
    CLIENT_KEY,
    Answer,
    GatewayProcess,
    LoopbackUpstream,
    Received,
    json_answer,
    sim_env,
    start_gateway_process,
)

RAW_KEY = "sk-raw-canary-1e5b9d3f7a2c4e6b8d0f"
ECHO_KEY = "sk-echo-canary-7c3e9a1f5b2d8e4a6c0b"
REDIR_KEY = "sk-redir-canary-4a6c8e0b2d4f6a8c"
AUTH = {"authorization": f"Bearer {CLIENT_KEY}"}
_FRESH_ID = re.compile(r"^[0-9a-f]{32}$")


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-raw",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "raw says hi"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None) -> str:
    chunk = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n"


def openai_like(request: Received) -> Answer:
    """A minimal OpenAI-wire upstream: plain or streamed chat completions."""
    body = json.loads(request.body or b"{}")
    model = str(body.get("model", "m"))
    if not body.get("stream"):
        return json_answer(200, _completion(model))
    frames = (
        _chunk(model, {"role": "assistant", "content": "raw says hi"}, None)
        + _chunk(model, {}, "stop")
        + "data: [DONE]\n\n"
    )
    return Answer(200, frames.encode(), (("content-type", "text/event-stream"),))


def echoing(request: Received) -> Answer:
    """An upstream that quotes a client value in its 400, as real providers do."""
    body = json.loads(request.body or b"{}")
    message = f"Invalid value for 'user': {body.get('user')!s}. Expected a user id."
    return json_answer(400, {"error": {"message": message, "type": "invalid_request_error"}})


@dataclass
class Rig:
    gateway: GatewayProcess
    sims: SimCluster
    raw: LoopbackUpstream
    redir: LoopbackUpstream
    trap: LoopbackUpstream
    echo: LoopbackUpstream

    def client(self) -> httpx.Client:
        return self.gateway.client(headers=AUTH)

    def session(self, http: httpx.Client, agent: dict[str, Any]) -> str:
        created = http.post("/agents", json={**agent, "name": f"h-{uuid.uuid4().hex[:8]}"})
        assert created.status_code == 201, created.text
        agent_id = created.json()["agentId"]
        session = http.post(f"/agents/{agent_id}/sessions", json={})
        assert session.status_code == 201, session.text
        return f"/agents/{agent_id}/sessions/{session.json()['sessionId']}/messages"


@pytest.fixture(scope="module")
def module_rig(
    canary_cluster: SimCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    with (
        LoopbackUpstream(lambda r: json_answer(200, {"trapped": True})) as trap,
        LoopbackUpstream(openai_like) as raw,
        LoopbackUpstream(
            lambda r: Answer(307, b"", (("location", f"{trap.url}{r.path}"),))
        ) as redir,
        LoopbackUpstream(echoing) as echo,
    ):
        env = {
            **sim_env(canary_cluster),
            "RAW_API_KEY": RAW_KEY,
            "RAW_ENDPOINT": f"{raw.url}/v1",
            "REDIR_API_KEY": REDIR_KEY,
            "REDIR_ENDPOINT": f"{redir.url}/v1",
            "ECHO_API_KEY": ECHO_KEY,
            "ECHO_ENDPOINT": f"{echo.url}/v1",
        }
        config = {
            "logging": {"level": "info", "format": "json"},
            "server": {"drainTimeout": "2s"},
            "providers": {name: {"wire": "openai"} for name in ("raw", "redir", "echo")},
            # Failing upstreams must keep being called: no breaker opens during the module.
            "health": {"breaker": {"failMax": 10000}, "minCalls": 10000},
            "auth": {
                "enabled": True,
                "clientKeys": [{"name": "hardening", "keyEnv": "CLIENT_KEY"}],
            },
        }
        gateway = start_gateway_process(
            tmp_path_factory.mktemp("hardening"), config, env, name="hardening"
        )
        try:
            yield Rig(gateway, canary_cluster, raw, redir, trap, echo)
        finally:
            gateway.stop()


@pytest.fixture
def rig(module_rig: Rig) -> Iterator[Rig]:
    for upstream in (module_rig.raw, module_rig.redir, module_rig.trap, module_rig.echo):
        upstream.received.clear()
    module_rig.sims.reset()
    yield module_rig
    module_rig.sims.reset()


# -- X-Request-ID -----------------------------------------------------------------------------------


def raw_http(port: int, request: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send bytes exactly as given (no client-side validation); parse the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [
        (name.strip().lower(), value.strip())
        for name, _, value in (line.partition(":") for line in lines[1:])
    ]
    return status, headers, body


# Line breaks: the HTTP parser either refuses the request or ends the header at the break (RFC 9112
# lets a recipient treat a bare LF as a line end), so "abc" is then the whole id it hands the app.
LINE_BREAKS = [b"abc\rX-Injected: yes", b"abc\nX-Injected: yes", b"abc\r\nX-Injected: yes"]
HOSTILE_IDS = [
    b"abc\x00def",
    b"abc\x1b[31mred",
    b"abc\x7fdef",
    b"abc\x08\x08\x08def",
    b"abc\tdef",
    b"abc def",
    b'abc"def',
    b"abc;def",
    b"<script>alert(1)</script>",
    b"\xc3\xa9t\xc3\xa9",
    b"\xff\xfe",
    b"a" * 129,
    b"",
]


def _request_ids(supplied: bytes, port: int) -> tuple[int, list[str], list[str]]:
    request = (
        b"GET /agents HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Authorization: Bearer " + CLIENT_KEY.encode() + b"\r\n"
        b"X-Request-ID: " + supplied + b"\r\n\r\n"
    )
    status, headers, _ = raw_http(port, request)
    names = [name for name, _ in headers]
    ids = [value for name, value in headers if name == "x-request-id"]
    return status, names, ids


@pytest.mark.parametrize("supplied", LINE_BREAKS, ids=repr)
def test_line_breaks_in_request_ids_inject_nothing(rig: Rig, supplied: bytes) -> None:
    status, names, ids = _request_ids(supplied, rig.gateway.port)
    assert "x-injected" not in names
    assert status in (200, 400), status
    if ids:
        assert len(ids) == 1
        assert _FRESH_ID.match(ids[0]) or ids[0] == "abc", ids


@pytest.mark.parametrize("supplied", HOSTILE_IDS, ids=repr)
def test_hostile_request_ids_are_replaced_by_a_fresh_one(rig: Rig, supplied: bytes) -> None:
    status, _, ids = _request_ids(supplied, rig.gateway.port)
    if status == 400 and not ids:
        return  # the HTTP server refused the request (NUL byte): nothing reached the app
    assert status == 200
    assert len(ids) == 1, ids
    assert _FRESH_ID.match(ids[0]), ids  # a fresh id, not the client's text


def test_a_plain_request_id_is_echoed(rig: Rig) -> None:
    with rig.client() as http:
        answer = http.get("/agents", headers={"x-request-id": "trace-42.a_b:c"})
    assert answer.headers["x-request-id"] == "trace-42.a_b:c"


# -- client headers never reach an upstream ---------------------------------------------------------

CLIENT_HEADERS = {
    "x-api-key": "client-x-api-key-value",
    "x-goog-api-key": "client-goog-key-value",
    "api-key": "client-azure-key-value",
    "cookie": "session=client-cookie-value",
    "proxy-authorization": "Basic Y2xpZW50LXByb3h5LXZhbHVl",
    "x-forwarded-host": "evil.example",
    "x-forwarded-for": "203.0.113.66",
    "x-forwarded-proto": "gopher",
    "x-real-ip": "203.0.113.67",
    "forwarded": "for=203.0.113.68;host=evil.example",
    "origin": "http://evil.example",
    "referer": "http://evil.example/page",
    "user-agent": "client-agent/6.6.6",
    "openai-organization": "org-client-value",
    "openai-project": "proj-client-value",
    "anthropic-version": "1999-01-01",
    "anthropic-beta": "client-beta-value",
    "x-custom-header": "client-custom-value",
    "x-request-id": "client-request-id-1",
}
# What an adapter may send upstream; anything else would have come from somewhere it should not.
UPSTREAM_HEADERS = {
    "host",
    "accept",
    "accept-encoding",
    "connection",
    "content-length",
    "content-type",
    "user-agent",
    "authorization",
    "x-goog-api-key",
    "x-api-key",
    "anthropic-version",
}
PROVIDER_AUTH = {"openai": "authorization", "gemini": "x-goog-api-key", "anthropic": "x-api-key"}
MODELS = {
    "raw": "raw:gpt-4o-mini",
    "openai": "openai:gpt-4o-mini",
    "gemini": "gemini:gemini-2.0-flash",
    "anthropic": "anthropic:claude-3-5-haiku-latest",
}


def _send_everywhere(rig: Rig, headers: dict[str, str], **chat_extra: Any) -> None:
    """Both APIs, plain and streamed, to every provider; every call must succeed."""
    with rig.client() as http:
        for model in MODELS.values():
            chat = {
                "model": model,
                "messages": [{"role": "user", "content": "hello there"}],
                **chat_extra,
            }
            for stream in (False, True):
                answer = http.post(
                    "/v1/chat/completions", json={**chat, "stream": stream}, headers=headers
                )
                assert answer.status_code == 200, (model, answer.text)
                assert answer.headers["x-gateway-fallback"] == "false"
            url = rig.session(http, {"model": model})
            message = {"role": "user", "content": "hello there"}
            assert http.post(url, json=message, headers=headers).status_code == 200
            assert http.post(f"{url}?stream=true", json=message, headers=headers).status_code == 207


def test_client_headers_are_never_forwarded_upstream(rig: Rig) -> None:
    _send_everywhere(rig, CLIENT_HEADERS)
    client_values = [*CLIENT_HEADERS.values(), CLIENT_KEY]

    # Our own upstream sees the exact bytes: only the provider's key, nothing of the client's.
    assert len(rig.raw.received) == 4
    for request in rig.raw.received:
        assert set(request.headers) <= UPSTREAM_HEADERS, request.headers
        assert request.headers["authorization"] == f"Bearer {RAW_KEY}"
        assert request.headers["host"] == f"127.0.0.1:{rig.raw.port}"
        for value in client_values:
            assert all(value not in v for v in request.headers.values()), (value, request.headers)

    # The simulators accept only their own canary key (a client key added to it would be refused);
    # their log keeps header names and non-secret values.
    for name, auth_header in PROVIDER_AUTH.items():
        records = rig.sims[name].requests
        assert len(records) == 4, name
        for record in records:
            assert record.status == 200
            assert set(record.headers) <= UPSTREAM_HEADERS, (name, record.headers)
            assert auth_header in record.headers
            for value in client_values:
                assert all(value not in v for v in record.headers.values()), (name, value)
    assert rig.trap.received == []


# -- upstream URLs come from configuration only ---------------------------------------------------


def test_client_supplied_urls_are_never_contacted(rig: Rig) -> None:
    trap = f"{rig.trap.url}/v1"
    url_fields = {
        name: trap
        for name in ("endpoint", "base_url", "baseURL", "api_base", "apiBase", "url", "host")
    }
    with rig.client() as http:
        for model in ("openai:gpt-4o-mini", "raw:gpt-4o-mini"):
            answer = http.post(
                "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "x"}], **url_fields},
            )
            assert answer.status_code == 200, answer.text
        agent = {
            "model": {"provider": "openai", "modelId": "gpt-4o-mini", **url_fields},
            "tools": {"registered": [], "enabled": [], "mcpEndpoints": [trap]},
            "config": url_fields,
            "metadata": url_fields,
        }
        url = rig.session(http, agent)
        message = {"role": "user", "content": "x", "metadata": url_fields}
        assert http.post(url, json=message).status_code == 200
        # Model names that look like URLs or paths name no provider, or stay under the model path.
        for model in (
            trap,
            f"openai:{trap}",
            f"gemini:@127.0.0.1:{rig.trap.port}",
            "gemini:../../../v1/files",
            f"gemini:..%2F..%2F..%2F{rig.trap.port}",
            f"gemini:http://127.0.0.1:{rig.trap.port}/",
        ):
            answer = http.post(
                "/v1/chat/completions",
                json={"model": model, "messages": [{"role": "user", "content": "x"}]},
            )
            assert answer.status_code < 500 or answer.status_code == 503, answer.text
    for record in rig.sims["gemini"].requests:
        assert record.path.startswith("/v1beta/models/"), record.path
    assert rig.sims["openai"].request_count >= 2
    assert rig.trap.received == []


# -- upstream redirects ---------------------------------------------------------------------------


def _redirected_calls(rig: Rig) -> list[httpx.Response]:
    chat = {
        "model": "redir:gpt-4o-mini",
        "fallbacks": ["openai:gpt-4o-mini"],
        "messages": [{"role": "user", "content": "x"}],
    }
    with rig.client() as http:
        answers = [
            http.post("/v1/chat/completions", json=chat),
            http.post("/v1/chat/completions", json={**chat, "stream": True}),
        ]
        url = rig.session(
            http, {"model": "redir:gpt-4o-mini", "config": {"fallbackModel": "openai:gpt-4o-mini"}}
        )
        answers.append(http.post(url, json={"role": "user", "content": "x"}))
        alone = {**chat, "fallbacks": []}
        answers.append(http.post("/v1/chat/completions", json=alone))
    return answers


def test_upstream_redirects_are_not_followed(rig: Rig) -> None:
    _redirected_calls(rig)
    assert len(rig.redir.received) == 4
    assert rig.trap.received == []


def test_an_upstream_redirect_fails_over_or_is_an_error(rig: Rig) -> None:
    *with_fallback, alone = _redirected_calls(rig)
    for answer in with_fallback:
        assert answer.status_code in (200, 207), answer.text
        assert answer.headers["x-gateway-fallback"] == "true"
    # Alone, the redirect is a failed candidate like any other: never a 3xx handed to the client.
    assert alone.status_code in (502, 503), alone.text
    assert alone.json()["error"]["code"] in ("upstream_invalid_response", "no_provider_available")


# -- log lines escape client text -----------------------------------------------------------------

FORGED = '{"level":"error","event":"forged","logger":"gateway"}'


def test_client_text_cannot_forge_log_lines_and_prompts_are_not_logged(rig: Rig) -> None:
    marker = f"prompt-marker-{uuid.uuid4().hex}"
    text = f"{marker}\n{FORGED}\r\n{FORGED}\u2028{FORGED}"
    with rig.client() as http:
        for model in ("openai:gpt-4o-mini", "gemini:gemini-2.0-flash"):
            chat = {"model": model, "messages": [{"role": "user", "content": text}]}
            assert http.post("/v1/chat/completions", json=chat).status_code == 200
            streamed = http.post("/v1/chat/completions", json={**chat, "stream": True})
            assert streamed.status_code == 200
            url = rig.session(http, {"model": model})
            assert http.post(url, json={"role": "user", "content": text}).status_code == 200
            assert (
                http.post(f"{url}?stream=true", json={"role": "user", "content": text}).status_code
                == 207
            )
        # Client text that does reach the log: the path, and error paths with a bad model.
        http.get(f"/agents/x%0A{quote(FORGED)}")
        http.post(
            "/v1/chat/completions",
            json={
                "model": f"nope:{marker}\n{FORGED}",
                "messages": [{"role": "user", "content": text}],
            },
        )
        http.get("/agents", headers={"x-request-id": "forged-id"})
    deadline = time.monotonic() + 10  # the request line is written just after the answer
    while "forged-id" not in rig.gateway.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    events = rig.gateway.log_events()  # every line parses as one JSON object
    assert not [e for e in events if e.get("event") == "forged"]
    assert any(e.get("path", "").startswith("/agents/x\n") for e in events)
    assert marker not in rig.gateway.log_text()


# -- open paths do not open anything else ---------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/health/../agents",
        "/health/%2e%2e/agents",
        "/health/..%2Fagents",
        "/metrics/../v1/models",
        "/schema/../agents",
        "/schema/..;/agents",
        "/admin/../agents",
        "//agents",
        "/agents/",
        "/AGENTS",
        "/v1//models",
    ],
)
def test_unauthenticated_path_tricks_reach_nothing(rig: Rig, path: str) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    status, _, body = raw_http(rig.gateway.port, request)
    assert status in (401, 404), (status, body[:300])


# -- redaction is not an oracle -------------------------------------------------------------------
#
# Redaction replaces any 8-character piece of a key. Applied to text that quotes the client, it answers
# "is this string a piece of a key?": starting from a public prefix (OpenAI keys start "sk-proj-"),
# one guess per character extends the known piece, and the whole key comes out in a few thousand
# requests. Text the client wrote must come back the same whether or not it matches a key.


def _same_but_for(first: str, second: str, guess: str, control: str) -> None:
    assert first.replace(guess, "GUESS") == second.replace(control, "GUESS"), (first, second)


def test_gateway_messages_quoting_the_client_are_not_a_redaction_oracle(rig: Rig) -> None:
    key = CANARY_KEYS["openai"]
    guess, control = key[:8], key[:7] + "Z"  # a piece of the key, and a string that is not one
    with rig.gateway.client() as anonymous:  # no client key at all
        first = anonymous.get(f"/{guess}").text
        second = anonymous.get(f"/{control}").text
    _same_but_for(first, second, guess, control)
    with rig.client() as http:
        for make in (
            lambda g: {"model": g, "messages": [{"role": "user", "content": "x"}]},
            lambda g: {"model": f"openai:{g}", "fallbacks": [g], "messages": []},
        ):
            first = http.post("/v1/chat/completions", json=make(guess)).text
            second = http.post("/v1/chat/completions", json=make(control)).text
            _same_but_for(first, second, guess, control)


def test_upstream_text_quoting_the_client_is_not_a_redaction_oracle(rig: Rig) -> None:
    guess, control = ECHO_KEY[5:13], ECHO_KEY[5:12] + "Z"
    answers = []
    with rig.client() as http:
        for user in (guess, control):
            chat = {
                "model": "echo:gpt-4o-mini",
                "user": user,
                "messages": [{"role": "user", "content": "x"}],
            }
            answer = http.post("/v1/chat/completions", json=chat)
            assert answer.status_code == 400, answer.text  # passed back to the client
            answers.append(answer.text)
    assert len(rig.echo.received) == 2
    _same_but_for(answers[0], answers[1], guess, control)
