"""The gateway's one error tree.

Every error the gateway can answer with is one of these classes. Each class carries the HTTP status the
client sees, a stable snake_case ``code`` and a low-cardinality ``label`` used as a metric label value.
Upstream failures are mapped from httpx in exactly one place (``gateway.providers.http``).

    GatewayError                         500 internal_error
    ├── InvalidRequestError              400 invalid_request          (field path in ``field``)
    │   ├── UnknownProviderError         400 unknown_provider
    │   └── UnsupportedParameterError    400 unsupported_parameter
    ├── UnauthorizedError                401 unauthorized
    ├── ForbiddenError                   403 forbidden
    ├── RateLimitedError                 429 rate_limited              (Retry-After)
    ├── NotFoundError                    404 not_found
    │   ├── AgentNotFoundError           404 agent_not_found
    │   ├── SessionNotFoundError         404 session_not_found
    │   └── ModelNotFoundError           404 model_not_found
    ├── ConflictError                    409 conflict
    ├── PayloadTooLargeError             413 payload_too_large
    ├── ClientDisconnectedError          499 client_disconnected       (nobody reads the answer)
    ├── NoProviderAvailableError         503 no_provider_available    (Retry-After, attempts)
    ├── UpstreamsTimedOutError           504 upstream_timeout          (every candidate timed out)
    └── UpstreamError                    502 upstream_error            (one failed upstream call)
        ├── UpstreamConnectError             connect_error    fails over, counts against health
        ├── UpstreamTimeoutError             timeout          fails over, counts against health
        ├── UpstreamServerError              server_error     5xx / 529: fails over, counts
        ├── UpstreamInvalidResponseError     server_error     unparseable answer: fails over, counts
        ├── UpstreamStreamError              stream_error     cut or stalled stream: fails over before
        │                                                     the first byte, counts against health
        ├── UpstreamRateLimitedError         rate_limited     429: fails over, cools the provider
        ├── UpstreamAuthError                auth_error       401/403: fails over, key unusable
        ├── UpstreamModelNotFoundError       client_error     404: this provider lacks the model;
        │                                                     fails over, not a health problem
        └── UpstreamClientError              client_error     400/413/422/context length: goes back
                                                              to the client with its status, no failover
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class GatewayError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    label: ClassVar[str] = "internal"

    def __init__(self, message: str, *, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def retry_after(self) -> float | None:
        return None


class InvalidRequestError(GatewayError):
    status = 400
    code = "invalid_request"
    label = "invalid_request"

    def __init__(
        self, message: str, *, field: str | None = None, details: Mapping[str, Any] | None = None
    ) -> None:
        merged = dict(details or {})
        if field is not None:
            merged.setdefault("field", field)
        super().__init__(message, details=merged)
        self.field = field


class UnknownProviderError(InvalidRequestError):
    code = "unknown_provider"
    label = "unknown_provider"


class UnsupportedParameterError(InvalidRequestError):
    code = "unsupported_parameter"
    label = "unsupported_parameter"


class UnauthorizedError(GatewayError):
    status = 401
    code = "unauthorized"
    label = "unauthorized"


class ForbiddenError(GatewayError):
    status = 403
    code = "forbidden"
    label = "forbidden"


class RateLimitedError(GatewayError):
    """A client exceeded its own request or token rate."""

    status = 429
    code = "rate_limited"
    label = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float, details: Mapping[str, Any]) -> None:
        super().__init__(message, details=details)
        self._retry_after = retry_after_s

    @property
    def retry_after(self) -> float | None:
        return self._retry_after


class NotFoundError(GatewayError):
    status = 404
    code = "not_found"
    label = "not_found"


class AgentNotFoundError(NotFoundError):
    code = "agent_not_found"


class SessionNotFoundError(NotFoundError):
    code = "session_not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class ConflictError(GatewayError):
    status = 409
    code = "conflict"
    label = "conflict"


class PayloadTooLargeError(GatewayError):
    status = 413
    code = "payload_too_large"
    label = "payload_too_large"


class ClientDisconnectedError(GatewayError):
    """The client closed the connection while its model call was being routed; the call was
    abandoned (nginx's 499). Only the log line and the metrics see it."""

    status = 499
    code = "client_disconnected"
    label = "client_disconnected"


class NoProviderAvailableError(GatewayError):
    """Every candidate was skipped or failed over; ``attempts`` says what happened to each."""

    status = 503
    code = "no_provider_available"
    label = "no_provider"

    def __init__(
        self,
        message: str,
        *,
        attempts: Sequence[Mapping[str, Any]] = (),
        retry_after_s: float = 1.0,
    ) -> None:
        super().__init__(message, details={"attempts": [dict(a) for a in attempts]})
        self._retry_after = retry_after_s

    @property
    def retry_after(self) -> float | None:
        return self._retry_after


class UpstreamsTimedOutError(NoProviderAvailableError):
    status = 504
    code = "upstream_timeout"
    label = "timeout"


class UpstreamError(GatewayError):
    """One upstream call failed. ``failover`` says whether the router may try the next candidate."""

    status = 502
    code = "upstream_error"
    label = "server_error"
    failover: ClassVar[bool] = True
    counts_against_health: ClassVar[bool] = True

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        upstream_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, details={"provider": provider})
        self.provider = provider
        self.upstream_status = upstream_status
        self._retry_after = retry_after_s

    @property
    def retry_after(self) -> float | None:
        return self._retry_after


class UpstreamConnectError(UpstreamError):
    code = "upstream_connect_error"
    label = "connect_error"


class UpstreamTimeoutError(UpstreamError):
    status = 504
    code = "upstream_timeout"
    label = "timeout"


class UpstreamServerError(UpstreamError):
    code = "upstream_server_error"
    label = "server_error"


class UpstreamInvalidResponseError(UpstreamError):
    code = "upstream_invalid_response"
    label = "server_error"


class UpstreamStreamError(UpstreamError):
    code = "upstream_stream_error"
    label = "stream_error"


class UpstreamRateLimitedError(UpstreamError):
    status = 429
    code = "upstream_rate_limited"
    label = "rate_limited"
    counts_against_health = False


class UpstreamAuthError(UpstreamError):
    code = "upstream_auth_error"
    label = "auth_error"


class UpstreamModelNotFoundError(UpstreamError):
    """The provider does not serve this model (retired id, typo in config): another candidate may."""

    status = 404
    code = "upstream_model_not_found"
    label = "client_error"
    counts_against_health = False


class UpstreamClientError(UpstreamError):
    """The request itself is wrong for this upstream: the client gets the upstream's status back."""

    code = "upstream_client_error"
    label = "client_error"
    failover = False
    counts_against_health = False

    @property
    def status_code(self) -> int:
        return self.upstream_status or 400
