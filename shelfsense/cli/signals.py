"""The one way commands stop on SIGINT and SIGTERM: a callback, installed for the length of a `with` block.

`serve`, `camera` and `replay` run an event loop and pass it, so the callback runs on the loop (it may set an
asyncio.Event or raise aiohttp's GracefulExit there); `record` is synchronous and passes none, so the callback
runs as a plain signal handler in the main thread. Either way the previous handlers are back after the block.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator

__all__ = ["STOP_SIGNALS", "interrupt", "on_stop_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def on_stop_signals(callback: Callable[[], None], loop: asyncio.AbstractEventLoop | None = None) -> Iterator[None]:
    """Call `callback` on each SIGINT or SIGTERM while the block runs (on `loop` when given)."""
    if loop is not None:
        installed = []
        for sig in STOP_SIGNALS:
            # Not on Windows' proactor loop, nor outside the main thread: the default handling stays there.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, callback)
                installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
        return
    previous = {}
    for sig in STOP_SIGNALS:
        with contextlib.suppress(ValueError):  # outside the main thread the default handling stays
            previous[sig] = signal.signal(sig, lambda _signum, _frame: callback())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def interrupt() -> None:
    """The synchronous commands' callback: SIGTERM ends them as Ctrl-C does (KeyboardInterrupt)."""
    raise KeyboardInterrupt
