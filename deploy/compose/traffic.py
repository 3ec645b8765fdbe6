"""Demo traffic for the Compose stack's `demo` profile: keeps the Grafana dashboards live.

Sends a steady trickle of requests to the gateway's `demo` route (simulated OpenAI first, simulated
Gemini as the fallback) through both APIs, streaming included, and every few minutes makes the first
simulated provider answer 503 for a while, so the dashboards show fallbacks, a breaker opening and
closing again, then recovery. Standard library only: it runs in the gateway image.

    python deploy/compose/traffic.py --url http://127.0.0.1:8080 --key demo-client-key \
        --sim-control http://127.0.0.1:8101,http://127.0.0.1:8102 --max-requests 20

Stops after --max-requests or --duration when given (0 = run until stopped), and on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

PROMPTS = (
    "Summarise the plot of Hamlet in one sentence.",
    "Give me three names for a grey cat.",
    "What is a circuit breaker in distributed systems?",
    "Translate 'good morning' into French.",
    "Write a haiku about failover.",
)


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url.rstrip("/")
        self.key = args.key
        self.model = args.model
        self.sims = [u.rstrip("/") for u in args.sim_control.split(",") if u.strip()]
        self.timeout = args.timeout
        self.latencies = [int(v) for v in args.sim_latency_ms.split(",") if v.strip()]
        self.counts: Counter[str] = Counter()
        self.agent: str | None = None
        self.session: str | None = None

    def _request(
        self, method: str, path: str, body: Any = None, *, base: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        data = None if body is None else json.dumps(body).encode()
        url = f"{base or self.url}{path}"
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {url!r}")
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - checked
        request.add_header("content-type", "application/json")
        if base is None:
            request.add_header("authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def wait_ready(self, deadline_s: float) -> None:
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                status, _, _ = self._request("GET", "/ready", base=self.url)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"traffic: gateway {self.url} not ready after {deadline_s:.0f}s")
            time.sleep(1)

    def set_faults(self, index: int, plan: dict[str, Any]) -> None:
        if index < len(self.sims):
            try:
                self._request("POST", "/_sim/faults", plan, base=self.sims[index])
            except OSError as exc:
                print(f"traffic: cannot reach {self.sims[index]}: {exc}", flush=True)

    def baseline(self) -> None:
        """Realistic latencies (the first sim a little faster than the second), no error."""
        for index, latency in enumerate(self.latencies):
            plan = {"statusAlways": None, "latencyMs": latency, "chunkDelayMs": latency // 8}
            self.set_faults(index, plan)

    def _open_session(self) -> None:
        status, _, body = self._request(
            "POST", "/agents", {"name": f"traffic-{os.getpid()}", "model": self.model, "tools": []}
        )
        if status != 201:
            raise SystemExit(f"traffic: cannot create the demo agent: {status} {body[:300]!r}")
        self.agent = json.loads(body)["agentId"]
        status, _, body = self._request(
            "POST", f"/agents/{self.agent}/sessions", {"userId": "demo"}
        )
        if status != 201:
            raise SystemExit(f"traffic: cannot create a session: {status} {body[:300]!r}")
        self.session = json.loads(body)["sessionId"]

    def one(self) -> None:
        prompt = random.choice(PROMPTS)  # noqa: S311 - not cryptography
        roll = random.random()  # noqa: S311
        if roll < 0.15:
            if self.session is None:
                self._open_session()
            path = f"/agents/{self.agent}/sessions/{self.session}/messages"
            status, headers, _ = self._request("POST", path, {"role": "user", "content": prompt})
        else:
            body = {
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "stream": roll > 0.7,
                "max_tokens": 64,
            }
            status, headers, _ = self._request("POST", "/v1/chat/completions", body)
        provider = {k.lower(): v for k, v in headers.items()}.get("x-gateway-provider", "-")
        self.counts[f"{status} {provider}"] += 1

    def run(self, args: argparse.Namespace) -> int:
        self.wait_ready(args.ready_timeout)
        self.baseline()
        start = time.monotonic()
        sent = 0
        faulty = False
        interval = 1.0 / args.rate
        while not (args.max_requests and sent >= args.max_requests):
            elapsed = time.monotonic() - start
            if args.duration and elapsed >= args.duration:
                break
            # The outage window: the last --fault-for seconds of every --fault-every period.
            in_window = args.fault_every > 0 and (
                elapsed % args.fault_every >= args.fault_every - args.fault_for
            )
            if in_window != faulty:
                faulty = in_window
                if faulty:
                    self.set_faults(0, {"statusAlways": 503, "retryAfter": None})
                else:
                    self.baseline()
                print(f"traffic: first simulated provider {'down (503)' if faulty else 'back'}")
            try:
                self.one()
            except OSError as exc:
                self.counts[f"error {type(exc).__name__}"] += 1
            sent += 1
            if sent % args.report_every == 0:
                print(f"traffic: {sent} requests {dict(sorted(self.counts.items()))}", flush=True)
            time.sleep(max(0.0, random.uniform(0.5, 1.5) * interval))  # noqa: S311
        if faulty:
            self.baseline()
        print(f"traffic: done, {sent} requests {dict(sorted(self.counts.items()))}", flush=True)
        return 0


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=env("GATEWAY_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--key", default=env("DEMO_CLIENT_KEY", ""), help="client API key")
    parser.add_argument("--model", default=env("DEMO_MODEL", "demo"), help="model or route name")
    parser.add_argument(
        "--sim-control",
        default=env("SIM_CONTROL_URLS", ""),
        help="comma-separated base URLs of the simulated providers (fault control)",
    )
    parser.add_argument(
        "--sim-latency-ms",
        default="120,250",
        help="baseline latency of each simulated provider, comma-separated",
    )
    parser.add_argument("--rate", type=float, default=2.0, help="requests per second")
    parser.add_argument("--fault-every", type=float, default=300.0, help="seconds; 0 = no outage")
    parser.add_argument("--fault-for", type=float, default=60.0, help="outage length, seconds")
    parser.add_argument("--max-requests", type=int, default=0)
    parser.add_argument("--duration", type=float, default=0.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    parser.add_argument("--report-every", type=int, default=50)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.key:
        print("traffic: no client key (--key or DEMO_CLIENT_KEY)", file=sys.stderr)
        return 2
    if args.rate <= 0 or (args.fault_every > 0 and not 0 <= args.fault_for <= args.fault_every):
        print("traffic: need --rate > 0 and 0 <= --fault-for <= --fault-every", file=sys.stderr)
        return 2

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    return Demo(args).run(args)


if __name__ == "__main__":
    sys.exit(main())
