"""Admission: the budgets a frame must fit before the service spends memory or CPU on it.

Two budgets, both answered at once with 503 and Retry-After, never by queueing:
- bodies being received (`server.max_reading_bodies`): a slow client holds a reading place, never a frame's,
  so clients trickling bodies cannot lock cameras out, and body memory is bounded by places x max_body_bytes;
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
        self.max_reading = config.server.max_reading_bodies
        self.max_frames = config.server.max_pending_frames
        # Background confirmations start only while fewer than `threads` inferences are pending, so at most that
        # many can sit in the queue beside admitted slots: keep their room free.
        self.max_slots = max(1, config.model.queue_size - config.model.threads)
        self.reading = 0
        self.frames = 0
        self.slots = 0

    @contextmanager
    def reading_body(self) -> Iterator[None]:
        if self.reading >= self.max_reading:
            raise OverloadedError(f"{self.reading} frame bodies are being received already; retry shortly")
        self.reading += 1
        try:
            yield
        finally:
            self.reading -= 1

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
