"""``gateway serve`` with a production feature switched off, to price it (benchmark only).

``--no-metrics``: every Prometheus child the gateway asks for (``metric.labels(...)``, and the
handles of ``GatewayMetrics.value`` and ``.histogram``) is a no-op, so label lookups and observations
cost nothing; collectors are still registered and ``/metrics`` still answers. Logging is switched
off through the configuration instead (``logging.level``).

Run: ``python -m bench.gateway_shim --no-metrics serve --config ...``.
"""

from __future__ import annotations

import sys
from typing import Any


class _Nop:
    def inc(self, *args: Any, **kwargs: Any) -> None:
        return None

    dec = set = observe = inc

    def labels(self, *args: Any, **kwargs: Any) -> _Nop:
        return self


def disable_metrics() -> None:
    from prometheus_client import metrics

    nop = _Nop()

    def labels(self: Any, *args: Any, **kwargs: Any) -> _Nop:
        return nop

    metrics.MetricWrapperBase.labels = labels  # type: ignore[method-assign,assignment]

    from gateway.observability.metrics import GatewayMetrics

    def handle(self: Any, metric: Any, *labels: str) -> _Nop:
        return nop

    GatewayMetrics.value = handle  # type: ignore[method-assign,assignment]
    GatewayMetrics.histogram = handle  # type: ignore[method-assign,assignment]


def main() -> int:
    argv = sys.argv[1:]
    if "--no-metrics" in argv:
        argv.remove("--no-metrics")
        disable_metrics()
    from gateway.cli import main as gateway_main

    return gateway_main(argv)


if __name__ == "__main__":
    sys.exit(main())
