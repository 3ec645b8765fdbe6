"""Command line: ``gateway serve | check-config | demo | chaos``."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.config.loader import ConfigError, load_settings
from gateway.config.settings import Settings

DEFAULT_CONFIG = "config/default.yaml"
DEFAULT_ENV = ".env"


def _settings_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="YAML configuration file")
    parser.add_argument("--env-file", default=DEFAULT_ENV, help="dotenv file with provider keys")


def _load(args: argparse.Namespace) -> Settings:
    config = Path(args.config) if args.config else None
    if config is not None and not config.exists():
        if args.config != DEFAULT_CONFIG:
            raise ConfigError(f"{config}: no such file")
        config = None  # running outside the repo: built-in defaults
    return load_settings(config, args.env_file)


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load(args)
    print(f"configuration OK: {settings.config_path or '<defaults>'}")
    width = max(len(n) for n in settings.providers)
    for name, provider in sorted(settings.providers.items()):
        detail = f"missing {provider.missing_env}" if provider.status == "not-configured" else ""
        endpoint = provider.endpoint or "-"
        print(f"  {name:<{width}}  {provider.status:<15} {provider.wire:<9} {endpoint}  {detail}")
    for route_name, route in sorted(settings.routes.items()):
        print(f"  route {route_name}: {' -> '.join([route.primary, *route.fallbacks])}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.server import serve

    settings = _load(args)
    return serve(
        settings,
        host=args.host,
        port=args.port,
        workers=args.workers,
        config=args.config,
        env_file=args.env_file,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    return run_demo(keep_running=args.keep_running, port=args.port)


def cmd_chaos(args: argparse.Namespace) -> int:
    from gateway.chaos import main as run_chaos

    return run_chaos(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway HTTP server")
    _settings_args(serve)
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate the configuration, show providers")
    _settings_args(check)
    check.set_defaults(func=cmd_check_config)

    demo = sub.add_parser("demo", help="the whole failover story on simulated providers")
    demo.add_argument("--keep-running", action="store_true", help="leave the stack up")
    demo.add_argument("--port", type=int, default=0, help="gateway port (default: a free one)")
    demo.set_defaults(func=cmd_demo)

    from gateway.chaos import add_arguments as chaos_arguments

    chaos = sub.add_parser("chaos", help="a failover drill against a running gateway")
    chaos_arguments(chaos)
    chaos.set_defaults(func=cmd_chaos)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"gateway: invalid configuration: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
