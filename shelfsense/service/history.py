"""A bounded ring of service figures over time (GET /v1/stats/history), so the dashboard opens on the past hour.

One sample every `step_s` seconds, the last `span_s` seconds kept: 720 samples for an hour at 5 s. The dashboard's
charts read it once when the page opens and then add their own polls.
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["History"]


class History:
    def __init__(self, span_s: float, step_s: float) -> None:
        self.span_s = span_s
        self.step_s = step_s
        self._samples: deque[dict[str, Any]] = deque(maxlen=max(1, int(span_s // step_s)))

    def add(self, t: float, **values: Any) -> None:
        self._samples.append({"t": round(t, 3), **values})

    def payload(self) -> dict[str, Any]:
        return {"span_s": self.span_s, "step_s": self.step_s, "samples": list(self._samples)}
