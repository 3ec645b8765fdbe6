"""AgentOS API (Agno-Go compatible): agents, sessions, messages, with 207 SSE streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import structlog
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromPath
from litestar.types import ASGIApp

from gateway.api.answers import EventStreamAnswer, FinalFrame, JsonAnswer
from gateway.api.auth import scope_of
from gateway.api.bodies import (
    AgentBody,
    MessageBody,
    SessionBody,
    agent_spec,
    chat_messages,
    check_uuid,
    decode,
)
from gateway.api.context import gateway_of, note_routing
from gateway.api.disconnect import connected_guard
from gateway.api.limits import check_request_limits
from gateway.api.raw_request import header, read_body
from gateway.api.responses import encode, json_response, rfc3339
from gateway.domain.agents import RouteChoice, StreamingReply
from gateway.errors import GatewayError, InvalidRequestError
from gateway.store.records import AgentRecord, MessageRecord, SessionRecord

log = structlog.get_logger("gateway.api")
AnyRequest = Request[Any, Any, Any]


def agent_json(record: AgentRecord) -> dict[str, Any]:
    return {
        "agentId": record.id,
        "id": record.id,
        **record.data,
        "createdAt": rfc3339(record.created_at),
        "updatedAt": rfc3339(record.updated_at),
    }


def session_json(record: SessionRecord) -> dict[str, Any]:
    return {
        "sessionId": record.id,
        "agentId": record.agent_id,
        "state": record.state,
        "userId": record.user_id,
        "metadata": dict(record.metadata),
        "createdAt": rfc3339(record.created_at),
        "updatedAt": rfc3339(record.updated_at),
    }


def message_json(record: MessageRecord) -> dict[str, Any]:
    return {
        "messageId": record.id,
        "role": record.role,
        "content": record.content,
        "toolCalls": list(record.tool_calls) if record.tool_calls else None,
        "usage": dict(record.usage) if record.usage else None,
        "routing": dict(record.routing) if record.routing else None,
        "createdAt": rfc3339(record.created_at),
    }


def _page(request: AnyRequest) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", 100))
        offset = int(request.query_params.get("offset", 0))
    except ValueError:
        raise InvalidRequestError("limit and offset must be integers", field="limit") from None
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidRequestError("limit must be 1..1000 and offset >= 0", field="limit")
    return limit, offset


class AgentController(Controller):
    path = "/agents"

    @post("/", status_code=201)
    async def create_agent(self, request: AnyRequest) -> Response[bytes]:
        spec = agent_spec(decode(await request.body(), AgentBody))
        check_request_limits(
            gateway_of(request).settings.server,
            messages=0,
            max_tokens=spec.max_tokens,
            tokens_field="model.maxTokens",
        )
        record = await gateway_of(request).agents.create_agent(spec, scope_of(request))
        return json_response(agent_json(record), 201)

    @get("/")
    async def list_agents(self, request: AnyRequest) -> Response[bytes]:
        limit, offset = _page(request)
        records = await gateway_of(request).agents.list_agents(limit, offset)
        return json_response({"agents": [agent_json(r) for r in records]})

    @get("/{agent_id:str}")
    async def get_agent(self, request: AnyRequest, agent_id: FromPath[str]) -> Response[bytes]:
        record = await gateway_of(request).agents.get_agent(check_uuid(agent_id, "agentId"))
        return json_response(agent_json(record))

    @patch("/{agent_id:str}")
    async def update_agent(self, request: AnyRequest, agent_id: FromPath[str]) -> Response[bytes]:
        agent_id = check_uuid(agent_id, "agentId")
        service = gateway_of(request).agents
        current = agent_json(await service.get_agent(agent_id))
        patch_body = decode(await request.body(), dict[str, Any])
        merged = {
            k: v for k, v in current.items() if k not in ("agentId", "id", "createdAt", "updatedAt")
        }
        merged.update(patch_body)
        spec = agent_spec(decode(encode(merged), AgentBody))
        return json_response(
            agent_json(await service.update_agent(agent_id, spec, scope_of(request)))
        )

    @delete("/{agent_id:str}", status_code=204)
    async def delete_agent(self, request: AnyRequest, agent_id: FromPath[str]) -> None:
        await gateway_of(request).agents.delete_agent(check_uuid(agent_id, "agentId"))

    @post("/{agent_id:str}/sessions", status_code=201)
    async def create_session(self, request: AnyRequest, agent_id: FromPath[str]) -> Response[bytes]:
        agent_id = check_uuid(agent_id, "agentId")
        raw = await request.body()
        body = decode(raw, SessionBody) if raw.strip() else SessionBody()
        record = await gateway_of(request).agents.create_session(
            agent_id, body.user_id, body.metadata
        )
        return json_response(session_json(record), 201)

    @get("/{agent_id:str}/sessions")
    async def list_sessions(self, request: AnyRequest, agent_id: FromPath[str]) -> Response[bytes]:
        limit, offset = _page(request)
        records = await gateway_of(request).agents.list_sessions(
            check_uuid(agent_id, "agentId"), limit, offset
        )
        return json_response({"sessions": [session_json(r) for r in records]})

    @get("/{agent_id:str}/sessions/{session_id:str}")
    async def get_session(
        self, request: AnyRequest, agent_id: FromPath[str], session_id: FromPath[str]
    ) -> Response[bytes]:
        record = await gateway_of(request).agents.get_session(
            check_uuid(agent_id, "agentId"), check_uuid(session_id, "sessionId")
        )
        return json_response(session_json(record))

    @delete("/{agent_id:str}/sessions/{session_id:str}", status_code=204)
    async def delete_session(
        self, request: AnyRequest, agent_id: FromPath[str], session_id: FromPath[str]
    ) -> None:
        await gateway_of(request).agents.delete_session(
            check_uuid(agent_id, "agentId"), check_uuid(session_id, "sessionId")
        )

    @get("/{agent_id:str}/sessions/{session_id:str}/messages")
    async def list_messages(
        self, request: AnyRequest, agent_id: FromPath[str], session_id: FromPath[str]
    ) -> Response[bytes]:
        limit, _ = _page(request)
        records = await gateway_of(request).agents.list_messages(
            check_uuid(agent_id, "agentId"), check_uuid(session_id, "sessionId"), limit
        )
        return json_response({"messages": [message_json(r) for r in records]})

    @post("/{agent_id:str}/sessions/{session_id:str}/messages", status_code=200)
    async def post_message(
        self, request: AnyRequest, agent_id: FromPath[str], session_id: FromPath[str]
    ) -> ASGIApp:
        agent_id = check_uuid(agent_id, "agentId")
        session_id = check_uuid(session_id, "sessionId")
        server = gateway_of(request).settings.server
        body = decode(await read_body(request, server.max_body_bytes), MessageBody)
        incoming = chat_messages(body)
        check_request_limits(
            server,
            messages=len(incoming),
            max_tokens=None,
            tokens_field="maxTokens",
        )
        route = _route_choice(request, body)
        service = gateway_of(request).agents
        guard = connected_guard(request.scope, request.receive)
        if request.query_params.get("stream", "").lower() in ("1", "true", "yes"):
            streaming = await service.open_stream(
                agent_id, session_id, incoming, route, scope_of(request), guard=guard
            )
            note_routing(request, streaming.routing)
            return EventStreamAnswer(
                _agentos_frames(streaming),
                streaming.routing.headers(),
                status=207,
            )
        reply = await service.post_message(
            agent_id, session_id, incoming, route, scope_of(request), guard=guard
        )
        note_routing(request, reply.routing)
        answer = {
            "messageId": reply.message.id,
            "content": reply.message.content,
            "toolCalls": list(reply.message.tool_calls) if reply.message.tool_calls else None,
            "usage": {
                "promptTokens": reply.usage.prompt_tokens,
                "completionTokens": reply.usage.completion_tokens,
                "latencyMs": round(reply.latency_ms, 1),
            },
            "state": "completed",
            "routing": reply.routing.to_json(),
        }
        return JsonAnswer(answer, 200, reply.routing.headers())


def _route_choice(request: AnyRequest, body: MessageBody) -> RouteChoice | None:
    """Per request (``X-Gateway-Route``) beats per message (``metadata.taskType``) beats the agent."""
    chosen = header(request, b"x-gateway-route")
    if chosen:
        return RouteChoice(chosen.strip(), "header X-Gateway-Route")
    task_type = body.metadata.get("taskType")
    if task_type is None:
        return None
    if not isinstance(task_type, str) or not task_type:
        raise InvalidRequestError(
            "metadata.taskType must be a route name", field="metadata.taskType"
        )
    return RouteChoice(task_type, "metadata.taskType")


def _frame(payload: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + encode(payload) + b"\n\n"


async def _agentos_frames(streaming: StreamingReply) -> AsyncIterator[bytes]:
    """Agno-Go's frames: ``token`` per delta, ``end`` last; a late failure is an explicit ``error``."""
    try:
        async for event in streaming.events():
            if event.delta:
                yield _frame({"type": "token", "delta": event.delta, "done": False})
            for call in event.tool_calls:
                yield _frame(
                    {
                        "type": "tool_call",
                        "toolCall": {
                            "index": call.index,
                            "id": call.id,
                            "name": call.name,
                            "arguments": call.arguments,
                        },
                        "done": False,
                    }
                )
    except GatewayError as exc:
        log.warning("stream_failed_after_first_byte", code=exc.code)
        yield FinalFrame(
            _frame(
                {"type": "error", "error": {"code": exc.code, "message": exc.message}, "done": True}
            )
        )
        return
    usage = streaming.usage
    end = _frame(
        {
            "type": "end",
            "messageId": streaming.message_id,
            "usage": {
                "promptTokens": usage.prompt_tokens,
                "completionTokens": usage.completion_tokens,
            },
            "finishReason": streaming.finish_reason or "stop",
            "routing": streaming.routing.to_json(),
            "done": True,
        }
    )
    yield FinalFrame(end)
