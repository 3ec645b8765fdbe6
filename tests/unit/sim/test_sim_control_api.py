"""The `/_sim` HTTP control API mirrors the Python API and the request log
never exposes secrets."""

from __future__ import annotations

import httpx

from gateway.sim import SimCluster
from gateway.sim.requestlog import REDACTED

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def test_post_faults_with_camel_case_fields_sets_the_plan(
    sims: SimCluster, http: httpx.Client
) -> None:
    base = sims["openai"].base_url
    fields = {
        "statuses": [503, 429],
        "statusAlways": None,
        "retryAfter": 3,
        "errorMessage": "from the test",
        "latencyMs": 0,
        "hang": False,
        "cutAfterChunks": 4,
        "stallAfterChunks": None,
    }
    response = http.post(base + "/_sim/faults", json=fields)

    assert response.status_code == 200
    assert response.json() == {**fields, "chunkDelayMs": 0}
    plan = sims["openai"].fault_plan
    assert plan.statuses == (503, 429)
    assert plan.retry_after == 3
    assert plan.cut_after_chunks == 4
    assert http.get(base + "/_sim/faults").json()["statuses"] == [503, 429]

    answer = http.post(
        sims.endpoint("openai") + "/chat/completions", json=CHAT, headers={"authorization": "x"}
    )
    assert answer.status_code == 503
    assert answer.json()["error"]["message"] == "from the test"
    assert answer.headers["retry-after"] == "3"


def test_post_faults_merges_and_delete_resets(sims: SimCluster, http: httpx.Client) -> None:
    base = sims["gemini"].base_url
    http.post(base + "/_sim/faults", json={"latencyMs": 5})
    merged = http.post(base + "/_sim/faults", json={"statusAlways": 500}).json()
    assert (merged["latencyMs"], merged["statusAlways"]) == (5, 500)

    reset = http.delete(base + "/_sim/faults")
    assert reset.status_code == 200
    assert reset.json()["statusAlways"] is None
    assert sims["gemini"].fault_plan.is_clear


def test_invalid_fault_fields_are_rejected_with_400(sims: SimCluster, http: httpx.Client) -> None:
    base = sims["openai"].base_url
    for body in ({"bogus": 1}, {"statuses": [200]}, {"latencyMs": -1}, {"hang": "yes"}, [1]):
        response = http.post(base + "/_sim/faults", json=body)
        assert response.status_code == 400, body
        assert "error" in response.json()
    invalid_json = http.post(base + "/_sim/faults", content=b"{nope")
    assert invalid_json.status_code == 400
    assert sims["openai"].fault_plan.is_clear


def test_request_log_records_requests_and_redacts_keys(
    sims: SimCluster, http: httpx.Client
) -> None:
    http.post(
        sims.endpoint("openai") + "/chat/completions",
        headers={"authorization": "Bearer sim-key"},
        json={**CHAT, "stream": True},
    )
    http.post(
        sims.endpoint("gemini") + "/models/gemini-2.0-flash:generateContent?key=sim-key",
        headers={"x-goog-api-key": "sim-key"},
        json={"contents": [{"parts": [{"text": "hi"}]}]},
    )
    http.get(
        sims.endpoint("anthropic") + "/v1/models",
        headers={"x-api-key": "sim-key", "anthropic-version": "2023-06-01"},
    )

    (openai,) = http.get(sims["openai"].base_url + "/_sim/requests").json()
    assert openai["method"] == "POST"
    assert openai["path"] == "/v1/chat/completions"
    assert openai["model"] == "gpt-4o-mini"
    assert openai["stream"] is True
    assert openai["status"] == 200
    assert isinstance(openai["time"], float)
    assert openai["headers"]["authorization"] == f"Bearer {REDACTED}"
    assert openai["body"]["messages"][0]["content"] == "hi"

    (gemini,) = http.get(sims["gemini"].base_url + "/_sim/requests").json()
    assert gemini["model"] == "gemini-2.0-flash"
    assert gemini["stream"] is False
    assert gemini["headers"]["x-goog-api-key"] == REDACTED
    assert gemini["query"]["key"] == REDACTED

    (anthropic,) = sims["anthropic"].requests
    assert anthropic.headers["x-api-key"] == REDACTED
    for server in sims:
        assert "sim-key" not in str([r.to_json() for r in server.requests])


def test_delete_requests_clears_the_log_and_control_calls_are_not_logged(
    sims: SimCluster, http: httpx.Client
) -> None:
    server = sims["open"]
    http.get(sims.endpoint("open") + "/models")
    http.get(sims.endpoint("open") + "/models")
    assert server.request_count == 2

    cleared = http.delete(server.base_url + "/_sim/requests")
    assert cleared.json() == {"cleared": 2}
    assert server.request_count == 0
    assert http.get(server.base_url + "/_sim/requests").json() == []
    assert server.requests == []


def test_info_and_unknown_control_endpoint(sims: SimCluster, http: httpx.Client) -> None:
    info = http.get(sims["anthropic"].base_url + "/_sim/info").json()
    assert info["name"] == "anthropic"
    assert info["wire"] == "anthropic"
    assert info["auth"] is True

    assert http.get(sims["anthropic"].base_url + "/_sim/nope").status_code == 404


def test_python_api_matches_http_api(sims: SimCluster, http: httpx.Client) -> None:
    server = sims["openai"]
    server.set_faults(statuses=[502], latency_ms=1)
    assert http.get(server.base_url + "/_sim/faults").json()["statuses"] == [502]
    server.clear_faults()
    assert http.get(server.base_url + "/_sim/faults").json()["statuses"] == []
    http.get(sims.endpoint("openai") + "/models", headers={"authorization": "Bearer sim-key"})
    assert server.request_count == 1
    server.clear_requests()
    assert http.get(server.base_url + "/_sim/requests").json() == []
