"""The camera's side of thermal-aware operation: post the next frame no sooner than the server asked.

A ShelfSense server that runs hot (service/thermal.py, step 3) answers each frame with `next_frame_after_ms` in
its JSON and the header X-ShelfSense-Next-Frame-After-Ms. `ServerPace` remembers the last 200 answer's request and
tells the agent's sender how long to wait; an answer without the header lifts it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["MAX_NEXT_FRAME_AFTER_S", "ServerPace"]

log = logging.getLogger(__name__)

# The longest wait a server can impose on a camera (the [thermal] config allows up to this): a faulty or hostile
# answer must not silence a camera for days.
MAX_NEXT_FRAME_AFTER_S = 600.0


class ServerPace:
    def __init__(self, camera: str, clock: Callable[[], float]) -> None:
        self.camera = camera
        self._clock = clock
        self.requested_ms = 0  # what the last 200 answer asked (0: nothing)
        self._not_before = 0.0  # clock time before which the server asked for no frame

    def obey(self, wait_ms: int) -> None:
        """Take a 200 answer's next_frame_after_ms (0 when it had none); say so when the request starts or ends."""
        if wait_ms != self.requested_ms:
            if wait_ms:
                log.info("camera %s: the server asks for one frame per %.1f s at most", self.camera, wait_ms / 1000)
            else:
                log.info("camera %s: the server no longer asks to slow down", self.camera)
            self.requested_ms = wait_ms
        self._not_before = self._clock() + min(wait_ms / 1000.0, MAX_NEXT_FRAME_AFTER_S) if wait_ms else 0.0

    def delay(self) -> float:
        """Seconds still to wait before the next post (0 when free to send)."""
        return max(0.0, self._not_before - self._clock())
