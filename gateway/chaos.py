"""``gateway chaos``: a failover drill against a running gateway, for operators.

The drill creates a throw-away agent (``--model`` with ``--fallback``) and session, takes ``--provider``
out of service for ``--duration`` while it sends messages at ``--rate`` per second, puts the provider
back, checks that traffic returns, and reports what the gateway did:

- what clients saw: errors, statuses, which model served, the routing decisions and their reasons
  (from each answer's ``routing`` record), latency;
- what the gateway counted: the deltas of ``gateway_routing_decisions_total`` and
  ``gateway_fallbacks_total`` between a ``/metrics`` scrape before and one after (these include any
  other traffic the gateway served meanwhile).

Modes: ``drain`` uses ``POST /admin/providers/{name}/drain`` and ``/restore``. ``reload-without-key``
removes ``<PROVIDER>_API_KEY`` (or ``--key-env``) from the gateway's ``--env-file`` and calls
``POST /admin/reload``, then puts the file back byte for byte and reloads again; it needs write access
to that file (run it on the gateway's host) and a key that is not also set in the server's process
environment (the drill checks, and stops if the provider stays configured).

Exit code: 0 when no client request failed, 1 when some did, 2 when the drill could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.config.schema import Duration

Mode = Literal["drain", "reload-without-key"]
Series = dict[tuple[tuple[str, str], ...], float]
DECISIONS = "gateway_routing_decisions_total"
FALLBACKS = "gateway_fallbacks_total"
AFTER_RESTORE_REQUESTS = 3


class DrillError(Exception):
    """The drill cannot run (unreachable gateway, refused admin call, unknown provider...)."""


@dataclass(frozen=True, slots=True)
class DrillOptions:
    url: str
    provider: str
    mode: Mode = "drain"
    duration_s: float = 30.0
    rate: float = 5.0
    model: str = "openai:gpt-4o-mini"
    fallback: str | None = "gemini:flash-1.5"
    admin_token: str | None = None
    env_file: Path | None = None
    key_env: str | None = None
    timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """One drill request as the client saw it."""

    phase: Literal["fault", "restored"]
    status: int | None  # None: no HTTP answer at all
    latency_s: float
    routing: dict[str, Any] | None = None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status != 200


def parse_metrics(text: str) -> dict[str, Series]:
    """Samples of a Prometheus text exposition, by sample name and sorted label pairs."""
    out: dict[str, Series] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[labels] = float(sample.value)
    return out


def metric_deltas(before: dict[str, Series], after: dict[str, Series], name: str) -> Series:
    """Non-zero increases of one counter's series between two scrapes."""
    old, new = before.get(name, {}), after.get(name, {})
    changed = {labels: value - old.get(labels, 0.0) for labels, value in new.items()}
    return {labels: value for labels, value in changed.items() if value > 0}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _counts(items: list[str]) -> str:
    return ", ".join(f"{name} x{count}" for name, count in Counter(items).most_common()) or "-"


