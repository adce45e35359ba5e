"""Thermal-aware operation: the service sheds work in steps while the device runs hot, throttled or short of power.

    step 0  normal            everything runs
    step 1  pause_background  background confirmations of cached answers stop (the service's non-urgent work)
    step 2  fewer_threads     ... and inference runs on thermal.reduced_threads of the model.threads workers
    step 3  slow_cameras      ... and every frame answer asks its camera to wait thermal.frame_interval_ms

`ThermalController.update(reading)` takes each telemetry reading (service/device.py). Two things ask for a step:
the SoC temperature against the [thermal] thresholds, and the `vcgencmd get_throttled` flags that are set now
(frequency capped, throttled, soft temperature limit: thermal.throttled_step; under-voltage:
thermal.under_voltage_step). The step rises at once to the highest asked for. It falls one step at a time, once
nothing has asked for the current one for thermal.hold_s, and a temperature keeps asking for the step it reached
until it is below that step's threshold minus thermal.hysteresis_c: a Pi hovering around a threshold does not flap,
and one cooling down takes its work back gradually. The hold counts calm time, not time in the step, so a Pi that
was hot for an hour still waits hold_s after it cooled.

Under-voltage is reported as such (its own reason, `under_voltage: true`, a log line saying to check the supply):
it is a power problem, and no amount of cooling fixes it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shelfsense.thermalconfig import THRESHOLD_KEYS, ThermalConfig

if TYPE_CHECKING:
    from shelfsense.recognition.recognizer import Recognizer
    from shelfsense.service.device import DeviceReading

__all__ = ["REASONS", "STEPS", "NEXT_FRAME_HEADER", "ThermalChange", "ThermalController", "ThermalStatus"]

log = logging.getLogger(__name__)

STEPS = ("normal", "pause_background", "fewer_threads", "slow_cameras")
# Frame answers carry the hint in their JSON and, from step 3, in this header (a client may read either).
NEXT_FRAME_HEADER = "X-ShelfSense-Next-Frame-After-Ms"
_FIRMWARE_FLAGS = {  # get_throttled flag -> how a reason names it
    "freq_capped": "ARM frequency capped",
    "throttled": "throttled",
    "soft_temp_limit": "soft temperature limit",
}
# Every reason a step can have: /metrics shows each as a series that is 0 or 1.
REASONS = ("temperature", "under_voltage", *_FIRMWARE_FLAGS, "hold")
_RECENT = 32  # step changes kept for /v1/stats


@dataclass(frozen=True, slots=True)
class ThermalChange:
    """One step change, as /v1/stats lists it and the log tells it."""

    uptime_s: float
    from_step: int
    to_step: int
    temperature_c: float | None
    throttled: str | None  # get_throttled's raw bits, None without vcgencmd
    reasons: dict[str, str]

    def as_dict(self) -> dict:
        return {
            "uptime_s": round(self.uptime_s, 3),
            "from": STEPS[self.from_step],
            "to": STEPS[self.to_step],
            "temperature_c": self.temperature_c,
            "throttled": self.throttled,
            "reasons": self.reasons,
        }


@dataclass(frozen=True, slots=True)
class ThermalStatus:
    enabled: bool
    step: int
    reasons: dict[str, str]
    under_voltage: bool | None  # None while no get_throttled reading has come
    inference_threads: int
    next_frame_after_ms: int
    since_s: float  # in the current step
    seconds_in_step: dict[str, float]
    readings: int
    changes: int
    recent: tuple[ThermalChange, ...] = field(default=())

    @property
    def state(self) -> str:
        return STEPS[self.step]

    def as_dict(self) -> dict:
        return {
            "enabled": self.enabled,
            "step": self.step,
            "state": self.state,
            "reasons": self.reasons,
            "under_voltage": self.under_voltage,
            "background_paused": self.step >= 1,
            "inference_threads": self.inference_threads,
            "next_frame_after_ms": self.next_frame_after_ms,
            "since_s": round(self.since_s, 3),
            "seconds_in_step": {name: round(s, 3) for name, s in self.seconds_in_step.items()},
            "readings": self.readings,
            "changes": self.changes,
            "recent": [change.as_dict() for change in self.recent],
        }


class ThermalController:
    """The current step, fed device readings; the app applies it to the recognizer and the frame answers."""

    def __init__(
        self, config: ThermalConfig, model_threads: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.config = config
        self.model_threads = model_threads
        self._clock = clock
        self._started = self._entered = clock()
        self._thresholds = tuple(getattr(config, key) for key in THRESHOLD_KEYS)
        self.step = 0
        self._temperature_step = 0  # the step the temperature holds, with hysteresis, whatever the flags say
        self._calm_since: float | None = None  # since when nothing has asked for the current step
        self.reasons: dict[str, str] = {}
        self.under_voltage: bool | None = None
        self._seconds = [0.0] * len(STEPS)
        self.readings = 0
        self.changes = 0
        self.recent: deque[ThermalChange] = deque(maxlen=_RECENT)

    @property
    def next_frame_after_ms(self) -> int:
        """What frame answers ask of cameras: 0 (send as you like) below step 3."""
        return self.config.frame_interval_ms if self.step >= 3 else 0

    @property
    def inference_threads(self) -> int:
        return min(self.config.reduced_threads, self.model_threads) if self.step >= 2 else self.model_threads

    def update(self, reading: DeviceReading) -> ThermalChange | None:
        """Take one reading; the change of step it caused, if any."""
        now = self._clock()
        self.readings += 1
        flags = reading.throttled["now"] if reading.throttled else None
        was_under_voltage, self.under_voltage = self.under_voltage, None if flags is None else flags["under_voltage"]
        if self.under_voltage and not was_under_voltage:
            log.warning(
                "under-voltage now (vcgencmd get_throttled %s): check the power supply", reading.throttled["raw"]
            )
        if not self.config.enabled:
            self.reasons = {}
            return None
        wanted, reasons = self._wanted(reading.temperature_c, flags)
        target = self.step
        if wanted > self.step:
            target = wanted
        elif wanted < self.step:
            self._calm_since = now if self._calm_since is None else self._calm_since
            calm = now - self._calm_since
            if calm >= self.config.hold_s:
                target, calm = self.step - 1, 0.0  # and the next hold starts now
            if wanted < target and self.config.hold_s > 0:
                reasons["hold"] = (
                    f"back to {STEPS[target - 1]} once nothing has asked for {STEPS[target]} for "
                    f"{self.config.hold_s:g} s ({self.config.hold_s - calm:.0f} s left)"
                )
        else:
            self._calm_since = None
        self.reasons = reasons
        if target == self.step:
            return None
        return self._change(target, now, reading)

    def _wanted(self, celsius: float | None, flags: dict[str, bool] | None) -> tuple[int, dict[str, str]]:
        """The step the reading asks for, and why (reason code -> a sentence)."""
        reasons: dict[str, str] = {}
        self._temperature_step = self._temperature_wants(celsius)
        if self._temperature_step and celsius is not None:
            key = THRESHOLD_KEYS[self._temperature_step - 1]
            threshold = self._thresholds[self._temperature_step - 1]
            if celsius >= threshold:
                reasons["temperature"] = f"{celsius:.1f} C, at or above thermal.{key} ({threshold:g} C)"
            else:
                below = threshold - self.config.hysteresis_c
                reasons["temperature"] = f"{celsius:.1f} C, not yet below {below:g} C (thermal.{key} - hysteresis_c)"
        wanted = self._temperature_step
        if flags is not None:
            if flags["under_voltage"] and self.config.under_voltage_step:
                reasons["under_voltage"] = "supply voltage too low now (get_throttled 0x1): a power problem, not heat"
                wanted = max(wanted, self.config.under_voltage_step)
            for flag, text in _FIRMWARE_FLAGS.items():
                if flags[flag] and self.config.throttled_step:
                    reasons[flag] = f"firmware reports {text} now"
                    wanted = max(wanted, self.config.throttled_step)
        return wanted, reasons

    def _temperature_wants(self, celsius: float | None) -> int:
        """The highest step whose threshold is reached, or which the temperature already held and has not yet
        cooled below by hysteresis_c."""
        if celsius is None:
            return 0  # no sensor: only the firmware flags can ask for a step
        for step in range(len(self._thresholds), 0, -1):
            threshold = self._thresholds[step - 1]
            if celsius >= threshold or (
                step <= self._temperature_step and celsius > threshold - self.config.hysteresis_c
            ):
                return step
        return 0

    def _change(self, target: int, now: float, reading: DeviceReading) -> ThermalChange:
        self._seconds[self.step] += now - self._entered
        change = ThermalChange(
            uptime_s=now - self._started,
            from_step=self.step,
            to_step=target,
            temperature_c=reading.temperature_c,
            throttled=reading.throttled["raw"] if reading.throttled else None,
            reasons=dict(self.reasons),
        )
        self.step, self._entered = target, now
        # A step back starts the next hold at once; a step up waits for calm again.
        self._calm_since = now if target < change.from_step else None
        self.changes += 1
        self.recent.append(change)
        why = "; ".join(f"{code}: {text}" for code, text in change.reasons.items()) or "nothing holds it any more"
        level = logging.WARNING if target > change.from_step else logging.INFO
        log.log(level, "thermal step %s -> %s (%s)", STEPS[change.from_step], STEPS[target], why)
        return change

    def apply(self, recognizer: Recognizer | None) -> None:
        """Make the recognizer run as the current step says (idempotent: called after every reading)."""
        if recognizer is None:
            return
        recognizer.background_paused = self.step >= 1
        recognizer.pool.active_threads = min(self.inference_threads, recognizer.pool.threads)

    def status(self) -> ThermalStatus:
        now = self._clock()
        seconds = list(self._seconds)
        seconds[self.step] += now - self._entered
        return ThermalStatus(
            enabled=self.config.enabled,
            step=self.step,
            reasons=dict(self.reasons),
            under_voltage=self.under_voltage,
            inference_threads=self.inference_threads,
            next_frame_after_ms=self.next_frame_after_ms,
            since_s=now - self._entered,
            seconds_in_step=dict(zip(STEPS, seconds, strict=True)),
            readings=self.readings,
            changes=self.changes,
            recent=tuple(self.recent),
        )
