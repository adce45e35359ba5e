"""The `shelfsense` command: serve, model tooling, footage, replay, camera agent and offline bench."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from shelfsense import __version__
from shelfsense.errors import ConfigError, ShelfSenseError


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from shelfsense.config import load_config
    from shelfsense.service.app import create_app
    from shelfsense.service.server import run_until

    config = load_config(args.config or os.environ.get("SHELFSENSE_CONFIG") or None)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        config = config.replace(server=overrides)  # checked like the file's own values
    host, port = config.server.host, config.server.port
    log = logging.getLogger(__name__)
    log.info("config %s; starting on http://%s:%d/", config.source, host, port)
    # A stop signal answers the requests in flight, then runs cleanup (the disk cache closes cleanly); a repeated
    # one (`timeout` signals the process and its group) must not break off that cleanup.
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            log.info("already stopping: finishing in-flight requests, then closing the cache")
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        loop.run_until_complete(run_until(create_app(config), config, stop))
    except OSError as exc:  # the address is taken, not on this machine, not resolvable, a privileged port...
        log.debug("serving on %s:%d failed", host, port, exc_info=True)
        raise ConfigError(f"Cannot serve on {host}:{port} (server.host, server.port): {exc.strerror or exc}") from None
    finally:
        loop.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from shelfsense.bench import benchmark
    from shelfsense.synth import synth
    from shelfsense.tools import agent, modeltools, record, replay

    parser = argparse.ArgumentParser(prog="shelfsense", description=__doc__)
    parser.add_argument("--version", action="version", version=f"shelfsense {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the HTTP service",
        description="Run the HTTP service: cameras POST frames, /v1/stats, /metrics and the dashboard report; "
        "SIGTERM or SIGINT stops it after answering the frames in flight.",
    )
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
