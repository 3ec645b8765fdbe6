"""The Gemini-wire simulator answers like the Generative Language API v1beta."""

from __future__ import annotations

import json
from typing import Any

import httpx

from gateway.sim import SimCluster

KEY = {"x-goog-api-key": "sim-key"}
EXPECTED = "Hello from gemini/gemini-2.0-flash: you said 'hi there'"


def _body(**extra: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": "hi there"}]}], **extra}


def _url(sims: SimCluster, verb: str, model: str = "gemini-2.0-flash") -> str:
    return f"{sims.endpoint('gemini')}/models/{model}:{verb}"


def test_generate_content_returns_candidate_usage_and_model_version(
    sims: SimCluster, http: httpx.Client
) -> None:
    body = _body(systemInstruction={"parts": [{"text": "be brief"}]})
    response = http.post(_url(sims, "generateContent"), headers=KEY, json=body)

    assert response.status_code == 200
    data = response.json()
    candidate = data["candidates"][0]
    assert candidate["content"] == {"role": "model", "parts": [{"text": EXPECTED}]}
    assert candidate["finishReason"] == "STOP"
    assert data["usageMetadata"] == {
        "promptTokenCount": 4,
        "candidatesTokenCount": 7,
        "totalTokenCount": 11,
    }
    assert data["modelVersion"] == "gemini-2.0-flash"


def test_stream_generate_content_sends_one_sse_frame_per_word(
    sims: SimCluster, http: httpx.Client
) -> None:
    url = _url(sims, "streamGenerateContent") + "?alt=sse"
    with http.stream("POST", url, headers=KEY, json=_body()) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read()
    frames = [json.loads(f.removeprefix(b"data: ")) for f in raw.split(b"\r\n\r\n") if f]

    texts = [f["candidates"][0]["content"]["parts"][0]["text"] for f in frames]
    assert "".join(texts) == EXPECTED
    assert len(frames) == 7
    assert [f["candidates"][0].get("finishReason") for f in frames] == [None] * 6 + ["STOP"]
    assert frames[-1]["usageMetadata"]["totalTokenCount"] == 2 + 7
    assert {f["modelVersion"] for f in frames} == {"gemini-2.0-flash"}


def test_key_query_parameter_is_accepted(sims: SimCluster, http: httpx.Client) -> None:
    response = http.post(_url(sims, "generateContent") + "?key=sim-key", json=_body())
    assert response.status_code == 200


def test_wrong_key_gets_401_in_gemini_error_shape(sims: SimCluster, http: httpx.Client) -> None:
    wrong = http.post(_url(sims, "generateContent"), headers={"x-goog-api-key": "no"}, json=_body())
    missing = http.post(_url(sims, "generateContent"), json=_body())

    for response in (wrong, missing):
        assert response.status_code == 401
        error = response.json()["error"]
        assert error["code"] == 401
        assert error["status"] == "UNAUTHENTICATED"
        assert error["message"]


def test_max_output_tokens_truncates_with_max_tokens_reason(
    sims: SimCluster, http: httpx.Client
) -> None:
    body = _body(generationConfig={"maxOutputTokens": 2})
    data = http.post(_url(sims, "generateContent"), headers=KEY, json=body).json()
    assert data["candidates"][0]["content"]["parts"][0]["text"] == "Hello from "
    assert data["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_missing_contents_gets_400_invalid_argument(sims: SimCluster, http: httpx.Client) -> None:
    response = http.post(_url(sims, "generateContent"), headers=KEY, json={})
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_model_list_and_unknown_method_404(sims: SimCluster, http: httpx.Client) -> None:
    listing = http.get(sims.endpoint("gemini") + "/models", headers=KEY).json()
    assert "models/gemini-2.0-flash" in [m["name"] for m in listing["models"]]

    response = http.post(_url(sims, "embedContent"), headers=KEY, json=_body())
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
