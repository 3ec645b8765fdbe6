"""Errors under /v1 come in OpenAI's shape with statuses the SDK understands (and does not retry)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from structlog.testing import capture_logs

from gateway.config.settings import Settings
from gateway.sim.cluster import SimCluster
from tests.integration.support import ServerThread
from tests.integration.v1.helpers import metric_value, user

MESSAGES = [user("hi")]


def _assert_openai_error(
    response: httpx.Response, status: int, code: str, param: str | None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["type"]
    assert error.get("param") == param
    assert "Traceback" not in response.text
    return dict(error)


@pytest.mark.parametrize(
    ("model", "fallbacks", "param"),
    [
        ("gpt-4o", [], "model"),  # a bare name that is no alias or route
        ("nope:some-model", [], "model"),  # unknown provider
        ("openai:gpt-4o-mini", ["zzz:y"], "fallbacks[0]"),
    ],
)
def test_unknown_model_is_404_model_not_found(
    sdk: openai.OpenAI, sims: SimCluster, model: str, fallbacks: list[str], param: str
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(
            model=model, messages=MESSAGES, extra_body={"fallbacks": fallbacks}
        )
    error = caught.value
    assert error.status_code == 404
    assert error.code == "model_not_found"
    assert error.type == "not_found_error"
    assert error.param == param
    assert "/v1/models" in error.message
    assert sum(s.request_count for s in sims) == 0


@pytest.mark.parametrize(
    ("payload", "code", "param"),
    [
        (b"{not json", "invalid_request", "$"),
        (b"", "invalid_request", "$"),
        (b"[1, 2]", "invalid_request", "$"),
        ({"messages": MESSAGES}, "invalid_request", "model"),
        ({"model": 42, "messages": MESSAGES}, "invalid_request", "model"),
        ({"model": "openai:gpt-4o-mini"}, "invalid_request", "messages"),
        ({"model": "openai:gpt-4o-mini", "messages": []}, "invalid_request", "messages"),
        ({"model": "openai:gpt-4o-mini", "messages": ["hi"]}, "invalid_request", "messages[0]"),
        (
            {"model": "openai:gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]},
            "invalid_request",
            "messages[0].role",
        ),
        (
            {"model": "openai:gpt-4o-mini", "messages": [{"role": "user"}]},
            "invalid_request",
            "messages[0].content",
        ),
        (
            {"model": "openai:gpt-4o-mini", "messages": [{"role": "user", "content": 3}]},
            "invalid_request",
            "messages[0].content",
        ),
        (
            {
                "model": "openai:gpt-4o-mini",
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "what is this?"},
                            {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                        ],
                    }
                ],
            },
            "unsupported_parameter",
            "messages[0].content",
        ),
        (
            {
                "model": "openai:gpt-4o-mini",
                "messages": [*MESSAGES, {"role": "tool", "content": "1"}],
            },
            "invalid_request",
            "messages[1].tool_call_id",
        ),
        (
            {"model": "openai:gpt-4o-mini", "messages": MESSAGES, "temperature": "hot"},
            "invalid_request",
            "temperature",
        ),
        (
            {"model": "openai:gpt-4o-mini", "messages": MESSAGES, "max_tokens": 0},
            "invalid_request",
            "max_tokens",
        ),
        (
            {"model": "openai:gpt-4o-mini", "messages": MESSAGES, "stream": "yes"},
            "invalid_request",
            "stream",
        ),
        (
            {"model": "openai:gpt-4o-mini", "messages": MESSAGES, "n": 2},
            "unsupported_parameter",
            "n",
        ),
        (
            {"model": "openai:gpt-4o-mini", "messages": MESSAGES, "stop": [1]},
            "invalid_request",
            "stop",
        ),
        (
            {"model": "openai:gpt-4o-mini", "messages": MESSAGES, "tools": [{"type": "function"}]},
            "invalid_request",
            "tools[0].function",
        ),
        (
            {"model": "openai:gpt-4o-mini", "messages": MESSAGES, "fallbacks": "gemini:flash-1.5"},
            "invalid_request",
            "fallbacks",
        ),
    ],
)
def test_invalid_bodies_are_400_with_the_param(
    raw: httpx.Client, sims: SimCluster, payload: bytes | dict[str, Any], code: str, param: str
) -> None:
    if isinstance(payload, bytes):
        response = raw.post(
            "/v1/chat/completions",
            content=payload,
            headers={"content-type": "application/json"},
        )
    else:
        response = raw.post("/v1/chat/completions", json=payload)
    error = _assert_openai_error(response, 400, code, param)
    assert error["type"] == "invalid_request_error"
    assert sum(s.request_count for s in sims) == 0


def test_bad_role_is_a_bad_request_for_the_sdk(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="openai:gpt-4o-mini",
            messages=[{"role": "wizard", "content": "x"}],  # type: ignore[list-item,misc]
        )
    assert caught.value.param == "messages[0].role"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    "case",
    [("gemini:flash-1.5", "logprobs", True), ("anthropic:haiku", "seed", 7)],
    ids=["gemini-logprobs", "anthropic-seed"],
)
def test_untranslatable_parameter_is_400_naming_it_with_no_upstream_call(
    sdk: openai.OpenAI,
    raw: httpx.Client,
    sims: SimCluster,
    case: tuple[str, str, object],
    stream: bool,
) -> None:
    model, param, value = case
    provider = model.partition(":")[0]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model=model,
            messages=MESSAGES,
            stream=stream,
            # A fallback that could take the parameter: it must not be tried either.
            extra_body={param: value, "fallbacks": ["openai:gpt-4o-mini"]},
        )
    error = caught.value
    assert error.code == "unsupported_parameter"
    assert error.param == param
    assert provider in error.message
    assert sum(s.request_count for s in sims) == 0
    # Not a provider failure: nothing counted against it, the provider stays up.
    assert metric_value(raw, "gateway_upstream_requests_total", provider=provider) == 0
    assert metric_value(raw, "gateway_provider_up", provider=provider) == 1


def test_sdk_does_not_retry_a_gateway_400(v1_gateway: ServerThread, raw: httpx.Client) -> None:
    with openai.OpenAI(base_url=f"{v1_gateway.url}/v1", api_key="k", timeout=10) as client:
        assert client.max_retries > 0
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model="openai:gpt-4o-mini",
                messages=MESSAGES,
                temperature="hot",  # type: ignore[arg-type]
            )
    seen = metric_value(raw, "gateway_request_duration_seconds_count", api="openai")
    assert seen == 1


def test_sdk_does_not_retry_an_upstream_400(v1_gateway: ServerThread, sims: SimCluster) -> None:
    sims["openai"].set_faults(statuses=[400, 400, 400], error_message="context_length_exceeded")
    with (
        openai.OpenAI(base_url=f"{v1_gateway.url}/v1", api_key="k", timeout=10) as client,
        pytest.raises(openai.BadRequestError) as caught,
    ):
        client.chat.completions.create(model="chat", messages=MESSAGES)
    assert "context_length_exceeded" in caught.value.message
    assert caught.value.code == "upstream_client_error"
    assert sims["openai"].request_count == 1
    assert sims["gemini"].request_count == 0  # a client error is not failed over


def test_oversized_body_is_413_in_openai_shape(
    v1_settings: Callable[..., Settings], start_gateway: Callable[..., ServerThread]
) -> None:
    server = start_gateway(v1_settings(server={"maxBodyBytes": 2048}))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "openai:gpt-4o-mini", "messages": [user("x" * 5000)]},
        )
    _assert_openai_error(response, 413, "payload_too_large", None)


def test_wrong_method_and_unknown_path_are_openai_errors(raw: httpx.Client) -> None:
    _assert_openai_error(raw.get("/v1/chat/completions"), 405, "method_not_allowed", None)
    _assert_openai_error(raw.get("/v1/nope"), 404, "not_found", None)


@pytest.fixture
def no_retry_sdk(v1_gateway: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{v1_gateway.url}/v1", api_key="k", max_retries=0) as client:
        yield client


def test_rate_limited_primary_falls_back_and_cools(
    no_retry_sdk: openai.OpenAI, sims: SimCluster
) -> None:
    sims["openai"].set_faults(statuses=[429], retry_after=30)
    first = no_retry_sdk.chat.completions.with_raw_response.create(model="chat", messages=MESSAGES)
    assert first.headers["x-gateway-fallback"] == "true"
    sims["gemini"].set_faults(status_always=503)
    with pytest.raises(openai.InternalServerError) as caught:
        no_retry_sdk.chat.completions.create(model="chat", messages=MESSAGES)
    # openai is cooling for its Retry-After: the client is told how long to wait.
    assert int(caught.value.response.headers["retry-after"]) >= 25
    assert sims["openai"].request_count == 1


def test_chat_route_is_in_the_served_openapi_document_and_posts_only(raw: httpx.Client) -> None:
    document = raw.get("/schema/openapi.json").json()
    operation = document["paths"]["/v1/chat/completions"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "model",
        "messages",
    ]
    assert set(document["paths"]["/v1/chat/completions"]) == {"post"}
    for method in ("PUT", "DELETE", "PATCH"):
        response = raw.request(method, "/v1/chat/completions", json={})
        _assert_openai_error(response, 405, "method_not_allowed", None)
        assert response.headers["allow"] == "POST"


def test_an_error_answer_carries_the_request_id_and_is_logged_with_its_status(
    raw: httpx.Client,
) -> None:
    # The call is served past Litestar's router (``GatewayApp``): its error still passes the
    # request middleware, as it did inside Litestar's route.
    with capture_logs() as logs:
        response = raw.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": MESSAGES},
            headers={"X-Request-ID": "err-7"},
        )
        deadline = time.monotonic() + 5
        while (
            not [e for e in logs if e.get("request_id") == "err-7"] and time.monotonic() < deadline
        ):
            time.sleep(0.01)
    _assert_openai_error(response, 404, "model_not_found", "model")
    assert response.headers["x-request-id"] == "err-7"
    lines = [e for e in logs if e["event"] == "request" and e.get("request_id") == "err-7"]
    assert [line["status"] for line in lines] == [404]
