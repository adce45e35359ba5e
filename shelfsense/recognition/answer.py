"""What the cache stores (an Answer: a prediction averaged over its inferences) and what a lookup returns (a Hit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from shelfsense.recognition.hashing import PerceptualKey
from shelfsense.types import Prediction, Tier

__all__ = ["Answer", "Hit"]


@dataclass(frozen=True, slots=True)
class Answer:
    """A cached prediction and the number of fresh inferences whose scores it averages."""

    prediction: Prediction
    inferences: int = 1

    def merged(self, fresh: Prediction) -> Answer:
        """The running average with one more inference (labels outside a top-k count as score 0)."""
        n = self.inferences
        scores: dict[str, float] = {}
        for label, score in self.prediction:
            scores[label] = score * n
        for label, score in fresh:
            scores[label] = scores.get(label, 0.0) + score
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])[: max(len(self.prediction), len(fresh))]
        return Answer([(label, round(total / (n + 1), 4)) for label, total in ranked], n + 1)


class Hit(NamedTuple):
    """A lookup's answer: a named tuple, as it is made for every slot of every frame."""

    prediction: Prediction
    tier: Tier  # MEMORY or DISK
    distance: int
    key: PerceptualKey  # the stored key that answered
    inferences: int  # fresh inferences behind the answer
    hits: int = 0  # hits of this answer since its last inference (memory tier)
