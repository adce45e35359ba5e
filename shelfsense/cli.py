"""The `shelfsense` command: serve, model tooling, footage, replay, camera agent and offline bench."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from . import __version__
from .errors import ShelfSenseError


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .app import create_app
    from .config import load_config

    config = load_config(args.config or os.environ.get("SHELFSENSE_CONFIG") or None)
    host = args.host or config.server.host
    port = args.port or config.server.port
    logging.getLogger(__name__).info("config %s; listening on http://%s:%d/", config.source, host, port)
    # run_app answers in-flight requests on SIGTERM/SIGINT, then runs cleanup (the disk cache closes cleanly).
    web.run_app(create_app(config), host=host, port=port, shutdown_timeout=10, print=None)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import agent, benchmark, modeltools, record, replay, synth

    parser = argparse.ArgumentParser(prog="shelfsense", description=__doc__)
    parser.add_argument("--version", action="version", version=f"shelfsense {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--config", help="config file (default: $SHELFSENSE_CONFIG or the bundled config.toml)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.set_defaults(func=_serve)

    modeltools.register(sub)
    # Each command module adds its own subcommands.
    for module in (synth, record, agent, replay, benchmark):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except ShelfSenseError as exc:
        print(f"shelfsense: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