@dataclass
class DrillReport:
    options: DrillOptions
    outcomes: list[Outcome] = field(default_factory=list)
    decisions: Series = field(default_factory=dict)
    fallbacks: Series = field(default_factory=dict)

    @property
    def client_errors(self) -> int:
        return sum(o.failed for o in self.outcomes)

    @property
    def passed(self) -> bool:
        return self.client_errors == 0

    def _phase(self, phase: str) -> list[Outcome]:
        return [o for o in self.outcomes if o.phase == phase]

    def to_json(self) -> dict[str, Any]:
        def rows(series: Series) -> list[dict[str, Any]]:
            return [{**dict(labels), "delta": value} for labels, value in sorted(series.items())]

        return {
            "passed": self.passed,
            "clientErrors": self.client_errors,
            "requests": [
                {
                    "phase": o.phase,
                    "status": o.status,
                    "latencyMs": round(o.latency_s * 1000, 1),
                    "servedModel": (o.routing or {}).get("servedModel"),
                    "decision": (o.routing or {}).get("decision"),
                    "reason": (o.routing or {}).get("reason"),
                    "error": o.error,
                }
                for o in self.outcomes
            ],
            "metrics": {DECISIONS: rows(self.decisions), FALLBACKS: rows(self.fallbacks)},
        }

    def lines(self) -> Iterator[str]:
        opts = self.options
        yield (
            f"gateway chaos drill: {opts.mode} {opts.provider} for {opts.duration_s:g}s "
            f"at {opts.rate:g} req/s against {opts.url}"
        )
        yield f"  agent model {opts.model}, fallback {opts.fallback or '-'}"
        fault, restored = self._phase("fault"), self._phase("restored")
        yield ""
        yield f"what clients saw ({len(fault)} requests during the fault)"
        yield f"  client errors      {sum(o.failed for o in fault)}"
        yield f"  statuses           {_counts([str(o.status or 'no answer') for o in fault])}"
        served = [str(o.routing["servedModel"]) for o in fault if o.routing]
        yield f"  served by          {_counts(served)}"
        decided = [f"{o.routing['decision']}/{o.routing['reason']}" for o in fault if o.routing]
        yield f"  decision/reason    {_counts(decided)}"
        latencies = [o.latency_s * 1000 for o in fault if not o.failed]
        if latencies:
            p50, p95 = _percentile(latencies, 50), _percentile(latencies, 95)
            yield f"  latency p50/p95    {p50:.0f} ms / {p95:.0f} ms"
        for error in sorted({o.error for o in fault if o.error}):
            yield f"  error              {error}"
        after = [str(o.routing["servedModel"]) if o.routing else "error" for o in restored]
        yield f"  after restore      {_counts(after)}"
        yield ""
        yield "what the gateway counted (metric deltas over the drill, all traffic included)"
        yield f"  {DECISIONS}"
        for labels, value in sorted(self.decisions.items()):
            d = dict(labels)
            yield (
                f"    {d.get('decision', '?'):<9} {d.get('reason', '?'):<15} "
                f"{d.get('provider', '?'):<12} {d.get('served_model', '?'):<32} {value:g}"
            )
        yield f"  {FALLBACKS}"
        for labels, value in sorted(self.fallbacks.items()):
            d = dict(labels)
            route = f"{d.get('from_provider', '?')} -> {d.get('to_provider', '?')}"
            yield f"    {route:<26} {d.get('reason', '?'):<15} {value:g}"
        yield ""
        verdict = "PASS" if self.passed else "FAIL"
        yield f"result: {verdict} ({self.client_errors} client errors)"

    def text(self) -> str:
        return "\n".join(self.lines())


class Drill:
    def __init__(self, options: DrillOptions, client: httpx.AsyncClient) -> None:
        self.options = options
        self._http = client
        self._admin = (
            {"authorization": f"Bearer {options.admin_token}"} if options.admin_token else {}
        )

    # -- gateway calls ----------------------------------------------------------------------

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise DrillError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    async def _expect(self, method: str, path: str, status: int, **kwargs: Any) -> Any:
        response = await self._call(method, path, **kwargs)
        if response.status_code != status:
            raise DrillError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json() if response.content else None

    async def _metrics(self) -> dict[str, Series]:
        response = await self._call("GET", "/metrics")
        if response.status_code != 200:
            raise DrillError(f"GET /metrics answered {response.status_code}")
        return parse_metrics(response.text)

    async def _reload(self) -> dict[str, str]:
        body = await self._expect("POST", "/admin/reload", 200, headers=self._admin)
        providers: dict[str, str] = body["providers"]
        return providers

    # -- the fault --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _drained(self) -> AsyncIterator[None]:
        path = f"/admin/providers/{self.options.provider}"
        await self._expect("POST", f"{path}/drain", 200, headers=self._admin)
        try:
            yield
        finally:
            await self._expect("POST", f"{path}/restore", 200, headers=self._admin)

    @contextlib.asynccontextmanager
    async def _without_key(self) -> AsyncIterator[None]:
        opts = self.options
        if opts.env_file is None:
            raise DrillError("--mode reload-without-key needs --env-file (the gateway's .env)")
        variable = opts.key_env or f"{opts.provider.upper().replace('-', '_')}_API_KEY"
        original = opts.env_file.read_bytes()
        line = re.compile(rf"^\s*(export\s+)?{re.escape(variable)}\s*=")
        kept = [x for x in original.splitlines(keepends=True) if not line.match(x.decode())]
        if len(kept) == len(original.splitlines()):
            raise DrillError(f"{variable} is not set in {opts.env_file}")
        opts.env_file.write_bytes(b"".join(kept))
        try:
            status = (await self._reload()).get(opts.provider)
            if status != "not-configured":
                raise DrillError(
                    f"{opts.provider} is still {status!r} without {variable} in {opts.env_file}: "
                    "is the key also set in the gateway's process environment?"
                )
            yield
        finally:
            opts.env_file.write_bytes(original)
            await self._reload()

    def _fault(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._drained() if self.options.mode == "drain" else self._without_key()

    # -- traffic ----------------------------------------------------------------------------

    async def _message(self, url: str, phase: Literal["fault", "restored"], n: int) -> Outcome:
        started = time.perf_counter()
        body = {"role": "user", "content": f"chaos drill message {n}"}
        try:
            response = await self._http.post(url, json=body)
        except httpx.HTTPError as exc:
            elapsed = time.perf_counter() - started
            return Outcome(phase, None, elapsed, error=f"{type(exc).__name__}: {exc}")
        elapsed = time.perf_counter() - started
        try:
            data = response.json()
        except json.JSONDecodeError:
            data = {}
        if response.status_code == 200:
            return Outcome(phase, 200, elapsed, routing=data.get("routing"))
        error = f"{response.status_code} {data.get('code', '')}".strip()
        return Outcome(phase, response.status_code, elapsed, error=error)

    async def _traffic(self, url: str) -> list[Outcome]:
        """Messages at the given rate for the duration, each sent on time whatever the others do."""
        opts = self.options
        total = max(1, round(opts.duration_s * opts.rate))
        start = time.perf_counter()
        tasks = []
        for n in range(total):
            delay = start + n / opts.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._message(url, "fault", n)))
        remaining = start + opts.duration_s - time.perf_counter()
        if remaining > 0:
            await asyncio.sleep(remaining)
        return list(await asyncio.gather(*tasks))

    # -- the drill --------------------------------------------------------------------------

    async def _check_provider(self) -> None:
        health = await self._expect("GET", "/health", 200)
        names = [p["provider"] for p in health.get("providers", [])]
        if self.options.provider not in names:
            raise DrillError(f"unknown provider {self.options.provider!r}; the gateway has {names}")

    async def _agent(self) -> str:
        opts = self.options
        agent: dict[str, Any] = {"name": f"chaos-drill-{uuid.uuid4().hex[:8]}", "model": opts.model}
        if opts.fallback:
            agent["config"] = {"fallbackModel": opts.fallback}
        created = await self._expect("POST", "/agents", 201, json=agent)
        agent_id: str = created["agentId"]
        return agent_id

    async def run(self) -> DrillReport:
        await self._check_provider()
        agent_id = await self._agent()
        report = DrillReport(self.options)
        try:
            session = await self._expect("POST", f"/agents/{agent_id}/sessions", 201, json={})
            url = f"/agents/{agent_id}/sessions/{session['sessionId']}/messages"
            before = await self._metrics()
            async with self._fault():
                report.outcomes += await self._traffic(url)
            for n in range(AFTER_RESTORE_REQUESTS):
                report.outcomes.append(await self._message(url, "restored", n))
            after = await self._metrics()
        finally:
            with contextlib.suppress(DrillError):
                await self._call("DELETE", f"/agents/{agent_id}")
        report.decisions = metric_deltas(before, after, DECISIONS)
        report.fallbacks = metric_deltas(before, after, FALLBACKS)
        return report


