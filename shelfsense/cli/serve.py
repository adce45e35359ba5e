"""`shelfsense serve`: run the HTTP service until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import os

from shelfsense.errors import ConfigError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser(
        "serve",
        help="run the HTTP service",
        description="Run the HTTP service: cameras POST frames, /v1/stats, /metrics and the dashboard report; "
        "SIGTERM or SIGINT stops it after answering the frames in flight.",
    )
    serve.add_argument("--config", help="config file (default: $SHELFSENSE_CONFIG or the bundled config.toml)")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from shelfsense.cli.signals import on_stop_signals
    from shelfsense.config import load_config
    from shelfsense.service.app import create_app
    from shelfsense.service.server import run_until

    config = load_config(args.config or os.environ.get("SHELFSENSE_CONFIG") or None)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        config = config.replace(server=overrides)  # checked like the file's own values
    host, port = config.server.host, config.server.port
    log.info("config %s; starting on http://%s:%d/", config.source, host, port)
    # A stop signal answers the requests in flight, then runs cleanup (the disk cache closes cleanly); a repeated
    # one (`timeout` signals the process and its group) must not break off that cleanup.
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            log.info("already stopping: finishing in-flight requests, then closing the cache")
        stop.set()

    try:
        with on_stop_signals(on_signal, loop):
            loop.run_until_complete(run_until(create_app(config), config, stop))
    except OSError as exc:  # the address is taken, not on this machine, not resolvable, a privileged port...
        log.debug("serving on %s:%d failed", host, port, exc_info=True)
        raise ConfigError(f"Cannot serve on {host}:{port} (server.host, server.port): {exc.strerror or exc}") from None
    finally:
        loop.close()
    return 0
