"""Request size limits beyond the body size: message count and requested output tokens."""

from __future__ import annotations

from gateway.config.schema import ServerSection
from gateway.errors import InvalidRequestError, PayloadTooLargeError


def check_request_limits(
    server: ServerSection, *, messages: int, max_tokens: object, tokens_field: str
) -> None:
    if messages > server.max_messages:
        raise PayloadTooLargeError(
            f"{messages} messages exceed the limit of {server.max_messages} (server.maxMessages)",
            details={"field": "messages", "limit": server.max_messages},
        )
    if isinstance(max_tokens, int) and max_tokens > server.max_output_tokens:
        raise InvalidRequestError(
            f"{tokens_field} {max_tokens} exceeds the limit of {server.max_output_tokens} "
            "(server.maxOutputTokens)",
            field=tokens_field,
            details={"limit": server.max_output_tokens},
        )
