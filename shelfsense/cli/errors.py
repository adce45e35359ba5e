"""The one error format of every command: `shelfsense: error: <what is wrong>` on stderr, exit status 2."""

from __future__ import annotations

import sys

__all__ = ["EXIT_USAGE", "fail"]

EXIT_USAGE = 2  # bad arguments, unreadable input, a source or server address that cannot be used


def fail(problem: object) -> int:
    """Print `problem` (an exception or a message) in the one error format; returns the exit status to use."""
    print(f"shelfsense: error: {problem}", file=sys.stderr)
    return EXIT_USAGE
