"""Client authentication, scopes and per-key rate limits.

Keys are kept only as SHA-256 digests and compared in constant time against every configured key (no
early exit, so timing says nothing about which key nearly matched). A request without a valid key gets
401 before anything else happens; a key used outside its ``models`` scope gets 403; a key over its
requests- or tokens-per-minute gets 429 with ``Retry-After``. Limits are per gateway process.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.api.context import SCOPE_KEY, RequestContext
from gateway.config.settings import ClientKey, Settings
from gateway.domain.models import Plan
from gateway.errors import ForbiddenError, RateLimitedError, UnauthorizedError

_OPEN_PATHS = ("/health", "/ready", "/metrics", "/schema")
_WINDOW_S = 60.0


@dataclass
class _Usage:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0


class ClientRateLimits:
    """Sliding one-minute windows of requests and tokens per client key name."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._usage: dict[str, _Usage] = {}

    def _trim(self, usage: _Usage, now: float) -> None:
        while usage.requests and usage.requests[0] <= now - _WINDOW_S:
            usage.requests.popleft()
        while usage.tokens and usage.tokens[0][0] <= now - _WINDOW_S:
            usage.token_sum -= usage.tokens.popleft()[1]

    def admit(self, key: ClientKey) -> None:
        """Count one request, or raise 429 when the key is over a limit."""
        now = self._clock()
        usage = self._usage.setdefault(key.name, _Usage())
        self._trim(usage, now)
        rpm, tpm = key.requests_per_minute, key.tokens_per_minute
        if rpm is not None and len(usage.requests) >= rpm:
            wait = usage.requests[0] + _WINDOW_S - now
            raise RateLimitedError(
                f"client {key.name!r} is over {rpm} requests per minute",
                retry_after_s=max(1.0, math.ceil(wait)),
                details={"limit": "requestsPerMinute", "value": rpm},
            )
        if tpm is not None and usage.token_sum >= tpm:
            wait = usage.tokens[0][0] + _WINDOW_S - now
            raise RateLimitedError(
                f"client {key.name!r} is over {tpm} tokens per minute",
                retry_after_s=max(1.0, math.ceil(wait)),
                details={"limit": "tokensPerMinute", "value": tpm},
            )
        usage.requests.append(now)

    def charge_tokens(self, key_name: str, tokens: int) -> None:
        if tokens <= 0:
            return
        usage = self._usage.setdefault(key_name, _Usage())
        usage.tokens.append((self._clock(), tokens))
        usage.token_sum += tokens


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.auth.enabled
        self._keys = settings.client_keys

    def identify(self, presented: str) -> ClientKey | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key in self._keys:
            if hmac.compare_digest(key.sha256, digest):
                found = key
        return found


def authorize(key: ClientKey | None, plan: Plan) -> None:
    """403 unless every candidate of the plan is within the key's scope."""
    if key is None or not key.models:
        return
    allowed = key.models
    if plan.route is not None and plan.route in allowed:
        return
    for candidate in plan.candidates:
        names = (candidate.requested, str(candidate.ref))
        if not any(fnmatch.fnmatchcase(n, p) for n in names for p in allowed):
            raise ForbiddenError(
                f"client {key.name!r} may not use {candidate.requested!r}",
                details={"model": candidate.requested},
            )


def scope_of(request: Request[Any, Any, Any]) -> Callable[[Plan], None] | None:
    """The scope check of the authenticated client key, if there is one."""
    context = request.scope.get(SCOPE_KEY)
    if not isinstance(context, RequestContext) or context.client is None:
        return None
    key = context.client
    return lambda plan: authorize(key, plan)


def _presented_raw(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The key from ``Authorization: Bearer`` or ``X-API-Key``, read from raw ASGI headers."""
    api_key = ""
    for name, value in headers:
        if name == b"authorization":
            text = value.decode("latin-1")
            if text[:7].lower() == "bearer ":
                return text[7:].strip()
        elif name == b"x-api-key":
            api_key = value.decode("latin-1").strip()
    return api_key


class ClientAuthMiddleware:
    """Authenticate every API request, then apply the key's request rate (401/429 before routing work).

    A middleware rather than a Litestar guard: guards run on a copy of the route handler per request.
    Errors are raised into the app's exception handlers, so they come out in the API's error shape.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            path = scope["path"]
            if not (path.startswith(_OPEN_PATHS) or path.startswith("/admin")):
                self._admit(scope)
        await self.app(scope, receive, send)

    @staticmethod
    def _admit(scope: Scope) -> None:
        gateway = scope["app"].state.gateway
        auth: Authenticator = gateway.auth
        if not auth.enabled:
            return
        key = auth.identify(_presented_raw(scope["headers"]))
        if key is None:
            raise UnauthorizedError("a valid API key is required (Authorization: Bearer <key>)")
        context = scope.get(SCOPE_KEY)
        if isinstance(context, RequestContext):
            context.client = key
        gateway.client_limits.admit(key)
