"""Failover over the simulators: which failures move traffic to the fallback, and which do not."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from gateway.config.settings import Settings
from gateway.sim.cluster import SimCluster
from tests.integration.support import ServerThread, new_session


def _ask(client: httpx.Client, url: str, text: str = "hi") -> httpx.Response:
    return client.post(url, json={"role": "user", "content": text})


def _stream(client: httpx.Client, url: str) -> tuple[httpx.Response, list[dict[str, object]]]:
    with client.stream(
        "POST", f"{url}?stream=true", json={"role": "user", "content": "a b c d e f g"}
    ) as r:
        frames = [json.loads(line[5:]) for line in r.iter_lines() if line.startswith("data:")]
    return r, frames


def test_fallback_when_primary_key_missing(
    settings_factory: Callable[..., Settings],
    sim_env: dict[str, str],
    start_gateway: Callable[..., ServerThread],
    sims: SimCluster,
) -> None:
    env = {k: v for k, v in sim_env.items() if k != "OPENAI_API_KEY"}
    server = start_gateway(settings_factory(env=env))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        reply = _ask(client, new_session(client))
    assert reply.status_code == 200
    routing = reply.json()["routing"]
    assert routing["servedModel"] == "gemini:gemini-1.5-flash"
    assert routing["fallback"] is True
    assert routing["reason"] == "not_configured"
    assert routing["attempts"][0] == {
        "provider": "openai",
        "model": "openai:gpt-4o-mini",
        "outcome": "skipped",
        "latencyMs": 0.0,
        "reason": "not_configured",
    }
    assert reply.headers["x-gateway-fallback"] == "true"
    assert reply.headers["x-gateway-attempts"] == "1"
    assert sims["openai"].request_count == 0


def test_fallback_on_503(client: httpx.Client, sims: SimCluster) -> None:
    sims["openai"].set_faults(status_always=503)
    reply = _ask(client, new_session(client))
    assert reply.status_code == 200
    routing = reply.json()["routing"]
    assert [a["outcome"] for a in routing["attempts"]] == ["server_error", "success"]
    assert routing["servedModel"] == "gemini:gemini-1.5-flash"
    assert reply.headers["x-gateway-attempts"] == "2"
    assert sims["openai"].request_count == 1


def test_fallback_on_connection_refused(client: httpx.Client, sims: SimCluster) -> None:
    sims["openai"].refuse()
    reply = _ask(client, new_session(client))
    assert reply.status_code == 200
    outcomes = [a["outcome"] for a in reply.json()["routing"]["attempts"]]
    assert outcomes == ["connect_error", "success"]


def test_fallback_on_429_and_primary_cools_for_retry_after(
    client: httpx.Client, sims: SimCluster
) -> None:
    sims["openai"].set_faults(statuses=[429], retry_after=30)
    url = new_session(client)
    first = _ask(client, url).json()["routing"]
    assert [a["outcome"] for a in first["attempts"]] == ["rate_limited", "success"]
    second = _ask(client, url).json()["routing"]
    assert second["attempts"][0]["outcome"] == "skipped"
    assert second["reason"] == "cooling"
    assert sims["openai"].request_count == 1


def test_fallback_on_401_marks_the_key_unusable_until_reload(
    client: httpx.Client, sims: SimCluster
) -> None:
    sims["openai"].set_faults(statuses=[401])
    url = new_session(client)
    assert [a["outcome"] for a in _ask(client, url).json()["routing"]["attempts"]] == [
        "auth_error",
        "success",
    ]
    again = _ask(client, url).json()["routing"]
    assert again["reason"] == "not_configured"
    assert sims["openai"].request_count == 1
    health = {p["provider"]: p for p in client.get("/health").json()["providers"]}
    assert health["openai"]["keyRejected"] is True


def test_fallback_on_stream_cut_before_first_byte(client: httpx.Client, sims: SimCluster) -> None:
    sims["openai"].set_faults(cut_after_chunks=0)
    response, frames = _stream(client, new_session(client))
    assert response.status_code == 207
    assert response.headers["x-gateway-model"] == "gemini:gemini-1.5-flash"
    assert response.headers["x-gateway-fallback"] == "true"
    assert frames[-1]["type"] == "end"
    text = "".join(str(f.get("delta", "")) for f in frames)
    assert text.startswith("Hello from gemini/gemini-1.5-flash")


def test_stream_cut_after_content_ends_with_an_error_frame(
    client: httpx.Client, sims: SimCluster
) -> None:
    sims["openai"].set_faults(cut_after_chunks=4)
    url = new_session(client)
    response, frames = _stream(client, url)
    assert response.status_code == 207
    assert response.headers["x-gateway-model"] == "openai:gpt-4o-mini"
    assert frames[-1]["type"] == "error"
    assert frames[-1]["done"] is True
    assert all(f["type"] != "end" for f in frames)
    # The session is not stuck: the next message works and the broken reply was not stored as done.
    sims["openai"].clear_faults()
    assert _ask(client, url).status_code == 200
    roles = [m["role"] for m in client.get(url).json()["messages"]]
    assert roles == ["user", "user", "assistant"]


def test_no_fallback_on_400(client: httpx.Client, sims: SimCluster) -> None:
    sims["openai"].set_faults(statuses=[400], error_message="context_length_exceeded: too long")
    url = new_session(client)
    reply = _ask(client, url)
    assert reply.status_code == 400
    body = reply.json()
    assert body["code"] == "upstream_client_error"
    assert "too long" in body["message"]
    assert body["details"]["upstreamStatus"] == 400
    assert sims["gemini"].request_count == 0


def test_session_keeps_working_after_every_candidate_failed(
    client: httpx.Client, sims: SimCluster
) -> None:
    sims["openai"].set_faults(status_always=500)
    sims["gemini"].set_faults(status_always=503)
    url = new_session(client)
    failed = _ask(client, url)
    assert failed.status_code == 503
    body = failed.json()
    assert body["code"] == "no_provider_available"
    assert [a["outcome"] for a in body["details"]["attempts"]] == ["server_error", "server_error"]
    assert int(failed.headers["retry-after"]) >= 1
    session_url = url.rsplit("/", 1)[0]
    assert client.get(session_url).json()["state"] == "errored"

    sims["openai"].clear_faults()
    sims["gemini"].clear_faults()
    recovered = _ask(client, url)
    assert recovered.status_code == 200
    assert client.get(session_url).json()["state"] == "completed"


def test_stream_errors_before_the_first_byte_keep_their_status(
    client: httpx.Client, sims: SimCluster
) -> None:
    sims["openai"].set_faults(status_always=503)
    sims["gemini"].set_faults(status_always=503)
    response, _ = _stream(client, new_session(client))
    assert response.status_code == 503


def test_removing_a_key_and_reloading_takes_effect_without_restart(
    settings_factory: Callable[..., Settings],
    sim_env: dict[str, str],
    start_gateway: Callable[..., ServerThread],
    sims: SimCluster,
) -> None:
    env = dict(sim_env)
    server = start_gateway(
        settings_factory(env=env), settings_loader=lambda: settings_factory(env=env)
    )
    with httpx.Client(base_url=server.url, timeout=10) as client:
        url = new_session(client)
        assert _ask(client, url).json()["routing"]["servedModel"] == "openai:gpt-4o-mini"
        del env["OPENAI_API_KEY"]
        reloaded = client.post("/admin/reload").json()
        assert reloaded["providers"]["openai"] == "not-configured"
        calls = sims["openai"].request_count
        assert _ask(client, url).json()["routing"]["reason"] == "not_configured"
        assert sims["openai"].request_count == calls
        env["OPENAI_API_KEY"] = sim_env["OPENAI_API_KEY"]
        client.post("/admin/reload")
        assert _ask(client, url).json()["routing"]["servedModel"] == "openai:gpt-4o-mini"


def test_drained_provider_is_skipped_until_restored(client: httpx.Client, sims: SimCluster) -> None:
    url = new_session(client)
    assert client.post("/admin/providers/openai/drain").json()["drained"] is True
    assert _ask(client, url).json()["routing"]["reason"] == "drained"
    client.post("/admin/providers/openai/restore")
    assert _ask(client, url).json()["routing"]["servedModel"] == "openai:gpt-4o-mini"
    assert sims["openai"].request_count == 1
