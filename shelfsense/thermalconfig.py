"""The [thermal] config section (issue 14), parsed by config.py like every other section.

Kept in a module of its own so config.py stays under its size budget; config.py owns the parsing rules (`_section`
coerces this dataclass like the others) and calls `validate_thermal` from its `_validate`. What the steps do is
told in shelfsense/service/thermal.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["THRESHOLD_KEYS", "ThermalConfig", "validate_thermal"]

# The temperature that enters step 1, 2, 3, in that order.
THRESHOLD_KEYS = ("pause_background_c", "fewer_threads_c", "slow_cameras_c")
_MAX_STEP = len(THRESHOLD_KEYS)


@dataclass(frozen=True, kw_only=True)
class ThermalConfig:
    enabled: bool = True  # false: readings are reported, the service never sheds work
    # The Pi firmware throttles the cores progressively from 80 C: act before it has to.
    pause_background_c: float = 70.0  # step 1: background confirmations stop
    fewer_threads_c: float = 75.0  # step 2: inference runs on reduced_threads workers
    slow_cameras_c: float = 80.0  # step 3: frame answers ask cameras to wait frame_interval_ms
    hysteresis_c: float = 5.0  # a step is left only once the temperature is below its threshold minus this
    hold_s: float = 30.0  # and once nothing asked for it this long: one step back per hold
    reduced_threads: int = 1  # inference worker threads from step 2 (capped at model.threads)
    frame_interval_ms: int = 2000  # from step 3: next_frame_after_ms on every frame answer
    # Steps asked for while a `vcgencmd get_throttled` flag is set now (0: left to /v1/stats device.throttled).
    throttled_step: int = 3  # frequency capped (0x2), throttled (0x4) or soft temperature limit (0x8)
    under_voltage_step: int = 2  # under-voltage (0x1): less load draws less current


def validate_thermal(c: Any, check: Callable[[bool, str, str, Any], None]) -> None:
    t = c.thermal
    for lower, upper in zip(THRESHOLD_KEYS, THRESHOLD_KEYS[1:], strict=False):
        check(getattr(t, upper) >= getattr(t, lower), f"thermal.{upper}", f">= thermal.{lower}", getattr(t, upper))
    for key in ("hysteresis_c", "hold_s"):
        check(getattr(t, key) >= 0, f"thermal.{key}", ">= 0", getattr(t, key))
    # Capped at model.threads where it is used, not refused here: `bench --threads 1` must not break a config.
    check(1 <= t.reduced_threads <= 64, "thermal.reduced_threads", "1..64", t.reduced_threads)
    check(1 <= t.frame_interval_ms <= 600_000, "thermal.frame_interval_ms", "1..600000", t.frame_interval_ms)
    for key in ("throttled_step", "under_voltage_step"):
        check(0 <= getattr(t, key) <= _MAX_STEP, f"thermal.{key}", f"0..{_MAX_STEP}", getattr(t, key))
