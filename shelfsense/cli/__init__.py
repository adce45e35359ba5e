"""The `shelfsense` command line: thin commands over the tools, the service and recognition."""

from shelfsense.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
