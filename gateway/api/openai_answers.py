"""OpenAI chat-completions answers on ``/v1``: ``chat.completion`` objects and stream chunks."""

from __future__ import annotations

import os
import time
from typing import Any

import msgspec

from gateway.domain.types import ChatResult, EventBatch, ToolCall, ToolCallDelta, Usage

DONE_FRAME = b"data: [DONE]\n\n"
_encoder = msgspec.json.Encoder()


def new_completion_id() -> str:
    return f"chatcmpl-{os.urandom(16).hex()}"  # 128 random bits, as uuid4 but 3x cheaper


def usage_json(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _tool_call_json(call: ToolCall) -> dict[str, Any]:
    function = {"name": call.name, "arguments": call.arguments}
    return {"id": call.id, "type": "function", "function": function}


def completion_json(result: ChatResult, model: str) -> dict[str, Any]:
    """A ``chat.completion`` object; ``model`` is the served ``provider:model``."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if result.tool_calls and not result.content else result.content,
        "refusal": None,
    }
    if result.tool_calls:
        message["tool_calls"] = [_tool_call_json(c) for c in result.tool_calls]
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": result.finish_reason,
    }
    return {
        "id": new_completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage_json(result.usage),
    }


def _tool_delta_json(delta: ToolCallDelta) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": delta.arguments}
    if delta.name is not None:
        function["name"] = delta.name
    data: dict[str, Any] = {"index": delta.index}
    if delta.id is not None:
        data["id"] = delta.id
        data["type"] = "function"
    data["function"] = function
    return data


def sse_frame(payload: object) -> bytes:
    return b"data: " + _encoder.encode(payload) + b"\n\n"


class ChunkBuilder:
    """Builds the ``chat.completion.chunk`` frames of one stream (one id, one ``created``)."""

    def __init__(self, model: str, *, include_usage: bool = False) -> None:
        self.id = new_completion_id()
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.usage = Usage()
        self._finish = b""  # the finish frame, held for the end
        # What every chunk of this stream repeats, encoded once: only the choice changes per frame.
        head = _encoder.encode(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
            }
        )
        self._head = b"data: " + head[:-1] + b',"choices":['
        # As OpenAI: "usage" is null on every chunk but the last, and only when asked for.
        self._tail = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"
        # Nearly every chunk carries only text: its frame is this template around the encoded
        # text, byte for byte what ``_frame({"content": text}, None)`` encodes (tested).
        self._text_head = self._head + b'{"index":0,"delta":{"content":'
        self._text_tail = b'},"logprobs":null,"finish_reason":null}' + self._tail

    def _frame(self, delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._head + _encoder.encode(choice) + self._tail

    def role(self) -> bytes:
        return self._frame({"role": "assistant", "content": ""}, None)

    def frames(self, batch: EventBatch) -> bytes:
        """The frames of one batch's content, joined (one write). Its finish frame is held for
        ``end()``: it carries no content, and the end follows it in the same read or soon after."""
        if len(batch) == 1:  # nearly every batch: one event with text only
            event = batch[0]
            if event.finish_reason is None and event.usage is None and not event.tool_calls:
                text = event.delta
                return self._text_head + _encoder.encode(text) + self._text_tail if text else b""
        frames = []
        for event in batch:
            if event.usage is not None:
                self.usage = event.usage
            if event.tool_calls:
                delta: dict[str, Any] = {"content": event.delta} if event.delta else {}
                delta["tool_calls"] = [_tool_delta_json(d) for d in event.tool_calls]
                frames.append(self._frame(delta, None))
            elif event.delta:
                frames.append(self._text_head + _encoder.encode(event.delta) + self._text_tail)
            if event.finish_reason is not None and not self._finish:
                self._finish = self._frame({}, event.finish_reason)
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def end(self) -> bytes:
        """The held finish frame, the usage chunk when asked for, then ``[DONE]``: only after a
        complete answer."""
        end = self._finish
        if self.include_usage:
            payload = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage_json(self.usage),
            }
            end += sse_frame(payload)
        return end + DONE_FRAME

    def failed(self) -> bytes:
        """What a failed stream still owes the client before its error frame: the finish, if one
        was held."""
        return self._finish


def error_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    return "api_error" if status >= 500 else "invalid_request_error"


def error_frame(status: int, code: str, message: str) -> bytes:
    """The frame that ends a stream which failed after its first chunk (no ``[DONE]`` follows)."""
    error = {"message": message, "type": error_type(status), "code": code, "param": None}
    return sse_frame({"error": error})
