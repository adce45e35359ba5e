"""The result step of a frame: a FrameResult of SlotResults, each slot with its label, tier and state."""

from __future__ import annotations

from dataclasses import dataclass, field

from shelfsense.recognition.slotstate import SlotState
from shelfsense.types import Box, Prediction, Tier

__all__ = ["FrameResult", "SlotResult", "slot_result"]


@dataclass(slots=True)
class SlotResult:
    slot: int
    box: Box
    label: str | None
    score: float
    cache: Tier
    distance: int | None
    top_k: Prediction = field(default_factory=list)
    lookup_ms: float = 0.0
    inference_ms: float = 0.0
    state: SlotState = SlotState.PRODUCT  # what the facing shows this frame (recognition/slotstate.py)

    def as_dict(self) -> dict:
        return {
            "slot": self.slot,
            "state": self.state,
            "box": list(self.box),
            "label": self.label,
            "score": self.score,
            "cache": self.cache,
            "distance": self.distance,
            "top_k": [{"label": label, "score": score} for label, score in self.top_k],
        }


@dataclass(slots=True)
class FrameResult:
    camera: str
    width: int
    height: int
    slots: list[SlotResult]
    decode_ms: float
    hash_ms: float
    lookup_ms: float
    inference_ms: float
    latency_ms: float

    @property
    def all_hits(self) -> bool:
        return all(s.cache.is_hit for s in self.slots)

    def timings(self) -> dict[str, float]:
        return {
            "decode": round(self.decode_ms, 3),
            "hash": round(self.hash_ms, 3),
            "lookup": round(self.lookup_ms, 3),
            "inference": round(self.inference_ms, 3),
            "total": round(self.latency_ms, 3),
        }


def slot_result(
    slot: int, box: Box, prediction: Prediction, tier: str, distance: int | None, lookup_ms: float, inference_ms: float
) -> SlotResult:
    label, score = prediction[0] if prediction else (None, 0.0)
    return SlotResult(slot, box, label, score, tier, distance, prediction, lookup_ms, inference_ms)