async def run_drill(options: DrillOptions) -> DrillReport:
    timeout = httpx.Timeout(options.timeout_s, connect=min(options.timeout_s, 10.0))
    limits = httpx.Limits(max_connections=max(16, math.ceil(options.rate * 4)))
    async with httpx.AsyncClient(base_url=options.url, timeout=timeout, limits=limits) as client:
        return await Drill(options, client).run()


# -- command line -----------------------------------------------------------------------------


def _duration(text: str) -> float:
    try:
        return float(Duration.parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not 0 < rate <= 1000:
        raise argparse.ArgumentTypeError(f"expected requests per second in (0, 1000], got {text!r}")
    return rate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True, help="the gateway, e.g. http://localhost:8080")
    parser.add_argument("--admin-token", default=None, help="admin token, when auth is on")
    parser.add_argument("--provider", required=True, help="the provider to take out, e.g. openai")
    parser.add_argument("--mode", choices=("drain", "reload-without-key"), default="drain")
    parser.add_argument("--duration", type=_duration, default=30.0, help="e.g. 30s (default)")
    parser.add_argument("--rate", type=_rate, default=5.0, help="requests per second (default 5)")
    parser.add_argument("--model", default="openai:gpt-4o-mini", help="the drill agent's model")
    parser.add_argument("--fallback", default="gemini:flash-1.5", help="its fallback model")
    parser.add_argument("--env-file", type=Path, default=None, help="reload-without-key: the .env")
    parser.add_argument("--key-env", default=None, help="reload-without-key: the key's variable")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def main(args: argparse.Namespace) -> int:
    options = DrillOptions(
        url=args.url.rstrip("/"),
        provider=args.provider,
        mode=args.mode,
        duration_s=args.duration,
        rate=args.rate,
        model=args.model,
        fallback=args.fallback or None,
        admin_token=args.admin_token,
        env_file=args.env_file,
        key_env=args.key_env,
    )
    try:
        report = asyncio.run(run_drill(options))
    except DrillError as exc:
        print(f"gateway chaos: drill not run: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_json(), indent=2) if args.json else report.text())
    return 0 if report.passed else 1
