"""The path of one frame: decode -> slots -> pictures -> perceptual keys -> memory -> disk -> inference -> result.

`Recognizer.recognize(camera_id, image_bytes)` is the one entry point; the HTTP layer, the offline bench and
the tests all go through it. Decoding, cropping and keying the slots are one call a frame (prepare.py): on the
event loop for a frame alone, in an executor while other frames are under way (see `_prepared`). Memory hits are
answered in slot order without awaiting; the other slots' disk lookups run concurrently, and their misses go
through single flight to the inference pool.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from shelfsense.config import CameraConfig, Config
from shelfsense.errors import OverloadedError, UnknownCameraError
from shelfsense.recognition.answer import Hit
from shelfsense.recognition.cache import CacheStatus, MemoryTier, ResultCache
from shelfsense.recognition.coalesce import Coalescer
from shelfsense.recognition.confirm import Confirmer, Facing
from shelfsense.recognition.decode import FrameHeader, read_header
from shelfsense.recognition.disk import DiskTier
from shelfsense.recognition.hashing import Hasher, PerceptualKey
from shelfsense.recognition.keymemo import KeyMemo
from shelfsense.recognition.prepare import FramePreparer, Prepared, SlotCrops, whole_crops
from shelfsense.recognition.result import FrameResult, SlotResult, slot_result
from shelfsense.recognition.reverify import ReverifySchedule
from shelfsense.recognition.runtime import InferencePool, ModelSpec
from shelfsense.recognition.slotstate import SlotStateClassifier
from shelfsense.types import Box, Prediction, Tier

# A textured crop, so that warming up runs the whole pHash path (a flat one would skip it).
_WARM_UP_CROP = np.tile(np.arange(64, dtype=np.uint8).reshape(8, 8, 1) * 4, (8, 8, 3))


# A frame alone is prepared on the event loop only up to these (Recognizer._prepared): a 640x480 frame with 8 slots
# takes ~2 ms of CPU here to decode and key (~10 ms on a Pi 4 if its decode is 4-6 ms, as issue 13 states), while a
# 1280x720 one took 7.7 ms to decode alone; larger frames and more slots go to the prep threads.
INLINE_MAX_PIXELS = 640 * 480
INLINE_MAX_SLOTS = 16


log = logging.getLogger(__name__)


class Recognizer:
    """Frames in, per-slot product results out, repeated products served from the cache."""

    def __init__(
        self,
        config: Config,
        pool: InferencePool,
        hasher: Hasher,
        cache: ResultCache | None,
        *,
        prepare_threads: int = 2,
    ) -> None:
        self.config = config
        self.pool = pool
        self.hasher = hasher
        self.cache = cache
        self.coalescer = Coalescer(config.cache.max_distance, hasher.colour_matches)
        # Per-slot memory is kept for the configured cameras' slots and for as many unconfigured (whole-frame, one
        # slot) cameras as server.allow_unknown_cameras keeps track of: ~11 KB a slot in the key memo.
        slots = sum(c.slot_count for c in config.cameras.values()) + config.server.max_cameras
        self.keys = KeyMemo(hasher, config.cache.key_reuse_threshold, max_slots=slots)
        # Without a cache there is nothing to confirm; the confirmer still holds the (zero) counters the stats read.
        self.confirmer = Confirmer(config.cache, pool, cache)  # type: ignore[arg-type]
        self.states = SlotStateClassifier.from_config(config) if config.shelf.enabled else None
        self.preparer = FramePreparer(self.keys if cache is not None else None, shelf=self.states is not None)
        self._prepare = ThreadPoolExecutor(max_workers=prepare_threads, thread_name_prefix="shelfsense-prep")
        self._whole_frame: dict[str, CameraConfig] = {}  # unknown cameras, least recently seen first
        self._in_flight = 0  # recognize() calls under way

    @classmethod
    async def create(cls, config: Config) -> Recognizer:
        """Load the model (in a thread: it reads and hashes the file) and open the cache tiers."""
        loop = asyncio.get_running_loop()
        pool = await loop.run_in_executor(None, InferencePool.from_config, config.model)
        c = config.cache
        hasher = Hasher(c.hash, colour_tolerance=c.colour_tolerance)
        cache = None
        if c.enabled:
            memory = MemoryTier(c.memory_entries, c.max_distance, hasher.colour_matches)
            disk = None
            if c.disk_path is not None:
                namespace = f"{pool.spec.sha256[:16]}-{c.hash}"
                disk = DiskTier(
                    c.disk_path,
                    c.disk_bytes,
                    namespace,
                    c.max_distance,
                    hasher.colour_matches,
                    c.disk_entries,
                    retry_s=c.disk_retry_s,
                )
            cache = ResultCache(memory, disk)
            await cache.open()
            # The first pHash pays one-off set-up in PIL and scipy (~100 ms here): pay it now, not on a camera's
            # first frame, where it would show as a latency spike.
            await loop.run_in_executor(None, hasher.key, _WARM_UP_CROP)
        return cls(config, pool, hasher, cache)

    @property
    def model(self) -> ModelSpec:
        return self.pool.spec

    @property
    def backend(self) -> str:
        return str(self.pool.backend)

    @property
    def invokes(self) -> int:
        return self.pool.invokes

    @property
    def queue_depth(self) -> int:
        """Slot inferences waiting for or running on a worker."""
        return self.pool.pending

    def cache_status(self) -> CacheStatus:
        cache = self.cache
        if cache is None:
            return CacheStatus(enabled=False)
        disk = cache.disk
        return CacheStatus(
            enabled=True,
            entries_memory=cache.entries_memory,
            entries_disk=cache.entries_disk,
            disk_available=bool(disk is not None and disk.available),
            disk_error=disk.error if disk is not None else None,
            disk_path=disk.path if disk is not None else None,
            disk_retry_in_s=round(max(0.0, disk.retry_at - time.monotonic()), 1)
            if disk is not None and disk.retry_at is not None
            else None,
        )

    async def settle(self) -> None:
        """Wait for the background confirmations running now (the offline bench times them with the frames)."""
        await self.confirmer.settle()

    @property
    def confirmations(self) -> int:
        return self.confirmer.confirmations

    @property
    def reverify(self) -> ReverifySchedule:
        return self.confirmer.reverify

    @property
    def background_paused(self) -> bool:
        return self.confirmer.paused

    @background_paused.setter
    def background_paused(self, paused: bool) -> None:
        self.confirmer.paused = paused

    async def close(self) -> None:
        await self.settle()
        if self.cache is not None:
            await self.cache.close()
        self.pool.close()
        self._prepare.shutdown(wait=True)

    def camera(self, camera_id: str) -> CameraConfig:
        camera = self.config.cameras.get(camera_id)
        if camera is not None:
            return camera
        if not self.config.server.allow_unknown_cameras:
            # The configured ids are not listed: this answer goes to callers that have shown no token yet.
            raise UnknownCameraError(f"Camera '{camera_id}' is not configured")
        camera = self._whole_frame.pop(camera_id, None) or CameraConfig(id=camera_id)
        self._whole_frame[camera_id] = camera  # most recent last; the least recent is forgotten past the cap
        while len(self._whole_frame) > self.config.server.max_cameras:
            self._whole_frame.pop(next(iter(self._whole_frame)))
        return camera

    async def recognize(self, camera_id: str, image: bytes, header: FrameHeader | None = None) -> FrameResult:
        self._in_flight += 1  # see _prepared
        try:
            return await self._recognize(camera_id, image, header)
        finally:
            self._in_flight -= 1

    async def _recognize(self, camera_id: str, image: bytes, header: FrameHeader | None) -> FrameResult:
        t0 = time.perf_counter()
        camera = self.camera(camera_id)
        header = header or read_header(image)
        prepared = await self._prepared(camera, image, header)
        boxes, crops, keys, looks = prepared.boxes, prepared.crops, prepared.keys, prepared.looks
        if keys is None:  # cache off: every slot inferred
            assert crops is not None
            slots = await asyncio.gather(
                *(self._infer(i, b, c) for i, (b, c) in enumerate(zip(boxes, crops, strict=True)))
            )
        else:
            holds = None
            if looks is not None and self.states is not None:
                holds = [look.edges >= self.states.rules.empty_edges for look in looks]
            slots = await self._resolve_frame(camera, image, prepared, holds)
        if looks is not None and self.states is not None:
            states = self.states.classify(camera_id, looks, [s.score for s in slots])
            for slot, state in zip(slots, states, strict=True):
                slot.state = state
        return FrameResult(
            camera=camera_id,
            width=header.width,
            height=header.height,
            slots=list(slots),
            decode_ms=prepared.decode_ms,
            hash_ms=prepared.hash_ms,
            lookup_ms=sum(s.lookup_ms for s in slots),
            inference_ms=sum(s.inference_ms for s in slots),
            latency_ms=_ms(t0),
        )

    def _inline(self, camera: CameraConfig, header: FrameHeader) -> bool:
        """Whether this frame's pixels are worked on right here, on the event loop (see _prepared)."""
        return self._in_flight <= 1 and header.pixels <= INLINE_MAX_PIXELS and camera.slot_count <= INLINE_MAX_SLOTS

    async def _prepared(self, camera: CameraConfig, image: bytes, header: FrameHeader) -> Prepared:
        """Decode and key the frame: right here when it is the only frame under way, else on the prep threads.

        A trip through a thread pool is two thread wake-ups; measured beside the frames (docs/benchmarks.md, "Hit
        path"), 0.25-0.6 ms on this machine when it is quiet and several ms when other processes keep its cores
        busy, more than the keys and lookups of an all-hit frame together. A frame alone has nothing to overlap
        with, so it is prepared on the event loop. While other frames are under way (waiting on inference, or
        being prepared), it goes to the threads, where decoding (simplejpeg releases the GIL) runs beside the
        loop on another core. So do large frames and many-slot cameras (INLINE_MAX_PIXELS, INLINE_MAX_SLOTS):
        the loop also answers health checks and reads other bodies, and must not stop for tens of ms.
        """
        if self._inline(camera, header):
            return self._decode_and_key(camera, image, header)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._prepare, self._decode_and_key, camera, image, header)

    def _decode_and_key(self, camera: CameraConfig, image: bytes, header: FrameHeader) -> Prepared:
        return self.preparer.prepare(camera, image, header)

    async def _full_crops(self, camera: CameraConfig, image: bytes, prepared: Prepared) -> list[np.ndarray]:
        """The crops of a frame decoded at its picture reduction only, decoded whole now (where _prepared would)."""
        if prepared.crops is not None:
            return prepared.crops
        if self._inline(camera, prepared.header):
            return whole_crops(image, prepared.header, prepared.boxes)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._prepare, whole_crops, image, prepared.header, prepared.boxes)

    async def _infer(self, slot: int, box: Box, crop_bgr: np.ndarray) -> SlotResult:
        prediction, inference_ms = await self.pool.classify(crop_bgr)
        return slot_result(slot, box, prediction, Tier.MISS, None, 0.0, inference_ms)

    async def _resolve_frame(
        self, camera: CameraConfig, image: bytes, prepared: Prepared, holds: list[bool] | None
    ) -> list[SlotResult]:
        """Every slot's result: memory hits answered here, in order, and only the rest awaited (concurrently).

        Most frames of a fixed camera are all memory hits. Answering those without a task per slot and a gather
        leaves the frame almost nothing beyond decoding, keys and lookups (docs/benchmarks.md, "Hit path"). The
        order of cache operations is the one the per-slot tasks had: every slot's memory lookup, in slot order,
        before any disk lookup or inference starts. `holds` (from the slot-state cues) marks the slots with texture
        enough to hold a product: an empty facing has no product to decide, so its undecided answer is served.
        Crops are needed only by misses, undecided answers and due confirmations: a frame with none of those is
        answered from its reduced decode alone.
        """
        assert self.cache is not None
        boxes, keys = prepared.boxes, prepared.keys
        assert keys is not None
        slots: list[SlotResult | None] = []
        missed: list[tuple[int, float]] = []  # slot, memory lookup ms
        undecided: list[tuple[int, Hit, float]] = []  # slot, its hit, memory lookup ms
        facings: dict[PerceptualKey, list[Facing]] = {}  # by the answer's key
        lookup, is_undecided, clock = self.cache.lookup_memory, self.confirmer.undecided, time.perf_counter
        for i, (box, key) in enumerate(zip(boxes, keys, strict=True)):
            t0 = clock()
            hit = lookup(key)
            memory_ms = (clock() - t0) * 1000.0
            if hit is None:
                slots.append(None)
                missed.append((i, memory_ms))
                continue
            if (holds is None or holds[i]) and is_undecided(hit):
                slots.append(None)
                undecided.append((i, hit, memory_ms))
                continue
            group = facings.get(hit.key)
            if group is None:
                facings[hit.key] = group = []
            group.append((hit, i, key))
            slots.append(slot_result(i, box, hit.prediction, Tier.MEMORY, hit.distance, memory_ms, 0.0))
        confirm = [f for f in map(self.confirmer.facing, facings.values()) if f is not None]
        if not (missed or undecided or confirm):
            return slots  # type: ignore[return-value]  # no None: every slot was a hit
        crops = SlotCrops(prepared.crops, lambda: self._full_crops(camera, image, prepared))
        # The misses join their flights (coalesce.py) before anything here awaits the crops: a frame that waited for
        # its full decode first would find a near-equal key's flight already over and read the disk for it.
        pending = asyncio.gather(
            *(self._resolve(i, boxes[i], crops, keys[i], ms) for i, ms in missed),
            *(self._reinfer(i, boxes[i], crops, hit, ms) for i, hit, ms in undecided),
        )
        if confirm:
            got = await crops.get()
            for hit, i, key in confirm:
                self.confirmer.maybe(hit, got[i], key)
        resolved = await pending
        for i, result in zip([m[0] for m in missed] + [u[0] for u in undecided], resolved, strict=True):
            slots[i] = result
        return slots  # type: ignore[return-value]  # every None was replaced above

    async def _reinfer(self, slot: int, box: Box, crops: SlotCrops, hit: Hit, memory_ms: float) -> SlotResult:
        """An undecided answer's slot: inferred fresh and averaged in; the cached answer if the pool is full."""
        assert self.cache is not None
        try:
            prediction, inference_ms = await self.pool.classify((await crops.get())[slot])
        except OverloadedError:  # a hit need not wait for a worker: it is answered as before
            return slot_result(slot, box, hit.prediction, Tier.MEMORY, hit.distance, memory_ms, 0.0)
        self.cache.confirm(hit.key, prediction)
        return slot_result(slot, box, prediction, Tier.MISS, None, memory_ms, inference_ms)

    async def _resolve(self, slot: int, box: Box, crops: SlotCrops, key: PerceptualKey, memory_ms: float) -> SlotResult:
        """A memory miss: the disk tier, else inference, in one flight shared by near-equal keys."""
        assert self.cache is not None

        async def disk_or_infer() -> tuple[Prediction, str, int | None, float, float]:
            t1 = time.perf_counter()
            found = await self.cache.lookup_disk(key)
            disk_ms = _ms(t1)
            if found is not None:
                if self.confirmer.due(found):
                    self.confirmer.maybe(found, (await crops.get())[slot], key)
                return found.prediction, Tier.DISK, found.distance, disk_ms, 0.0
            prediction, inference_ms = await self.pool.classify((await crops.get())[slot])
            self.cache.store(key, prediction)
            return prediction, Tier.MISS, None, disk_ms, inference_ms

        # The flight covers the disk lookup too, so that followers arriving while the leader reads the
        # disk do not start inferences of their own.
        (prediction, tier, distance, disk_ms, inference_ms), shared = await self.coalescer.run(key, disk_or_infer)
        if shared:
            return slot_result(slot, box, prediction, Tier.COALESCED, distance, memory_ms, 0.0)
        return slot_result(slot, box, prediction, tier, distance, memory_ms + disk_ms, inference_ms)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
