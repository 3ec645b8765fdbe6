"""The raw ASGI application of one simulated provider.

It hands `/_sim/*` to the control API, routes provider requests to the server's
wire handler, records them in the request log and applies the fault plan
(latency, hang, injected statuses, stream cut/stall/slow chunks).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from gateway.sim.asgi import (
    Interrupt,
    Receive,
    Scope,
    Send,
    SimulatedCut,
    abort_connection,
    header_map,
    idle,
    query_map,
    read_body,
    send_body,
    send_json,
    start_response,
)
from gateway.sim.control import CONTROL_PREFIX, ControlApi
from gateway.sim.faults import FaultDecision, Faults
from gateway.sim.jsontools import loads
from gateway.sim.requestlog import RequestLog
from gateway.sim.spec import SimSpec
from gateway.sim.wire import (
    AnswerContext,
    Incoming,
    JsonReply,
    Rejected,
    Reply,
    Route,
    StreamReply,
    WireHandler,
    retry_after_headers,
)


class SimApp:
    """ASGI app; `closing` is replaced by the server at every (re)start and set
    when it stops, which ends hung/stalled requests."""

    def __init__(
        self,
        spec: SimSpec,
        wire: WireHandler,
        faults: Faults,
        log: RequestLog,
        on_refuse: Callable[[float], None],
    ) -> None:
        self.spec = spec
        self.wire = wire
        self.faults = faults
        self.log = log
        self.reply: str | None = spec.reply
        self.closing = asyncio.Event()
        self._control = ControlApi(spec, faults, log, on_refuse)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        if body is None:
            return
        path: str = scope["path"]
        if path.startswith(CONTROL_PREFIX):
            await self._control.serve(scope["method"], path, body, send)
        else:
            await self._provider(scope, body, receive, send)

    async def _provider(self, scope: Scope, raw: bytes, receive: Receive, send: Send) -> None:
        decoded, valid = loads(raw)
        request = Incoming(
            scope["method"], scope["path"], query_map(scope), header_map(scope), decoded, valid
        )
        route = self.wire.route(request.method, request.path)
        seq = self._record(request, route, raw)
        if route is None:
            unknown = f"Unknown endpoint: {request.method} {request.path}"
            await self._send_json(send, seq, self.wire.error(404, unknown))
            return
        decision = self.faults.draw()
        if decision.latency_ms:
            interrupted = await idle(receive, self.closing, decision.latency_ms / 1000)
            if interrupted is not None:
                await self._abandon(interrupted, receive, started=False)
                return
        if decision.hang:
            await self._abandon(await idle(receive, self.closing, None), receive, started=False)
            return
        reply = self._reply(route, request, decision)
        if isinstance(reply, JsonReply):
            await self._send_json(send, seq, reply)
        else:
            await self._send_stream(send, receive, seq, reply, decision)

    def _record(self, request: Incoming, route: Route | None, raw: bytes) -> int:
        model, stream = self.wire.describe(route, request) if route is not None else (None, False)
        return self.log.add(
            time=time.time(),
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            model=model,
            stream=stream,
            body=request.body if request.body_valid else raw.decode("utf-8", "replace"),
        )

    def _reply(self, route: Route, request: Incoming, decision: FaultDecision) -> Reply:
        """Injected error status, else 401, else the wire's answer."""
        if decision.status is not None:
            error = self.wire.error(decision.status, decision.error_message)
            extra = retry_after_headers(decision.status, decision.retry_after)
            return JsonReply(error.status, error.payload, error.headers + extra)
        if self.spec.api_key is not None:
            denied = self.wire.authorize(request, self.spec.api_key)
            if denied is not None:
                return denied
        context = AnswerContext(
            self.spec.name, self.spec.models, self.spec.listed_models, self.reply
        )
        try:
            return self.wire.handle(route, request, context)
        except Rejected as rejected:
            return rejected.reply

    async def _send_json(self, send: Send, seq: int, reply: JsonReply) -> None:
        self.log.set_status(seq, reply.status)
        await send_json(send, reply.status, reply.payload, (*reply.headers, _request_id()))

    async def _send_stream(
        self, send: Send, receive: Receive, seq: int, reply: StreamReply, decision: FaultDecision
    ) -> None:
        self.log.set_status(seq, 200)
        headers = [("content-type", reply.content_type), ("cache-control", "no-cache")]
        await start_response(send, 200, [*headers, _request_id(), *reply.headers])
        cut, stall = decision.cut_after_chunks, decision.stall_after_chunks
        stop_at = min(n for n in (cut, stall, len(reply.frames)) if n is not None)
        delay = decision.chunk_delay_ms / 1000
        for index, frame in enumerate(reply.frames[:stop_at]):
            if index and delay:
                interrupted = await idle(receive, self.closing, delay)
                if interrupted is not None:
                    await self._abandon(interrupted, receive, started=True)
                    return
            await send_body(send, frame, more=True)
        if cut is not None and (stall is None or cut <= stall):
            raise SimulatedCut(f"cut after {stop_at} frames")
        if stall is not None:
            await self._abandon(await idle(receive, self.closing, None), receive, started=True)
            return
        await send_body(send, b"")

    async def _abandon(self, reason: Interrupt | None, receive: Receive, *, started: bool) -> None:
        """Give up on a request: silently if the client left, by dropping the
        connection if the server is closing."""
        if reason == "disconnect":
            return
        if started or not await abort_connection(receive):
            raise SimulatedCut("server closing")


def _request_id() -> tuple[str, str]:
    return ("x-request-id", f"req_sim{uuid.uuid4().hex[:20]}")
