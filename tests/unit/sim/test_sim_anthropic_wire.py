"""The Anthropic-wire simulator answers like the Messages API."""

from __future__ import annotations

import json
from typing import Any

import httpx

from gateway.sim import SimCluster

HEADERS = {"x-api-key": "sim-key", "anthropic-version": "2023-06-01"}
EXPECTED = "Hello from anthropic/claude-3-5-haiku-latest: you said 'hi there'"


def _body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-3-5-haiku-latest",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "hi there"}],
        **extra,
    }


def _url(sims: SimCluster) -> str:
    return sims.endpoint("anthropic") + "/v1/messages"


def _events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.split("\n\n"):
        if not block:
            continue
        event_line, data_line = block.split("\n")
        out.append(
            (event_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: ")))
        )
    return out


def test_message_has_text_content_end_turn_and_usage(sims: SimCluster, http: httpx.Client) -> None:
    body = _body(system=[{"type": "text", "text": "be brief"}])
    response = http.post(_url(sims), headers=HEADERS, json=body)

    assert response.status_code == 200
    data = response.json()
    assert data["type"] == "message"
    assert data["role"] == "assistant"
    assert data["id"].startswith("msg_")
    assert data["model"] == "claude-3-5-haiku-latest"
    assert data["content"] == [{"type": "text", "text": EXPECTED}]
    assert data["stop_reason"] == "end_turn"
    assert data["usage"] == {"input_tokens": 4, "output_tokens": 7}


def test_stream_follows_the_anthropic_event_sequence(sims: SimCluster, http: httpx.Client) -> None:
    with http.stream("POST", _url(sims), headers=HEADERS, json=_body(stream=True)) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response.read().decode())

    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 7,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(payload["type"] == name for name, payload in events)
    assert events[0][1]["message"]["usage"]["input_tokens"] == 2
    deltas = [p["delta"] for n, p in events if n == "content_block_delta"]
    assert {d["type"] for d in deltas} == {"text_delta"}
    assert "".join(d["text"] for d in deltas) == EXPECTED
    message_delta = events[-2][1]
    assert message_delta["delta"]["stop_reason"] == "end_turn"
    assert message_delta["usage"]["output_tokens"] == 7


def test_missing_max_tokens_gets_400_invalid_request_error(
    sims: SimCluster, http: httpx.Client
) -> None:
    body = _body()
    del body["max_tokens"]
    response = http.post(_url(sims), headers=HEADERS, json=body)

    assert response.status_code == 400
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in response.json()["error"]["message"]


def test_missing_anthropic_version_gets_400(sims: SimCluster, http: httpx.Client) -> None:
    response = http.post(_url(sims), headers={"x-api-key": "sim-key"}, json=_body())
    assert response.status_code == 400
    assert "anthropic-version" in response.json()["error"]["message"]


def test_wrong_key_gets_401_authentication_error(sims: SimCluster, http: httpx.Client) -> None:
    wrong = http.post(_url(sims), headers={**HEADERS, "x-api-key": "nope"}, json=_body())
    missing = http.post(_url(sims), headers={"anthropic-version": "2023-06-01"}, json=_body())

    for response in (wrong, missing):
        assert response.status_code == 401
        assert response.json() == {
            "type": "error",
            "error": {
                "type": "authentication_error",
                "message": response.json()["error"]["message"],
            },
        }


def test_max_tokens_limit_stops_with_max_tokens_reason(
    sims: SimCluster, http: httpx.Client
) -> None:
    data = http.post(_url(sims), headers=HEADERS, json=_body(max_tokens=1)).json()
    assert data["content"][0]["text"] == "Hello "
    assert data["stop_reason"] == "max_tokens"


def test_unknown_path_gets_404_not_found_error(sims: SimCluster, http: httpx.Client) -> None:
    response = http.post(sims.endpoint("anthropic") + "/v1/complete", headers=HEADERS, json={})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
