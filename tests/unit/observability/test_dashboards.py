"""The Grafana dashboards: importable as they are, on any Prometheus data source, DESIGN 3.8 names only."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.observability.metrics import GatewayMetrics, LabelBounds
from tests.integration.prometheus_server import (
    CONTRACT_METRICS,
    contract_problems,
    iter_panels,
    load_dashboards,
    panel_queries,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
DASHBOARDS = load_dashboards()
EXPECTED_FILES = {"gateway-overview.json", "gateway-provider.json"}
PANEL_TYPES = {"row", "timeseries", "stat", "state-timeline", "piechart"}
BREAKER_TEXTS = {"0": "closed", "1": "half-open", "2": "open"}


per_dashboard = pytest.mark.parametrize("name", sorted(DASHBOARDS))


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """Every (path, value) in a JSON tree."""
    found = [(path, node)]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _walk(value, f"{path}[{index}]")
    return found


def test_both_dashboards_exist_with_unique_uids() -> None:
    assert set(DASHBOARDS) == EXPECTED_FILES
    uids = [d["uid"] for d in DASHBOARDS.values()]
    assert all(uids) and len(set(uids)) == len(uids), uids
    assert all(len(uid) <= 40 for uid in uids)  # Grafana's limit
    titles = [d["title"] for d in DASHBOARDS.values()]
    assert len(set(titles)) == len(titles)


@per_dashboard
def test_importable_as_is(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert dashboard["id"] is None  # import creates it; a fixed id would clash
    assert 36 <= dashboard["schemaVersion"] <= 41  # Grafana 10 and 11
    assert "__inputs" not in dashboard  # no import-time prompt: the datasource variable does it
    panels = iter_panels(dashboard["panels"])
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids), f"duplicate panel ids in {name}"
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and pos["w"] > 0 and pos["h"] > 0, panel["title"]


@per_dashboard
def test_every_panel_and_query_uses_the_datasource_variable(name: str) -> None:
    dashboard = DASHBOARDS[name]
    for panel in iter_panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        assert panel["targets"], f"{title}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, title
            assert target["expr"].strip(), f"{title} {target['refId']}: empty expr"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs), title
    # No data source uid written anywhere (only the variable), and no other dashboard's uid either.
    for path, value in _walk(dashboard):
        if path.endswith(".uid") and path != ".uid":
            assert value == "${datasource}", path
        if path.endswith(".datasource") and isinstance(value, dict):
            assert value == DATASOURCE, path


@per_dashboard
def test_queries_use_only_the_metric_contract(name: str) -> None:
    problems = [
        f"{title} {ref}: {problem}  ({expr})"
        for title, ref, expr in panel_queries(DASHBOARDS[name])
        for problem in contract_problems(expr)
    ]
    assert not problems, "\n".join(problems)


@per_dashboard
def test_queries_follow_grafana_conventions(name: str) -> None:
    for title, ref, expr in panel_queries(DASHBOARDS[name]):
        if "rate(" in expr or "increase(" in expr:
            assert "$__rate_interval" in expr or "$__range" in expr, f"{title} {ref}: {expr}"
        assert "[1m]" not in expr and "[5m]" not in expr, f"{title} {ref}: fixed range in {expr}"
        if name == "gateway-provider.json":  # the drill-down shows one provider, every query
            assert "$provider" in expr, f"{title} {ref}: not filtered on $provider: {expr}"


def test_every_contract_metric_is_on_a_dashboard() -> None:
    exprs = " ".join(e for d in DASHBOARDS.values() for _, _, e in panel_queries(d))
    missing = [name for name in CONTRACT_METRICS if name.removesuffix("_total") not in exprs]
    assert not missing


def test_the_contract_matches_the_collectors() -> None:
    """The hard-coded DESIGN 3.8 list is what gateway/observability/metrics.py registers."""
    registry = CollectorRegistry()
    GatewayMetrics(registry, LabelBounds([], [], []))
    registered = {
        (f"{m.name}_total" if m.type == "counter" else m.name): m.type
        for m in registry.collect()
        if m.name.startswith("gateway_")
    }
    assert registered == CONTRACT_METRICS


def _variables(name: str) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in DASHBOARDS[name]["templating"]["list"]}


@pytest.mark.parametrize(
    ("name", "multi"), [("gateway-overview.json", True), ("gateway-provider.json", False)]
)
def test_template_variables(name: str, multi: bool) -> None:
    variables = _variables(name)
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"
    provider = variables["provider"]
    assert provider["type"] == "query"
    assert provider["datasource"] == DATASOURCE
    assert provider["definition"] == "label_values(gateway_provider_up, provider)"
    assert provider["query"]["query"] == provider["definition"]
    assert provider["multi"] is multi
    assert provider["includeAll"] is multi
    if multi:
        assert provider["allValue"] == ".*"  # queries match with =~
    expected_op = '=~"$provider' if multi else '="$provider"'
    assert any(expected_op in e for _, _, e in panel_queries(DASHBOARDS[name]))


def test_breaker_state_panels_map_their_values() -> None:
    timelines = [
        panel
        for dashboard in DASHBOARDS.values()
        for panel in iter_panels(dashboard["panels"])
        if "gateway_breaker_state" in " ".join(t["expr"] for t in panel.get("targets", []))
    ]
    assert any(p["type"] == "state-timeline" for p in timelines)
    for panel in timelines:
        if panel["type"] not in ("state-timeline", "stat"):
            continue
        if "== 2" in panel["targets"][0]["expr"]:  # a count of open breakers, not a state
            continue
        mappings = panel["fieldConfig"]["defaults"]["mappings"]
        texts = {k: v["text"] for m in mappings for k, v in m["options"].items()}
        assert texts == BREAKER_TEXTS, panel["title"]


def test_overview_has_the_panels_operators_look_for() -> None:
    overview = DASHBOARDS["gateway-overview.json"]
    exprs = [e for _, _, e in panel_queries(overview)]
    joined = "\n".join(exprs)
    for needle in (
        "gateway_request_duration_seconds_count",
        "by (decision, reason)",
        "gateway_fallbacks_total",
        "by (served_model)",
        "histogram_quantile(0.99, sum by (provider, le) (rate(gateway_upstream_latency_seconds_bucket",
        "histogram_quantile(0.99, sum by (provider, le) (rate(gateway_upstream_ttft_seconds_bucket",
        "histogram_quantile(0.99, sum by (api, le) (rate(gateway_overhead_seconds_bucket",
        "gateway_inflight_requests",
        "by (provider, kind)",
        "by (provider, outcome)",
    ):
        assert needle in joined, needle
    provider = "\n".join(e for _, _, e in panel_queries(DASHBOARDS["gateway-provider.json"]))
    assert "gateway_breaker_transitions_total" in provider
