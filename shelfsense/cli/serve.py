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

    from aiohttp import web

    from shelfsense.cli.signals import on_stop_signals
    from shelfsense.config import load_config
    from shelfsense.service.app import create_app
    from shelfsense.service.handlers import RedactingAccessLogger

    config = load_config(args.config or os.environ.get("SHELFSENSE_CONFIG") or None)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        config = config.replace(server=overrides)  # checked like the file's own values
    host, port = config.server.host, config.server.port
    log.info("config %s; starting on http://%s:%d/", config.source, host, port)
    # run_app answers in-flight requests on SIGTERM/SIGINT, then runs cleanup (the disk cache closes cleanly).
    # Its own handlers raise on every signal, and a second one (`timeout` signals the process and its group)
    # broke off that cleanup with a traceback: ours start the shutdown once and ignore the repeats.
    loop = asyncio.new_event_loop()
    stopping = False

    def stop() -> None:
        nonlocal stopping
        if stopping:
            log.info("already stopping: finishing in-flight requests, then closing the cache")
            return
        stopping = True
        raise web.GracefulExit()

    try:
        with on_stop_signals(stop, loop):
            web.run_app(
                create_app(config),
                host=host,
                port=port,
                shutdown_timeout=10,
                print=None,
                loop=loop,
                handle_signals=False,
                access_log_class=RedactingAccessLogger,
            )
    except OSError as exc:  # the address is taken, not on this machine, not resolvable, a privileged port...
        log.debug("serving on %s:%d failed", host, port, exc_info=True)
        raise ConfigError(f"Cannot serve on {host}:{port} (server.host, server.port): {exc.strerror or exc}") from None
    return 0
