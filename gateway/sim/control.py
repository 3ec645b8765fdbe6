"""The `/_sim/*` HTTP control API of a simulated server (no auth required).

GET|POST|DELETE /_sim/faults   read / merge (camelCase JSON) / reset the fault plan
GET|DELETE      /_sim/requests read / clear the request log (secrets redacted)
GET             /_sim/info     name, wire, models, request count, faults
POST            /_sim/refuse   {"seconds": N}: stop listening now, re-listen after N s
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.sim.asgi import Send, send_json
from gateway.sim.faults import FaultError, Faults
from gateway.sim.jsontools import as_object, loads
from gateway.sim.requestlog import RequestLog
from gateway.sim.spec import SimSpec

CONTROL_PREFIX = "/_sim/"
MAX_REFUSE_SECONDS = 3600.0


@dataclass(frozen=True)
class ControlAnswer:
    status: int
    payload: object
    after: Callable[[], None] | None = None  # run once the answer is sent


Handler = Callable[[object], ControlAnswer]


def _fail(status: int, message: str) -> ControlAnswer:
    return ControlAnswer(status, {"error": message})


class ControlApi:
    def __init__(
        self, spec: SimSpec, faults: Faults, log: RequestLog, on_refuse: Callable[[float], None]
    ) -> None:
        self._spec = spec
        self._faults = faults
        self._log = log
        self._on_refuse = on_refuse
        self._routes: dict[tuple[str, str], Handler] = {
            ("GET", "faults"): self._get_faults,
            ("POST", "faults"): self._set_faults,
            ("PUT", "faults"): self._set_faults,
            ("PATCH", "faults"): self._set_faults,
            ("DELETE", "faults"): self._reset_faults,
            ("GET", "requests"): self._get_requests,
            ("DELETE", "requests"): self._clear_requests,
            ("GET", "info"): self._info,
            ("POST", "refuse"): self._refuse,
        }

    async def serve(self, method: str, path: str, raw: bytes, send: Send) -> None:
        answer = self.answer(method, path, raw)
        await send_json(send, answer.status, answer.payload)
        if answer.after is not None:
            answer.after()

    def answer(self, method: str, path: str, raw: bytes) -> ControlAnswer:
        resource = path.removeprefix(CONTROL_PREFIX).rstrip("/")
        handler = self._routes.get((method, resource))
        if handler is None:
            return _fail(404, f"unknown control endpoint {method} {path}")
        decoded, valid = loads(raw)
        if not valid:
            return _fail(400, "body is not valid JSON")
        try:
            return handler(decoded)
        except FaultError as exc:
            return _fail(400, str(exc))

    def _get_faults(self, _: object) -> ControlAnswer:
        return ControlAnswer(200, self._faults.plan.to_json())

    def _set_faults(self, body: object) -> ControlAnswer:
        fields = as_object(body)
        if fields is None:
            return _fail(400, "expected a JSON object of camelCase fault fields")
        return ControlAnswer(200, self._faults.update_from_json(fields).to_json())

    def _reset_faults(self, _: object) -> ControlAnswer:
        return ControlAnswer(200, self._faults.reset().to_json())

    def _get_requests(self, _: object) -> ControlAnswer:
        return ControlAnswer(200, [record.to_json() for record in self._log.snapshot()])

    def _clear_requests(self, _: object) -> ControlAnswer:
        return ControlAnswer(200, {"cleared": self._log.clear()})

    def _info(self, _: object) -> ControlAnswer:
        info = {
            "name": self._spec.name,
            "wire": self._spec.wire,
            "models": list(self._spec.listed_models),
            "auth": self._spec.api_key is not None,
            "requestCount": len(self._log),
            "faults": self._faults.plan.to_json(),
        }
        return ControlAnswer(200, info)

    def _refuse(self, body: object) -> ControlAnswer:
        seconds = (as_object(body) or {}).get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            return _fail(400, 'expected {"seconds": number}')
        if not 0 < seconds <= MAX_REFUSE_SECONDS:
            return _fail(400, f"seconds must be in (0, {MAX_REFUSE_SECONDS:g}]")
        delay = float(seconds)
        return ControlAnswer(
            202, {"refusing": True, "seconds": delay}, lambda: self._on_refuse(delay)
        )
