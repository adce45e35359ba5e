"""The `shelfsense` command: serve, model tooling, footage, replay, camera agent and offline bench."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from shelfsense import __version__
from shelfsense.cli import bench, camera, footage, model, record, replay, serve
from shelfsense.cli.errors import fail
from shelfsense.errors import ShelfSenseError

# Each command module adds its own subcommands, in the order `shelfsense --help` lists them.
COMMANDS = (serve, model, footage, record, camera, replay, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shelfsense", description=__doc__)
    parser.add_argument("--version", action="version", version=f"shelfsense {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    bench.register_capacity(sub)  # typed `shelfsense bench capacity`, see bench.route
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(bench.route(list(sys.argv[1:] if argv is None else argv)))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except ShelfSenseError as exc:
        return fail(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
