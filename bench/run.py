"""The gateway's performance benchmark (issue 9). One command:

    .venv/bin/python -m bench.run                 # full: 10 s runs, 3 repeats, medians
    .venv/bin/python -m bench.run --quick         # a quick look: 2 s runs, 1 repeat

It starts a fake OpenAI upstream (bench/upstream.py) and wrk on one core, and on the other core, one
at a time under load: nginx as a reverse proxy (when installed), a minimal raw-ASGI pass-through on the
gateway's client stack (bench/baseline.py) and the gateway itself (``gateway serve``, one worker,
JSON logs at INFO to a file, metrics on, SQLite store). Each is driven at every concurrency for JSON and
SSE answers on ``/v1/chat/completions`` ("direct" is the fake upstream itself), and the gateway also on
the AgentOS message route (store writes included). Then: the SSE relay check (64 streams, chunks 10 ms
apart), the failover probes (drained primary, open breaker, refused connection), the cost of each
production feature (gateway variants with logging or metrics off) and a py-spy profile under load.
Medians of the repeats are printed as markdown and everything is written to bench/results/.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # ``python bench/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report
from bench.loadgen import Load, drive, wrk_available
from bench.measure import measure, wait_idle, write_lines
from bench.procs import Proc, install_cleanup
from bench.profile import pyspy_path, pyspy_record, summarize_speedscope
from bench.scaling import scaling
from bench.stack import MODEL, SSE_GAP_MODEL, GatewayOptions, Stack, http_json, machine, versions

HERE = Path(__file__).resolve().parent
V1_PATH = "/v1/chat/completions"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Say hello in one short sentence."},
]
PROBE_ROUNDS = 4  # alternating reference/probe pairs per repeat


def duration(text: str) -> float:
    text = text.strip().lower()
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    if text.endswith("s"):
        return float(text[:-1])
    if text.endswith("m"):
        return float(text[:-1]) * 60
    return float(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--duration", type=duration, default=None, help="each run (default 10s; --quick 2s)"
    )
    p.add_argument(
        "--warmup",
        type=duration,
        default=None,
        help="before each run (default 1s; wrk rounds to whole seconds, 0 for none)",
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="repeats, medians reported (default 3; --quick 1)"
    )
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated (default 1,16,64)")
    p.add_argument("--quick", action="store_true", help="short runs, one repeat, no variants")
    p.add_argument("--kinds", default="json,sse", help="answer kinds to drive (json,sse)")
    p.add_argument(
        "--targets",
        default="direct,nginx,baseline,gateway,agentos",
        help="direct,nginx,baseline,baseline-httpx,baseline-lean,gateway,agentos (nginx is skipped "
        "when not installed; baseline-lean is the pass-through on the gateway's own client path)",
    )
    p.add_argument("--loadgen", choices=["auto", "wrk", "asyncio"], default="auto")
    p.add_argument(
        "--http-client",
        default=None,
        help="gateway runtime.router.httpClient (default: the gateway's default)",
    )
    p.add_argument(
        "--sessions", type=int, default=256, help="AgentOS sessions per run, used round-robin"
    )
    p.add_argument("--sse-check-concurrency", type=int, default=64)
    p.add_argument("--no-sse-check", action="store_true")
    p.add_argument("--no-probes", action="store_true")
    p.add_argument(
        "--variants",
        default=None,
        help="gateway variants for the feature costs: logging-off,metrics-off,all-off,"
        "aiohttp-client,httpx-client (default: all but --quick: none; 'none' to skip)",
    )
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    p.add_argument(
        "--scaling",
        choices=["auto", "on", "off"],
        default="auto",
        help="--workers 1 vs 2, unpinned, with the metrics count checked (auto: on unless --quick)",
    )
    p.add_argument("--server-cpu", default="0", help="core of the servers under test")
    p.add_argument("--load-cpu", default="1", help="core of wrk and the fake upstream")
    p.add_argument(
        "--max-foreign",
        type=float,
        default=0.05,
        help="repeat a run when other processes used more than this share of the machine",
    )
    p.add_argument(
        "--max-wait",
        type=duration,
        default=900.0,
        help="total time to spend waiting for a quiet machine before re-running noisy runs (15m)",
    )
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--keep-workdir", action="store_true", help="keep configs and logs of the run")
    args = p.parse_args(argv)
    args.duration = args.duration if args.duration is not None else (2.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else 1.0
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if args.variants is None:
        args.variants = (
            "none" if args.quick else "logging-off,metrics-off,all-off,aiohttp-client,httpx-client"
        )
    args.scaling = args.scaling == "on" or (args.scaling == "auto" and not args.quick)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c]
    args.kinds = [k for k in args.kinds.split(",") if k]
    args.targets = [t for t in args.targets.split(",") if t]
    args.variants = [] if args.variants == "none" else [v for v in args.variants.split(",") if v]
    if args.loadgen == "auto":
        args.loadgen = "wrk" if wrk_available() else "asyncio"
    return args


def log(msg: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace, stack: Stack) -> None:
        self.args = args
        self.stack = stack
        self.dir = stack.dir
        self.runs: list[dict[str, Any]] = []
        self.agents: dict[tuple[str, str], str] = {}
        self.notes: list[str] = []
        self._files: dict[str, Path] = {}
        self.wait_budget = float(args.max_wait)  # seconds, for the whole run

    # -- fixtures ------------------------------------------------------------------------------

    def file(self, name: str, content: str) -> Path:
        if name not in self._files:
            path = self.dir / name
            path.write_text(content)
            self._files[name] = path
        return self._files[name]

    def chat_body(self, model: str, stream: bool) -> Path:
        body: dict[str, Any] = {
            "model": model,
            "messages": MESSAGES,
            "max_tokens": 64,
            "temperature": 0.2,
        }
        if stream:
            body["stream"] = True
        name = f"body-{model.replace(':', '_')}-{'sse' if stream else 'json'}.json"
        return self.file(name, json.dumps(body))

    def agent(self, gateway: str, model: str) -> str:
        key = (gateway, model)
        if key not in self.agents:
            self.agents[key] = self.stack.create_agent(gateway, model)
        return self.agents[key]

    def agentos_paths(self, gateway: str, model: str, stream: bool) -> Path:
        agent_id = self.agent(gateway, model)
        sessions = self.stack.create_sessions(gateway, agent_id, self.args.sessions)
        query = "?stream=true" if stream else ""
        lines = [f"/agents/{agent_id}/sessions/{s}/messages{query}" for s in sessions]
        path = self.dir / f"paths-{gateway}-{time.monotonic_ns()}.txt"
        return write_lines(path, lines)

    def load_for(
        self, target: str, kind: str, concurrency: int, *, model: str = MODEL
    ) -> tuple[Load, str]:
        """The load for ``target`` and the server whose CPU it measures."""
        stream = kind != "json"
        if target in ("gateway", "agentos") or target.startswith("gateway-"):
            gateway = "gateway" if target == "agentos" else target
            url = self.stack.urls[gateway]
            if target == "agentos":
                return Load(
                    url,
                    self.agentos_body(),
                    self.agentos_paths(gateway, model, stream),
                    concurrency,
                    self.args.duration,
                ), gateway
            body = self.chat_body(model if ":" in model else f"openai:{model}", stream)
            return Load(url, body, self.v1_paths(), concurrency, self.args.duration), gateway
        body = self.chat_body(model, stream)
        return Load(
            self.stack.urls[target], body, self.v1_paths(), concurrency, self.args.duration
        ), target

    def agentos_body(self) -> Path:
        return self.file("body-agentos.json", json.dumps({"content": MESSAGES[1]["content"]}))

    def v1_paths(self) -> Path:
        return self.file("paths-v1.txt", V1_PATH + "\n")

    def ours(self) -> list[Proc]:
        return list(self.stack.procs.values())

    def run_one(
        self,
        phase: str,
        target: str,
        *,
        kind: str,
        concurrency: int,
        load: Load,
        server: str,
        **extra: Any,
    ) -> dict[str, Any]:
        args = self.args
        attempt = 0
        while True:
            result = measure(
                target=target,
                kind=kind,
                load=load,
                tool=args.loadgen,
                load_cpu=args.load_cpu,
                measured=self.stack.procs[server],
                ours=self.ours(),
                warmup_s=args.warmup,
            )
            if result["foreign_cpu"] <= args.max_foreign or attempt >= 2 or self.wait_budget <= 0:
                break
            attempt += 1
            log(f"  other processes used {result['foreign_cpu']:.0%} of the machine: wait, again")
            waited = time.monotonic()
            wait_idle(args.max_foreign, min(120.0, self.wait_budget))
            self.wait_budget -= time.monotonic() - waited
        record = {
            "phase": phase,
            "target": target,
            "kind": kind,
            "concurrency": concurrency,
            "noisy": result["foreign_cpu"] > args.max_foreign,
            **extra,
            **result,
        }
        self.runs.append(record)
        log(
            f"  {phase:<8} {target:<16} {kind:<7} c={concurrency:<3} {result['rps']:8.0f} req/s  "
            f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:8.2f} ms  err {result['errors']}  "
            f"cpu {result['cpu_us_per_req'] or 0:6.0f} us/req  foreign {result['foreign_cpu']:.0%}"
        )
        return record

    # -- phases --------------------------------------------------------------------------------

    def matrix(self) -> None:
        args = self.args
        targets = [t for t in args.targets if t in self.stack.urls or t == "agentos"]
        for repeat in range(args.repeats):
            log(f"matrix, repeat {repeat + 1}/{args.repeats}")
            for kind in args.kinds:
                for c in args.concurrency:
                    for target in targets:
                        load, server = self.load_for(target, kind, c)
                        self.run_one(
                            "matrix",
                            target,
                            kind=kind,
                            concurrency=c,
                            load=load,
                            server=server,
                            repeat=repeat,
                        )

    def sse_check(self) -> None:
        args = self.args
        c = args.sse_check_concurrency
        targets = [t for t in args.targets if t in self.stack.urls or t == "agentos"]
        for repeat in range(args.repeats):
            log(
                f"SSE relay check ({c} streams, 10 chunks 10 ms apart), repeat {repeat + 1}/{args.repeats}"
            )
            for target in targets:
                load, server = self.load_for(target, "sse-gap", c, model=SSE_GAP_MODEL)
                self.run_one(
                    "sse-check",
                    target,
                    kind="sse-gap",
                    concurrency=c,
                    load=load,
                    server=server,
                    repeat=repeat,
                )

    def probes(self) -> None:
        args = self.args
        url = self.stack.urls["gateway"]
        paths = self.v1_paths()

        def pair(gateway: str, label: str, probe_model: str, repeat: int) -> None:
            """Short runs of reference and probe, alternating: c=1 latency drifts by more than the
            0.1 ms to resolve over tens of seconds, so each probe run is compared with its neighbour."""
            base = self.stack.urls[gateway]
            seconds = max(2.0, args.duration / PROBE_ROUNDS)
            sides = (("bench-ref", "reference"), (probe_model, "probe"))
            for round_ in range(PROBE_ROUNDS):
                for model, role in sides if round_ % 2 == 0 else sides[::-1]:
                    load = Load(base, self.chat_body(model, False), paths, 1, seconds)
                    self.run_one(
                        "probe",
                        f"{label}:{role}",
                        kind="json",
                        concurrency=1,
                        load=load,
                        server=gateway,
                        repeat=repeat,
                        round=round_,
                        probe=label,
                        role=role,
                    )

        # (a) drained primary: the same skip as an open breaker, decided before any I/O.
        http_json("POST", url + "/admin/providers/openrouter/drain")
        # (b) open breaker: trip cerebras (refused connections) on the production gateway.
        for _ in range(12):
            http_json("POST", url + V1_PATH, {"model": "bench-refused", "messages": MESSAGES})
        state = self.provider_state("gateway", "cerebras")
        self.notes.append(f"cerebras breaker before the open-breaker probe: {state}")
        log(f"probes: cerebras breaker {state}")
        # (c) refused connection: a gateway whose breakers never open, so every call is refused.
        self.stack.start_gateway(
            GatewayOptions(name="gateway-nobreaker", never_trip=True, http_client=args.http_client)
        )
        try:
            for repeat in range(args.repeats):
                log(f"probes, repeat {repeat + 1}/{args.repeats}")
                pair("gateway", "drained-primary", "bench-drained", repeat)
                pair("gateway", "open-breaker", "bench-refused", repeat)
                pair("gateway-nobreaker", "refused-connection", "bench-refused", repeat)
            state = self.provider_state("gateway-nobreaker", "cerebras")
            self.notes.append(
                f"cerebras on the never-trip gateway after the refused probe: {state}"
            )
        finally:
            self.stack.stop("gateway-nobreaker")
            http_json("POST", url + "/admin/providers/openrouter/restore")

    def provider_state(self, gateway: str, name: str) -> str:
        rows = http_json("GET", self.stack.urls[gateway] + "/providers")["providers"]
        row = next(r for r in rows if r["provider"] == name)
        stats = row["stats"]
        return f"breaker={row['breaker']['state']} calls={stats['calls']} errors={stats['errors']}"

    def _start_variants(self) -> list[tuple[str, str]]:
        http_client = self.args.http_client
        options = {
            "logging-off": GatewayOptions(
                name="gateway-logging-off", log_level="warning", http_client=http_client
            ),
            "metrics-off": GatewayOptions(
                name="gateway-metrics-off", metrics=False, http_client=http_client
            ),
            "all-off": GatewayOptions(
                name="gateway-all-off", log_level="warning", metrics=False, http_client=http_client
            ),
            "aiohttp-client": GatewayOptions(name="gateway-aiohttp-client", http_client="aiohttp"),
            "httpx-client": GatewayOptions(name="gateway-httpx-client", http_client="httpx"),
        }
        started: list[tuple[str, str]] = []
        for variant in self.args.variants:
            if variant not in options:
                raise SystemExit(f"unknown variant {variant!r}; known: {', '.join(options)}")
            if variant.endswith("-client") and not supports_http_client():
                self.notes.append(f"variant {variant} skipped: no runtime.router.httpClient")
                continue
            try:
                self.stack.start_gateway(options[variant])
            except RuntimeError as exc:
                self.notes.append(f"variant {variant} did not start: {str(exc).splitlines()[0]}")
                continue
            started.append((variant, options[variant].name))
        return started

    def variants(self) -> None:
        """The production gateway and its variants, interleaved: what logging, metrics cost."""
        args = self.args
        started = self._start_variants()
        if not started:
            return
        gateways = [("production", "gateway"), *started]
        scenarios = [("v1", 1), ("v1", 16), ("agentos", 16)]
        try:
            for repeat in range(args.repeats):
                log(f"feature costs, repeat {repeat + 1}/{args.repeats}")
                for (api, c), (variant, name) in itertools.product(scenarios, gateways):
                    url = self.stack.urls[name]
                    if api == "agentos":
                        paths = self.agentos_paths(name, MODEL, False)
                        load = Load(url, self.agentos_body(), paths, c, args.duration)
                    else:
                        body = self.chat_body(f"openai:{MODEL}", False)
                        load = Load(url, body, self.v1_paths(), c, args.duration)
                    self.run_one(
                        "variant",
                        f"{variant}:{api}",
                        kind="json",
                        concurrency=c,
                        load=load,
                        server=name,
                        repeat=repeat,
                        variant=variant,
                        api=api,
                    )
        finally:
            for _, name in started:
                self.stack.stop(name)

    def profile(self) -> list[dict[str, Any]]:
        pyspy = pyspy_path()
        if not Path(pyspy).exists():
            self.notes.append(
                "profiles skipped: py-spy not installed (pip install py-spy into the venv)"
            )
            return []
        out = []
        seconds = max(5.0, self.args.duration)
        for target in ("gateway", "agentos"):
            load, server = self.load_for(target, "json", 16)
            load = Load(load.base_url, load.body_file, load.paths_file, 16, seconds + 4)
            dest = self.args.out / f"{self.stamp}-profile-{target}-c16.speedscope.json"
            log(f"profiling {target} at c=16 with py-spy ({seconds:g} s)")
            spy = subprocess.Popen(  # noqa: S603
                pyspy_record(pyspy, self.stack.procs[server].pid, seconds, 250, dest),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            time.sleep(0.5)
            result = drive(load, self.args.loadgen, self.args.load_cpu)
            text, _ = spy.communicate(timeout=seconds + 60)
            if spy.returncode != 0 or not dest.exists():
                self.notes.append(f"py-spy failed on {target}: {text.strip().splitlines()[-1:]}")
                continue
            summary = summarize_speedscope(dest)
            summary.update(
                target=target,
                file=str(dest.relative_to(HERE.parent))
                if dest.is_relative_to(HERE.parent)
                else str(dest),
                rps_while_profiling=result["requests"] / (result["duration_us"] / 1e6),
            )
            out.append(summary)
        return out

    stamp = ""


def supports_http_client() -> bool:
    try:
        from gateway.config.schema import RouterSection
    except ImportError:
        return False
    return "http_client" in getattr(RouterSection, "__struct_fields__", ())


def start(stack: Stack, args: argparse.Namespace) -> None:
    log(f"work directory {stack.dir}")
    stack.start_upstream()
    if "nginx" in args.targets and stack.start_nginx() is None:
        log("nginx not installed: no nginx row (apt-get install nginx-light)")
    if "baseline" in args.targets:
        stack.start_baseline()
    if "baseline-httpx" in args.targets:
        stack.start_baseline("baseline-httpx", client="httpx")
    if "baseline-lean" in args.targets:
        stack.start_baseline("baseline-lean", client="gateway")
    stack.start_gateway(GatewayOptions(http_client=args.http_client))
    log("servers: " + ", ".join(f"{k}={v}" for k, v in stack.urls.items()))


def run_phases(bench: Bench, stack: Stack, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every phase; one that fails is noted and the others still run."""
    profiles: list[dict[str, Any]] = []
    wait_idle(args.max_foreign, 60)
    start(stack, args)
    phases: list[tuple[str, Callable[[], Any]]] = [("matrix", bench.matrix)]
    if not args.no_sse_check:
        phases.append(("sse-check", bench.sse_check))
    if not args.no_probes:
        phases.append(("probes", bench.probes))
    if args.variants:
        phases.append(("variants", bench.variants))
    if args.scaling:
        phases.append(("scaling", lambda: scaling(bench)))
    if not args.no_profile:
        phases.append(("profile", lambda: profiles.extend(bench.profile())))
    for name, phase in phases:
        try:
            phase()
        except (RuntimeError, OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
            first = str(exc).strip().splitlines()[:3]
            bench.notes.append(f"phase {name} failed: {type(exc).__name__}: {' / '.join(first)}")
            log(f"phase {name} failed: {exc}")
    return profiles


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    install_cleanup()
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    stack = Stack(workdir, server_cpu=args.server_cpu, load_cpu=args.load_cpu)
    bench = Bench(args, stack)
    bench.stamp = stamp
    started = time.monotonic()
    log(
        f"load generator: {args.loadgen}; duration {args.duration:g} s, warm-up {args.warmup:g} s, "
        f"{args.repeats} repeat(s), concurrency {args.concurrency}"
    )
    if args.loadgen == "asyncio":
        bench.notes.append(
            "wrk not found: the asyncio load generator was used (apt-get install wrk)"
        )
    interrupted = False
    profiles: list[dict[str, Any]] = []
    try:
        profiles = run_phases(bench, stack, args)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: reporting what was measured")
    finally:
        memory = {name: proc.memory() for name, proc in stack.procs.items()}
        gateway_log = stack.dir / "gateway" / "gateway.log"
        log_lines = sum(1 for _ in gateway_log.open()) if gateway_log.exists() else 0
        stack.close()
    results = {
        "stamp": stamp,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine(),
        "versions": versions(),
        "elapsed_s": round(time.monotonic() - started, 1),
        "interrupted": interrupted,
        "memory_kb": memory,
        "gateway_log_lines": log_lines,
        "notes": bench.notes,
        "runs": bench.runs,
        "profiles": profiles,
    }
    results["summary"] = report.summarize(results)
    path = args.out / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    text = report.markdown(results)
    path.with_suffix(".md").write_text(text)
    print(text)
    log(f"results: {path} and {path.with_suffix('.md')}")
    if args.keep_workdir:
        log(f"configs and logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
