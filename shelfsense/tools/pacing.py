"""The camera's side of thermal-aware operation: post the next frame no sooner than the server asked.

A ShelfSense server that runs hot (service/thermal.py, step 3) answers each frame with `next_frame_after_ms` in
its JSON and the header X-ShelfSense-Next-Frame-After-Ms. `ServerPace` remembers the last 200 answer's request,
and the agent's sender waits on it before taking its next frame: frames grabbed meanwhile replace each other in
the agent's one-frame slot (counted as dropped), so what it sends after the wait is still the newest picture. An
answer without the header lifts the request at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

__all__ = ["MAX_NEXT_FRAME_AFTER_S", "ServerPace"]

log = logging.getLogger(__name__)

# The longest wait a server can impose on a camera (the [thermal] config allows up to this): a faulty or hostile
# answer must not silence a camera for days.
MAX_NEXT_FRAME_AFTER_S = 600.0


class ServerPace:
    def __init__(self, camera: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.camera = camera
        self._clock = clock
        self.requested_ms = 0  # what the last 200 answer asked (0: nothing)
        self.paced = 0  # waits made for the server
        self.paced_s = 0.0  # seconds spent in them
        self._not_before = 0.0  # clock time before which the server asked for no frame

    def obey(self, wait_ms: int) -> None:
        """Take a 200 answer's next_frame_after_ms (0 when it had none); say so when the request starts or ends."""
        if wait_ms != self.requested_ms:
            if wait_ms:
                log.info("camera %s: the server asks for one frame per %.1f s at most", self.camera, wait_ms / 1000)
            else:
                log.info("camera %s: the server no longer asks to slow down (%d waits so far)", self.camera, self.paced)
            self.requested_ms = wait_ms
        self._not_before = self._clock() + min(wait_ms / 1000.0, MAX_NEXT_FRAME_AFTER_S) if wait_ms else 0.0

    def delay(self) -> float:
        """Seconds still to wait before the next post (0 when free to send)."""
        return max(0.0, self._not_before - self._clock())

    async def wait(self, stop: asyncio.Event) -> bool:
        """Wait out the server's request, if any; True when `stop` was set first."""
        delay = self.delay()
        if delay > 0 and not stop.is_set():
            self.paced += 1
            self.paced_s += delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        return stop.is_set()
