"""Background confirmation and re-verification of cached answers: which facing, when, and what a sample changes.

A cached answer is a sample, not the answer: the confirmer averages more inferences into it (on idle workers,
never delaying a miss), re-infers fully confirmed answers now and then (issue 12), and tells the recognizer when
an answer is still undecided between two products and should not be served.
"""

from __future__ import annotations

import asyncio
import logging
import math

import numpy as np

from shelfsense.config import CacheConfig
from shelfsense.errors import OverloadedError
from shelfsense.recognition.answer import Hit
from shelfsense.recognition.cache import ResultCache
from shelfsense.recognition.hashing import PerceptualKey
from shelfsense.recognition.reverify import ReverifySchedule
from shelfsense.recognition.runtime import InferencePool

__all__ = ["CONFIRM_BASE", "Confirmer", "Facing"]

# Confirmation n of an answer is due after CONFIRM_BASE**n hits since the one before. At 4 (after 4, 16, 64, 256
# hits) an answer served ~340 hits before its fifth sample, and on 16 synth footages the cache was less accurate
# than fresh inference (80.1 % against 80.9 %); at 2 the same five samples are in by ~30 hits: 83.1 %
# (docs/benchmarks.md, "Accuracy with the cache on").
CONFIRM_BASE = 2

log = logging.getLogger(__name__)

Facing = tuple[Hit, int, PerceptualKey]  # one slot's hit, the slot and its own key


class Confirmer:
    """The background inferences that average, re-verify and (through `undecided`) withhold cached answers."""

    def __init__(self, config: CacheConfig, pool: InferencePool, cache: ResultCache) -> None:
        self.config = config
        self.pool = pool
        self.cache = cache
        self.confirmations = 0  # background inferences averaged into cached answers
        self.failures = 0
        self.reverify = ReverifySchedule(config)  # issue 12: confirmed answers are re-inferred now and then
        # Set by the service while the device runs hot (service/thermal.py): no new background confirmations.
        self.paused = False
        self._running: dict[PerceptualKey, asyncio.Task] = {}

    async def settle(self) -> None:
        """Wait for the background confirmations running now (the offline bench times them with the frames)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    def undecided(self, hit: Hit) -> bool:
        """A confirmed answer whose top two labels are still within noise of each other (cache.undecided_margin).

        Averaging amplifies: a facing the model reads right 60 % of the time is served right every time once its
        samples agree. But when two products stay neck and neck (a zucchini against an aubergine at 0.28 / 0.27
        after five samples), the label kept is a coin toss, and it is served to every facing of the product until
        the answer is re-verified: all of them right or all wrong, where fresh inference gets about half. So such
        an answer is not served: each slot it answers is inferred fresh, as with no cache, and the sample is
        averaged in. The margin needed shrinks as 1/sqrt(samples), as the noise of a mean does, so an answer that
        really leans one way is served again after a few frames; a true tie keeps being inferred.
        """
        c = self.config
        # confirm_inferences = 1 means the first answer stands: no averaging, so nothing to be undecided about.
        if not c.undecided_margin or c.confirm_inferences == 1 or hit.inferences < c.confirm_inferences:
            return False
        gap = hit.prediction[0][1] - hit.prediction[1][1] if len(hit.prediction) >= 2 else 1.0
        return gap < c.undecided_margin / math.sqrt(hit.inferences)

    def facing(self, group: list[Facing]) -> Facing | None:
        """Which facing of an answer hit by several slots of a frame a confirmation or re-verification infers now,
        if one is due (see `maybe`): the recognizer then cuts that slot's crop, decoding the frame whole if it has
        not yet.

        The hit count grows by the number of facings a frame, so the count that makes a confirmation due is always
        reached on the same facing: confirming with the crop that reached it would average one facing's view over
        and over, and a facing the model misreads (glare, a turned pack) would decide every facing's answer. So
        confirmations take the facings in turn (the answer's inference count picks one). A re-verification looks
        for a look-alike swapped into one facing, so it takes the facing least like the stored key. The decision
        is the last hit's, which has the highest count.
        """
        last = group[-1][0]
        if not self.due(last):
            return None
        if last.inferences < self.config.confirm_inferences:
            _, slot, key = group[last.inferences % len(group)]
        else:
            _, slot, key = max(group, key=lambda facing: facing[0].distance)
        return last, slot, key

    def due(self, hit: Hit) -> bool:
        """Whether `maybe` would start a background inference for this hit now."""
        confirmed = hit.inferences >= self.config.confirm_inferences
        return not (
            self.paused
            or (hit.hits < CONFIRM_BASE**hit.inferences if not confirmed else not self.reverify.due(hit))
            or hit.key in self._running
            or self.pool.pending >= self.pool.threads
        )

    def maybe(self, hit: Hit, crop_bgr: np.ndarray, key: PerceptualKey) -> None:
        """While an answer rests on fewer than cache.confirm_inferences inferences, re-infer a hit in the background.

        One inference of a small model on a noisy crop is a sample, not the answer: the same facing can be read
        as another product on one frame and correctly on the next. A cache that kept its first sample would
        repeat an unlucky one for as long as the facing stays, on every slot showing it. So the answer becomes
        the average of a few inferences, taken after 2, 4, 8, ... hits (CONFIRM_BASE): consecutive frames share
        their shake and exposure (and several facings of a product are hit in the same frame), spaced ones are
        closer to independent samples. The hit is answered at once with what is cached; the confirmation uses idle
        workers only, so it never delays a miss.
        """
        if not self.due(hit):
            return
        confirmed = hit.inferences >= self.config.confirm_inferences
        # A copy: the confirmation may still wait for a worker after this frame is answered, and the crop is a
        # view that would keep the whole frame alive. The frame's own misses are awaited by the frame itself.
        crop_bgr = crop_bgr.copy()
        task = asyncio.create_task(
            self._reverify(hit, key, crop_bgr) if confirmed else self._confirm(hit.key, crop_bgr)
        )
        self._running[hit.key] = task
        task.add_done_callback(lambda _: self._running.pop(hit.key, None))

    async def _confirm(self, key: PerceptualKey, crop_bgr: np.ndarray) -> None:
        try:
            prediction, _ = await self.pool.classify(crop_bgr)
        except OverloadedError:
            return  # a later hit will try again
        except Exception:  # a background task: nobody awaits it, so its failure is logged and counted here
            self.failures += 1
            log.exception("background confirmation of a cached answer failed")
            return
        self.cache.confirm(key, prediction)
        self.confirmations += 1
        self.reverify.verified(key)

    async def _reverify(self, hit: Hit, key: PerceptualKey, crop_bgr: np.ndarray) -> None:
        """Re-infer a confirmed answer. A fresh top label that disagrees is stored under the crop's own key.

        The stored key stays with its product (other facings of it still hit it); the swapped-in look-alike now
        finds its own, nearer entry. That entry is confirmed over its next hits (4, 16, ...) like any new one, so
        an unlucky sample is averaged away while a real swap keeps its label.
        """
        try:
            prediction, _ = await self.pool.classify(crop_bgr)
        except OverloadedError:
            return
        except Exception:  # a background task, as _confirm: logged and counted, never lost
            self.failures += 1
            log.exception("background re-verification of a cached answer failed")
            return
        self.reverify.runs += 1
        self.reverify.verified(hit.key)
        if prediction and hit.prediction and prediction[0][0] != hit.prediction[0][0]:
            self.reverify.changed += 1
            self.cache.store(key, prediction)
        else:
            self.cache.confirm(hit.key, prediction)
