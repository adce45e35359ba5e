"""Admission: the budgets a frame must fit before the service spends memory or CPU on it.

Two budgets, both answered at once with 503 and Retry-After, never by queueing:
- bytes of bodies being received (`server.max_body_buffer_bytes`, all clients together): a client trickling a
  body holds only the few bytes it sent, never a frame place or a connection count that cameras need, so slow
  clients cannot lock cameras out, and body memory stays bounded whatever the number of connections;
- frames being recognised (`server.max_pending_frames`) together with their slots: a frame is admitted only if
  every one of its slots can be inferred without overflowing the inference queue, so an admitted frame completes
  instead of failing half-way with 503 after it was decoded and partly inferred.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from shelfsense.config import Config
from shelfsense.errors import OverloadedError

__all__ = ["Admission"]


class Admission:
    def __init__(self, config: Config) -> None:
        self.max_body_buffer = config.server.max_body_buffer_bytes
        self.max_frames = config.server.max_pending_frames
        # Background confirmations start only while fewer than `threads` inferences are pending, so at most that
        # many can sit in the queue beside admitted slots: keep their room free.
        self.max_slots = max(1, config.model.queue_size - config.model.threads)
        self.body_bytes = 0  # received so far by bodies still being read
        self.frames = 0
        self.slots = 0

    def take_body_bytes(self, n: int) -> None:
        """Account `n` more received body bytes; OverloadedError when the shared body buffer is full."""
        if self.body_bytes + n > self.max_body_buffer:
            raise OverloadedError(
                f"Frame bodies being received fill server.max_body_buffer_bytes ({self.max_body_buffer}); retry shortly"
            )
        self.body_bytes += n

    def give_body_bytes(self, n: int) -> None:
        self.body_bytes -= n

    @contextmanager
    def frame(self, slots: int) -> Iterator[None]:
        if self.frames >= self.max_frames:
            n = self.frames
            raise OverloadedError(f"{n} frame{'s are' if n != 1 else ' is'} already being processed; retry shortly")
        if self.slots + slots > self.max_slots:
            raise OverloadedError(
                f"The inference queue cannot take this frame's {slots} slots now "
                f"({self.slots} of {self.max_slots} places taken); retry shortly"
            )
        self.frames += 1
        self.slots += slots
        try:
            yield
        finally:
            self.frames -= 1
            self.slots -= slots
