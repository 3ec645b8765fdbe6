"""Command line: run simulated providers as a standalone process.

    python -m gateway.sim --provider openai:openai:8101 --provider gemini:gemini:8102

Each `--provider` is NAME:WIRE[:PORT[:MODEL,MODEL...]] (port 0 or omitted = free
port).  Prints `NAME_ENDPOINT=...` / `NAME_API_KEY=...` lines once listening and
stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.sim.cluster import SimCluster, serve_forever
from gateway.sim.spec import WIRES, SimSpec


def parse_provider(text: str, api_key: str | None, reply: str | None) -> SimSpec:
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise argparse.ArgumentTypeError(f"expected NAME:WIRE[:PORT[:MODELS]], got {text!r}")
    name, wire = parts[0], parts[1]
    if wire not in WIRES:
        raise argparse.ArgumentTypeError(
            f"unknown wire {wire!r} in {text!r}; expected one of {', '.join(WIRES)}"
        )
    try:
        port = int(parts[2]) if len(parts) > 2 and parts[2] else 0
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port in {text!r}") from None
    models = tuple(m for m in parts[3].split(",") if m) if len(parts) > 3 else ()
    try:
        return SimSpec(name=name, wire=wire, api_key=api_key, models=models, port=port, reply=reply)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.sim", description="Run simulated LLM providers."
    )
    parser.add_argument(
        "--provider",
        action="append",
        required=True,
        metavar="NAME:WIRE[:PORT[:MODELS]]",
        help=f"a simulated provider; WIRE is one of {', '.join(WIRES)} (repeatable)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument(
        "--api-key", default="sim-key", help="key every sim requires (default sim-key)"
    )
    parser.add_argument("--no-auth", action="store_true", help="accept requests without a key")
    parser.add_argument("--reply", default=None, help="fixed answer text instead of the echo")
    return parser


def print_endpoints(cluster: SimCluster) -> None:
    for server in cluster:
        control = f"{server.base_url}/_sim/faults"
        print(f"# {server.name}: {server.wire} sim on {server.base_url} (faults: {control})")
    for key, value in cluster.env().items():
        print(f"{key}={value}")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    api_key: str | None = None if args.no_auth else args.api_key
    try:
        specs = [parse_provider(p, api_key, args.reply) for p in args.provider]
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    serve_forever(specs, args.host, on_ready=print_endpoints)
    return 0


if __name__ == "__main__":
    sys.exit(main())
