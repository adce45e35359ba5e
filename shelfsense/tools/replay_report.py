"""What a replay measured: one small record per posted frame, and the report derived from them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shelfsense.types import Tier, percentiles

__all__ = ["FrameRecord", "ReplayReport"]


@dataclass(slots=True)
class FrameRecord:
    """What one posted frame cost and returned; a few numbers, never the image."""

    camera: str
    seq: int  # 0-based position in this camera's stream
    index: int  # Frame.index in the footage
    status: int  # HTTP status, 0 when no answer came
    error: str | None  # None, the HTTP status as text, or connect / disconnected / timeout / client
    server_frame: int | None  # the server's per-camera frame counter from the answer
    sent_s: float  # seconds after the replay started
    client_ms: float
    server_ms: float | None
    tiers: tuple[int, ...] = (0,) * len(Tier)  # slots per tier, in Tier's order
    scored: int = 0  # slots with a non-null truth label
    correct: int = 0
    labels: tuple[str | None, ...] = ()  # the label served per slot, in slot order: what agreement is judged on
    states: tuple[str, ...] = ()  # the slot state served per slot, in slot order (shelf state)

    @property
    def slots(self) -> int:
        return sum(self.tiers)

    @property
    def hits(self) -> int:
        return sum(n for tier, n in zip(Tier, self.tiers, strict=True) if tier.is_hit)


@dataclass
class ReplayReport:
    url: str
    speed: float | None  # None = max
    concurrency: int
    warmup: int
    cameras: list[str]
    records: list[FrameRecord] = field(default_factory=list, repr=False)
    offered_fps: float | None = None
    elapsed_s: float = 0.0
    max_lag_s: float = 0.0  # how far behind schedule a paced send got
    truth_rows: int = 0
    interrupted: bool = False
    # The server's `detail` from the first refusal of each status: a count alone does not say what to fix.
    error_details: dict[str, str] = field(default_factory=dict)
    shelf: dict[str, Any] | None = None  # per camera, with state truth: tools/replay_shelf.py

    # ---- figures derived from the per-frame records

    @property
    def sent(self) -> int:
        return len(self.records)

    @property
    def ok(self) -> int:
        return sum(r.status == 200 for r in self.records)

    @property
    def errors(self) -> dict[str, int]:
        return dict(Counter(r.error for r in self.records if r.error is not None))

    def _hit_rate(self, warm_only: bool) -> float | None:
        rows = [r for r in self.records if r.status == 200 and (not warm_only or r.seq >= self.warmup)]
        slots = sum(r.slots for r in rows)
        return round(sum(r.hits for r in rows) / slots, 4) if slots else None

    @property
    def hit_rate(self) -> float | None:
        return self._hit_rate(False)

    @property
    def hit_rate_after_warmup(self) -> float | None:
        return self._hit_rate(True)

    @property
    def tiers(self) -> dict[str, int]:
        return {tier.value: sum(r.tiers[i] for r in self.records) for i, tier in enumerate(Tier)}

    @property
    def accuracy(self) -> float | None:
        scored = sum(r.scored for r in self.records)
        return round(sum(r.correct for r in self.records) / scored, 4) if scored else None

    @property
    def achieved_fps(self) -> float | None:
        """Answered frames per second, summed over cameras: each camera's answered frame intervals over the
        time from its first send to its last answer (the same counting as the offered rate)."""
        total, seen = 0.0, False
        for cam in self.cameras:
            ok = [r for r in self.camera_records(cam) if r.status == 200]
            if len(ok) < 2:
                continue
            span = ok[-1].sent_s + ok[-1].client_ms / 1000.0 - ok[0].sent_s
            if span > 0:
                total, seen = total + (len(ok) - 1) / span, True
        return round(total, 3) if seen else None

    def camera_records(self, camera: str) -> list[FrameRecord]:
        return [r for r in self.records if r.camera == camera]

    def in_order(self, camera: str) -> bool:
        """The server numbered this camera's answered frames in the order the frames were sent."""
        numbers = [r.server_frame for r in self.camera_records(camera) if r.server_frame is not None]
        return all(a < b for a, b in zip(numbers, numbers[1:], strict=False))

    def as_dict(self) -> dict[str, Any]:
        scored = sum(r.scored for r in self.records)
        per_camera = {}
        for cam in self.cameras:
            mine = self.camera_records(cam)
            slots = sum(r.slots for r in mine if r.status == 200)
            per_camera[cam] = {
                "sent": len(mine),
                "ok": sum(r.status == 200 for r in mine),
                "hit_rate": round(sum(r.hits for r in mine if r.status == 200) / slots, 4) if slots else None,
                "in_order": self.in_order(cam),
            }
        return {
            "url": self.url,
            "speed": "max" if self.speed is None else self.speed,
            "concurrency": self.concurrency,
            "warmup_frames_per_camera": self.warmup,
            "cameras": len(self.cameras),
            "frames": {"sent": self.sent, "ok": self.ok, "failed": self.sent - self.ok},
            "errors": self.errors,
            "error_details": dict(self.error_details),
            "slots": {"total": sum(self.tiers.values()), **self.tiers},
            "hit_rate": self.hit_rate,
            "hit_rate_after_warmup": self.hit_rate_after_warmup,
            "client_latency_ms": percentiles((r.client_ms for r in self.records if r.status == 200), extremes=True),
            "server_latency_ms": percentiles(
                (r.server_ms for r in self.records if r.server_ms is not None), extremes=True
            ),
            "fps": {"offered": self.offered_fps, "achieved": self.achieved_fps},
            "elapsed_s": round(self.elapsed_s, 3),
            "max_lag_s": round(self.max_lag_s, 3),
            "accuracy": (
                None
                if not self.truth_rows
                else {
                    "value": self.accuracy,
                    "slots_scored": scored,
                    "correct": sum(r.correct for r in self.records),
                }
            ),
            "per_camera": per_camera,
            "shelf": self.shelf,
            "interrupted": self.interrupted,
        }

    def table(self) -> str:
        d = self.as_dict()

        def lat(x: dict[str, float | None]) -> str:
            return "  ".join(f"{k} {'-' if x[k] is None else f'{x[k]:.1f}'}" for k in ("p50", "p90", "p99"))

        def rate(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"

        tiers = d["slots"]
        errors = (
            ", ".join(
                f"{k}: {v}" + (f" ({self.error_details[k]})" if k in self.error_details else "")
                for k, v in sorted(d["errors"].items())
            )
            or "none"
        )
        offered = "max" if d["fps"]["offered"] is None else f"{d['fps']['offered']:.2f}"
        achieved = "-" if d["fps"]["achieved"] is None else f"{d['fps']['achieved']:.2f}"
        rows = [
            ("cameras", f"{d['cameras']} ({', '.join(self.cameras[:4])}{', ...' if len(self.cameras) > 4 else ''})"),
            ("speed / concurrency", f"{d['speed']} / {d['concurrency']}"),
            ("frames sent / ok", f"{d['frames']['sent']} / {d['frames']['ok']}"),
            ("errors", errors),
            ("slots", f"{tiers['total']} ({', '.join(f'{tier} {tiers[tier]}' for tier in Tier)})"),
            ("hit rate", rate(d["hit_rate"])),
            (f"hit rate after warm-up ({self.warmup}/camera)", rate(d["hit_rate_after_warmup"])),
            ("client latency ms", lat(d["client_latency_ms"])),
            ("server latency ms", lat(d["server_latency_ms"])),
            ("fps achieved / offered", f"{achieved} / {offered}"),
            ("elapsed s", f"{d['elapsed_s']:.2f}" + (f" (max lag {d['max_lag_s']:.2f} s)" if self.speed else "")),
        ]
        if d["accuracy"] is not None:
            acc = d["accuracy"]
            rows.append(("accuracy", f"{rate(acc['value'])} ({acc['correct']}/{acc['slots_scored']} slots)"))
        for cam, sh in (self.shelf or {}).items():
            ev = sh["events"]
            pr = ", ".join(
                f"{k.split('_')[-1]} {rate(ev[k]['precision'])}/{rate(ev[k]['recall'])}"
                for k in ("product_removed", "restocked", "product_changed")
                if ev[k]["truth"] or ev[k]["detected"]
            )
            rows.append(
                (
                    f"shelf {cam}",
                    f"states {rate(sh['state_accuracy'])}, empty P/R {rate(sh['empty_frame']['precision'])}/"
                    f"{rate(sh['empty_frame']['recall'])} per frame; events P/R {pr or '-'}"
                    + (f", median delay {sh['median_delay_frames']} frames" if sh["median_delay_frames"] else "")
                    + ("" if sh["events_read"] else " (events not readable: shelf state off or read token)"),
                )
            )
        if self.interrupted:
            rows.append(("interrupted", "yes: stopped before the footage ended"))
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
