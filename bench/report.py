"""Medians of the repeats, the issue-9 checks, and the markdown tables printed at the end of a run."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

LABELS = {
    "direct": "direct (fake upstream)",
    "nginx": "nginx reverse proxy",
    "baseline": "raw-ASGI pass-through, httpx over httpx-aiohttp",
    "baseline-httpx": "raw-ASGI pass-through, plain httpx",
    "baseline-lean": "raw-ASGI pass-through, the gateway's own client path",
    "gateway": "gateway, /v1/chat/completions",
    "agentos": "gateway, AgentOS message route (+store)",
}
ORDER = ["direct", "nginx", "baseline", "baseline-httpx", "baseline-lean", "gateway", "agentos"]


def med(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _by(runs: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    out: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        out[tuple(run.get(k) for k in keys)].append(run)
    return out


def _diff_vs(
    runs: list[dict[str, Any]],
    ref: dict[tuple[Any, ...], dict[str, Any]],
    field: str,
    key: tuple[str, ...],
) -> float | None:
    diffs = []
    for run in runs:
        other = ref.get(tuple(run.get(k) for k in key))
        if other is not None and run.get(field) is not None and other.get(field) is not None:
            diffs.append(run[field] - other[field])
    return med(diffs)


def _ratio_vs(
    runs: list[dict[str, Any]],
    ref: dict[tuple[Any, ...], dict[str, Any]],
    field: str,
    key: tuple[str, ...],
) -> float | None:
    ratios = []
    for run in runs:
        other = ref.get(tuple(run.get(k) for k in key))
        if other is not None and run.get(field) and other.get(field):
            ratios.append(run[field] / other[field])
    return med(ratios)


def summarize_matrix(runs: list[dict[str, Any]], phase: str) -> list[dict[str, Any]]:
    runs = [r for r in runs if r["phase"] == phase]
    key = ("kind", "concurrency", "repeat")
    direct = {tuple(r[k] for k in key): r for r in runs if r["target"] == "direct"}
    baseline = {tuple(r[k] for k in key): r for r in runs if r["target"] == "baseline"}
    rows = []
    for (kind, c, target), group in sorted(
        _by(runs, "kind", "concurrency", "target").items(),
        key=lambda kv: (kv[0][0], kv[0][1], ORDER.index(kv[0][2]) if kv[0][2] in ORDER else 99),
    ):
        rows.append(
            {
                "kind": kind,
                "concurrency": c,
                "target": target,
                "repeats": len(group),
                "rps": med(r["rps"] for r in group),
                "p50_ms": med(r["p50_ms"] for r in group),
                "p99_ms": med(r["p99_ms"] for r in group),
                "mean_ms": med(r["mean_ms"] for r in group),
                "errors_max": max(r["errors"] for r in group),
                "cpu_us_per_req": med(r["cpu_us_per_req"] for r in group),
                # share of its one core the server under test kept busy (CPU seconds / wall seconds)
                "cpu_util": med(r.get("cpu_util") for r in group),
                "cpu_other_threads_us_per_req": med(
                    r.get("cpu_other_threads_us_per_req") for r in group
                ),
                "added_p50_ms": None
                if target == "direct"
                else _diff_vs(group, direct, "p50_ms", key),
                "added_mean_ms": None
                if target == "direct"
                else _diff_vs(group, direct, "mean_ms", key),
                "mean_vs_direct": None
                if target == "direct"
                else _ratio_vs(group, direct, "mean_ms", key),
                "cpu_vs_baseline": None
                if target in ("baseline", "direct")
                else _ratio_vs(group, baseline, "cpu_us_per_req", key),
                "noisy_runs": sum(1 for r in group if r.get("noisy")),
                # the gateway's own durations (its access log): what the app took, sockets excluded
                "server_p50_ms": med(r.get("server_p50_ms") for r in group),
                "server_p99_ms": med(r.get("server_p99_ms") for r in group),
                "server_max_ms": med(r.get("server_max_ms") for r in group),
            }
        )
    return rows


def summarize_probes(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    runs = [r for r in runs if r["phase"] == "probe"]
    rows = []
    for (probe,), group in _by(runs, "probe").items():
        key = ("repeat", "round")
        ref = {(r["repeat"], r.get("round")): r for r in group if r["role"] == "reference"}
        probes = [r for r in group if r["role"] == "probe"]
        rows.append(
            {
                "probe": probe,
                "reference_p50_ms": med(r["p50_ms"] for r in ref.values()),
                "probe_p50_ms": med(r["p50_ms"] for r in probes),
                "added_p50_ms": _diff_vs(probes, ref, "p50_ms", key),
                "added_mean_ms": _diff_vs(probes, ref, "mean_ms", key),
                "added_cpu_us": _diff_vs(probes, ref, "cpu_us_per_req", key),
                "pairs": len(probes),
                "errors_max": max((r["errors"] for r in group), default=0),
            }
        )
    return rows


def _neg(value: float | None, variant: str) -> float | None:
    return None if value is None or variant == "production" else -value


def summarize_variants(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    runs = [r for r in runs if r["phase"] == "variant"]
    key = ("api", "kind", "concurrency", "repeat")
    prod = {tuple(r[k] for k in key): r for r in runs if r["variant"] == "production"}
    rows = []
    for (variant, api, c), group in _by(runs, "variant", "api", "concurrency").items():
        rows.append(
            {
                "variant": variant,
                "api": api,
                "concurrency": c,
                "rps": med(r["rps"] for r in group),
                "p50_ms": med(r["p50_ms"] for r in group),
                "p99_ms": med(r["p99_ms"] for r in group),
                "cpu_us_per_req": med(r["cpu_us_per_req"] for r in group),
                "cpu_saved_us": _neg(_diff_vs(group, prod, "cpu_us_per_req", key), variant),
                "p50_saved_ms": _neg(_diff_vs(group, prod, "p50_ms", key), variant),
                "errors_max": max(r["errors"] for r in group),
            }
        )
    return rows


def summarize_scaling(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    runs = [r for r in runs if r["phase"] == "scaling"]
    rows = []
    for (workers,), group in sorted(_by(runs, "workers").items()):
        rows.append(
            {
                "workers": workers,
                "rps": med(r["rps"] for r in group),
                "p50_ms": med(r["p50_ms"] for r in group),
                "p99_ms": med(r["p99_ms"] for r in group),
                "cpu_us_per_req": med(r["cpu_us_per_req"] for r in group),
                "metrics_ok": all(r["metrics_ok"] for r in group),
                "counted": [f"{r['requests']}/{r['metrics_counted']:.0f}" for r in group],
                "errors_max": max(r["errors"] for r in group),
            }
        )
    one = _row(rows, workers=1)
    for row in rows:
        base = _get(one, "rps")
        row["rps_vs_one"] = row["rps"] / base if base and row["rps"] is not None else None
    return rows


def _get(row: dict[str, Any] | None, key: str) -> float | None:
    value = None if row is None else row.get(key)
    return None if value is None else float(value)


def _row(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def checks(summary: dict[str, Any], memory_kb: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    m = summary["matrix"]
    out: list[dict[str, Any]] = []

    def add(name: str, limit: str, value: float | None, ok: bool | None, unit: str) -> None:
        out.append({"check": name, "target": limit, "measured": value, "unit": unit, "pass": ok})

    g1 = _row(m, kind="json", concurrency=1, target="gateway")
    add(
        "added latency p50, JSON c=1, /v1",
        "<= 1.0 ms",
        _get(g1, "added_p50_ms"),
        None if not g1 or g1["added_p50_ms"] is None else g1["added_p50_ms"] <= 1.0,
        "ms",
    )
    g16 = _row(m, kind="json", concurrency=16, target="gateway")
    add(
        "throughput JSON c=16, /v1",
        ">= 1500 req/s",
        _get(g16, "rps"),
        None if not g16 else g16["rps"] >= 1500,
        "req/s",
    )
    g64 = _row(m, kind="json", concurrency=64, target="gateway")
    add(
        "p99 JSON c=64, /v1",
        "<= 100 ms",
        _get(g64, "p99_ms"),
        None if not g64 else g64["p99_ms"] <= 100,
        "ms",
    )
    errors = sum(r["errors_max"] for r in m if r["target"] in ("gateway", "agentos"))
    add("errors, every gateway run", "0", errors, errors == 0, "")
    add(
        "CPU per request vs baseline, JSON c=16, /v1",
        "<= 2.0x",
        _get(g16, "cpu_vs_baseline"),
        None if not g16 or g16["cpu_vs_baseline"] is None else g16["cpu_vs_baseline"] <= 2.0,
        "x",
    )
    sse = _row(summary["sse_check"], target="gateway")
    add(
        "SSE: 64 streams, 10 chunks 10 ms apart, mean completion vs direct",
        "<= 1.05x",
        _get(sse, "mean_vs_direct"),
        None if not sse or sse["mean_vs_direct"] is None else sse["mean_vs_direct"] <= 1.05,
        "x",
    )
    hwm = memory_kb.get("gateway", {}).get("VmHWM")
    add(
        "peak RSS of the gateway",
        "<= 120 MB",
        hwm and hwm / 1024,
        None if not hwm else hwm / 1024 <= 120,
        "MB",
    )
    for probe, limit in (
        ("open-breaker", 0.1),
        ("drained-primary", 0.1),
        ("refused-connection", 2.0),
    ):
        row = _row(summary["probes"], probe=probe)
        add(
            f"{probe}: added before the fallback (p50)",
            f"<= {limit} ms",
            _get(row, "added_p50_ms"),
            None if not row or row["added_p50_ms"] is None else row["added_p50_ms"] <= limit,
            "ms",
        )
    two = _row(summary.get("scaling", []), workers=2)
    if two is not None:
        add(
            "--workers 2 vs 1 (unpinned, shared with wrk), metrics count = wrk count",
            "> 1.0x, counts agree",
            _get(two, "rps_vs_one"),
            (two["rps_vs_one"] or 0) > 1.0 and all(r["metrics_ok"] for r in summary["scaling"]),
            "x",
        )
    return out


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    runs = results["runs"]
    summary: dict[str, Any] = {
        "matrix": summarize_matrix(runs, "matrix"),
        "sse_check": summarize_matrix(runs, "sse-check"),
        "probes": summarize_probes(runs),
        "variants": summarize_variants(runs),
        "scaling": summarize_scaling(runs),
    }
    summary["checks"] = checks(summary, results.get("memory_kb", {}))
    return summary


# -- markdown ---------------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "-"
    if digits == 0:
        return f"{value:,.0f}{suffix}"
    return f"{value:,.{digits}f}{suffix}"


def _signed(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:+.{digits}f}"


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def _table(out: list[str], title: str, header: list[str], rows: Iterable[list[str]]) -> None:
    out += ["", f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]


def _intro(results: dict[str, Any]) -> list[str]:
    mach, v, a = results["machine"], results["versions"], results["args"]
    return [
        f"## Benchmark {results['stamp']}",
        "",
        f"{mach['cpu']}, {mach['cores']} cores, {mach['memory_gb']} GB, Linux {mach['kernel']}; "
        f"Python {v['python']}, litestar {v['litestar']}, uvicorn {v['uvicorn']} "
        f"(httptools {v['httptools']}, uvloop {v['uvloop']}), httpx {v['httpx']}, "
        f"httpx-aiohttp {v['httpx-aiohttp']}, aiohttp {v['aiohttp']}; {v['wrk']}; {v['nginx']}.",
        f"Servers under test pinned to core {a['server_cpu']}, fake upstream and load generator "
        f"({a['loadgen']}) to core {a['load_cpu']}. {a['duration']:g} s per run after {a['warmup']:g} s "
        f"warm-up, medians of {a['repeats']} repeat(s). Overhead = target minus direct in the same repeat.",
    ]


def _summary_rows(results: dict[str, Any]) -> Iterable[list[str]]:
    m, mem = results["summary"]["matrix"], results.get("memory_kb", {})
    for target in ORDER:
        r1, r16, r64 = (_row(m, kind="json", concurrency=c, target=target) for c in (1, 16, 64))
        if not (r1 or r16 or r64):
            continue
        hwm = mem.get("gateway" if target == "agentos" else target, {}).get("VmHWM")
        added = "(reference)" if target == "direct" else _f(_get(r1, "added_p50_ms"), 2, " ms")
        yield [
            LABELS.get(target, target),
            added,
            _f(_get(r16, "rps"), 0),
            _f(_get(r64, "p99_ms"), 1, " ms"),
            _f(_get(r16, "cpu_us_per_req"), 0, " us"),
            _f(hwm / 1024 if hwm else None, 0, " MB"),
        ]


def _matrix_rows(rows: list[dict[str, Any]]) -> Iterable[list[str]]:
    for r in rows:
        yield [
            r["target"],
            str(r["concurrency"]),
            _f(r["rps"], 0),
            _f(r["p50_ms"]) + " ms",
            _f(r["p99_ms"]) + " ms",
            _signed(r["added_p50_ms"]) + " ms",
            _f(r["cpu_us_per_req"], 0) + " us",
            _f(r["cpu_vs_baseline"], 2, "x"),
            f"{r['errors_max']}{' (noisy)' if r['noisy_runs'] else ''}",
        ]


def _profile_lines(prof: dict[str, Any]) -> list[str]:
    out: list[str] = []
    inc, own = prof["inclusive_by_package"][:12], prof["self_by_package"][:12]
    blank: dict[str, Any] = {"name": "", "share": None}
    _table(
        out,
        f"Profile: {prof['target']} at c=16 ({prof['file']}, {prof['samples_seconds']} s of samples)",
        ["package (inclusive)", "share", "", "package (self)", "share"],
        (
            [a["name"], _pct(a["share"]), "", b["name"], _pct(b["share"])]
            for a, b in (
                (inc[i] if i < len(inc) else blank, own[i] if i < len(own) else blank)
                for i in range(max(len(inc), len(own)))
            )
        ),
    )
    out += ["", "| function (self) | share |", "|---|---|"]
    out += [f"| `{row['name']}` | {_pct(row['share'])} |" for row in prof["self_by_function"][:15]]
    return out


def _server_table(out: list[str], s: dict[str, Any]) -> None:
    """Where a load generator's tail comes from: the gateway's own durations beside its latencies."""
    served = [r for r in s["matrix"] if r.get("server_p99_ms") is not None]
    if served:
        _table(
            out,
            "The gateway's own request durations (its access log) beside the load generator's",
            ["target", "kind", "c", "p50", "server p50", "p99", "server p99", "server max"],
            (
                [
                    r["target"],
                    r["kind"],
                    str(r["concurrency"]),
                    _f(r["p50_ms"]) + " ms",
                    _f(r["server_p50_ms"]) + " ms",
                    _f(r["p99_ms"]) + " ms",
                    _f(r["server_p99_ms"]) + " ms",
                    _f(r["server_max_ms"]) + " ms",
                ]
                for r in served
            ),
        )


def markdown(results: dict[str, Any]) -> str:
    s, a = results["summary"], results["args"]
    out = _intro(results)
    header = ["target", "added p50, JSON c=1", "JSON req/s c=16", "JSON p99 c=64"]
    header += ["CPU per request (JSON c=16)", "peak RSS"]
    _table(out, "Summary (issue 9 columns)", header, _summary_rows(results))
    marks = {True: "pass", False: "**MISS**", None: "n/a"}
    _table(
        out,
        "Issue 9 targets",
        ["check", "target", "measured", ""],
        (
            [c["check"], c["target"], f"{_f(c['measured'], 2)} {c['unit']}", marks[c["pass"]]]
            for c in s["checks"]
        ),
    )
    header = ["target", "c", "req/s", "p50", "p99", "added p50 vs direct", "CPU/req"]
    header += ["CPU vs baseline", "errors"]
    for kind, title in (("json", "JSON answers"), ("sse", "SSE answers (10 chunks, no gap)")):
        rows = [r for r in s["matrix"] if r["kind"] == kind]
        if rows:
            _table(out, title, header, _matrix_rows(rows))
    _server_table(out, s)
    if s["sse_check"]:
        _table(
            out,
            f"SSE relay: {a['sse_check_concurrency']} streams, 10 chunks 10 ms apart",
            [
                "target",
                "mean completion",
                "p50",
                "p99",
                "mean vs direct",
                "CPU per stream",
                "core busy",
                "errors",
            ],
            (
                [
                    r["target"],
                    _f(r["mean_ms"]) + " ms",
                    _f(r["p50_ms"]) + " ms",
                    _f(r["p99_ms"]) + " ms",
                    _f(r["mean_vs_direct"], 3, "x"),
                    _f(r["cpu_us_per_req"], 0, " us"),
                    "-" if r["cpu_util"] is None else f"{r['cpu_util']:.0%}",
                    str(r["errors_max"]),
                ]
                for r in s["sse_check"]
            ),
        )
    if s["probes"]:
        _table(
            out,
            "Failover probes (c=1, JSON; reference = the fallback called directly as primary)",
            [
                "probe",
                "reference p50",
                "probe p50",
                "added p50",
                "added mean",
                "added CPU",
                "errors",
            ],
            (
                [
                    r["probe"],
                    _f(r["reference_p50_ms"], 3) + " ms",
                    _f(r["probe_p50_ms"], 3) + " ms",
                    _signed(r["added_p50_ms"], 3) + " ms",
                    _signed(r["added_mean_ms"], 3) + " ms",
                    _signed(r["added_cpu_us"], 0) + " us",
                    str(r["errors_max"]),
                ]
                for r in s["probes"]
            ),
        )
    if s["variants"]:
        order = sorted(
            s["variants"],
            key=lambda r: (r["api"], r["concurrency"], r["variant"] != "production", r["variant"]),
        )
        _table(
            out,
            "What each production feature costs (gateway variants, JSON)",
            ["variant", "route", "c", "req/s", "p50", "CPU/req", "CPU saved", "p50 saved"],
            (
                [
                    r["variant"],
                    r["api"],
                    str(r["concurrency"]),
                    _f(r["rps"], 0),
                    _f(r["p50_ms"]) + " ms",
                    _f(r["cpu_us_per_req"], 0) + " us",
                    _signed(r["cpu_saved_us"], 0) + " us",
                    _signed(r["p50_saved_ms"]) + " ms",
                ]
                for r in order
            ),
        )
    if s.get("scaling"):
        _table(
            out,
            "Workers: gateway serve --workers N, JSON c=64, nothing pinned (2 cores shared with "
            "wrk and the fake upstream)",
            ["workers", "req/s", "vs 1 worker", "p50", "p99", "CPU/req", "wrk/metrics counts"],
            (
                [
                    str(r["workers"]),
                    _f(r["rps"], 0),
                    _f(r["rps_vs_one"], 2, "x"),
                    _f(r["p50_ms"]) + " ms",
                    _f(r["p99_ms"]) + " ms",
                    _f(r["cpu_us_per_req"], 0) + " us",
                    ", ".join(r["counted"]) + (" ok" if r["metrics_ok"] else " **MISMATCH**"),
                ]
                for r in s["scaling"]
            ),
        )
    for prof in results.get("profiles", []):
        out += _profile_lines(prof)
    if results.get("notes"):
        out += ["", "Notes: " + "; ".join(results["notes"])]
    noisy = sum(1 for r in results["runs"] if r.get("noisy"))
    if noisy:
        out += [
            "",
            f"**{noisy} run(s) had other processes using more than {a['max_foreign']:.0%} of the "
            "machine even after retries.**",
        ]
    return "\n".join(out) + "\n"
