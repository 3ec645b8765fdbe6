"""Simulated LLM providers: real HTTP servers on loopback speaking the OpenAI,
Gemini or Anthropic wire format, with deterministic answers and fault injection
(error statuses, latency, hangs, cut or stalled streams, refused connections).

Used by `gateway demo` and by the gateway's integration tests::

    with SimCluster([SimSpec("openai", "openai"), SimSpec("gemini", "gemini")]) as sims:
        sims["openai"].set_faults(statuses=[503, 429], retry_after=1)
        env = sims.env()  # {"OPENAI_ENDPOINT": "http://127.0.0.1:PORT/v1", ...}
"""

from gateway.sim.cluster import SimCluster, serve_forever
from gateway.sim.faults import FaultPlan
from gateway.sim.requestlog import RequestRecord
from gateway.sim.server import SimServer
from gateway.sim.spec import SimSpec, Wire

__all__ = [
    "FaultPlan",
    "RequestRecord",
    "SimCluster",
    "SimServer",
    "SimSpec",
    "Wire",
    "serve_forever",
]
