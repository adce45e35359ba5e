"""Device telemetry for the dashboard: SoC temperature, Pi throttling flags, CPU load and our memory.

Everything here is blocking (sysfs reads, a short vcgencmd subprocess), so the service calls
DeviceMonitor.read() from an executor on a timer and serves the cached reading; frames never wait on it.
A missing sensor or tool is a normal state on a laptop or in CI, so it yields None plus a reason, never an
exception.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

# Zone types that measure the SoC/CPU die, best first: the die is what throttles, not the board or battery.
_PREFERRED_ZONE_TYPES = ("cpu-thermal", "cpu_thermal", "x86_pkg_temp", "soc_thermal", "soc-thermal")
# Outside this range a zone reports a sentinel (-273000, 0x7fffffff on a disabled sensor), not heat.
_MIN_VALID_C = -40.0
_MAX_VALID_C = 150.0

_THROTTLE_FLAGS = ("under_voltage", "freq_capped", "throttled", "soft_temp_limit")
# Bits 0-3 describe the present state, bits 16-19 the same conditions latched since boot.
_NOW_SHIFT = 0
_SINCE_BOOT_SHIFT = 16

_MEASURE_TEMP_RE = re.compile(r"temp=\s*(-?\d+(?:\.\d+)?)")
_THROTTLED_RE = re.compile(r"throttled=\s*(0x[0-9a-fA-F]+|\d+)")


@dataclass(frozen=True, slots=True)
class DeviceReading:
    temperature_c: float | None
    # Where the temperature came from, or why there is none.
    temperature_source: str
    # Decoded `vcgencmd get_throttled`, None when vcgencmd is absent or failed.
    throttled: dict | None
    cpu_percent: float | None
    memory_rss_mb: float

    def as_dict(self) -> dict:
        return {
            "temperature_c": self.temperature_c,
            "temperature_source": self.temperature_source,
            "throttled": self.throttled,
            "cpu_percent": self.cpu_percent,
            "memory_rss_mb": self.memory_rss_mb,
        }


def decode_throttled(bits: int) -> dict:
    """Decode the `vcgencmd get_throttled` bit field into present and since-boot flags."""
    if bits < 0:
        raise ValueError(f"throttled bit field cannot be negative: {bits}")

    def flags(shift: int) -> dict[str, bool]:
        return {name: bool(bits >> (shift + i) & 1) for i, name in enumerate(_THROTTLE_FLAGS)}

    return {"raw": f"0x{bits:x}", "now": flags(_NOW_SHIFT), "since_boot": flags(_SINCE_BOOT_SHIFT)}


def parse_throttled(output: str) -> dict:
    """Decode the text printed by `vcgencmd get_throttled`, e.g. ``throttled=0x50005``."""
    match = _THROTTLED_RE.search(output)
    if match is None:
        raise ValueError(f"unexpected get_throttled output: {output.strip()!r}")
    return decode_throttled(int(match.group(1), 0))


def parse_measure_temp(output: str) -> float:
    """Parse the text printed by `vcgencmd measure_temp`, e.g. ``temp=48.3'C``."""
    match = _MEASURE_TEMP_RE.search(output)
    if match is None:
        raise ValueError(f"unexpected measure_temp output: {output.strip()!r}")
    return float(match.group(1))


def _zone_number(zone: Path) -> int:
    # Natural order so thermal_zone10 sorts after thermal_zone2 and "first zone" means zone 0.
    suffix = zone.name.removeprefix("thermal_zone")
    return int(suffix) if suffix.isdigit() else 1 << 30


def _zone_rank(zone_type: str) -> int:
    lowered = zone_type.lower()
    if lowered in _PREFERRED_ZONE_TYPES:
        return _PREFERRED_ZONE_TYPES.index(lowered)
    if "cpu" in lowered or "soc" in lowered:
        return len(_PREFERRED_ZONE_TYPES)
    return len(_PREFERRED_ZONE_TYPES) + 1


def _read_zone(zone: Path) -> tuple[str, float] | None:
    """Return (type, degrees C) of one thermal zone, or None when it has no plausible reading."""
    try:
        zone_type = (zone / "type").read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        zone_type = "unknown"
    try:
        raw = (zone / "temp").read_text(encoding="ascii", errors="replace").strip()
        celsius = int(raw) / 1000.0
    except (OSError, ValueError) as exc:
        # Some drivers answer EINVAL/ENODATA while their device sleeps; other zones may still do.
        log.debug("thermal zone %s unreadable: %s", zone, exc)
        return None
    if not _MIN_VALID_C <= celsius <= _MAX_VALID_C:
        log.debug("thermal zone %s reports implausible %.1f C", zone, celsius)
        return None
    return zone_type, celsius


class DeviceMonitor:
    """Reads device health on demand; cheap enough to call every few seconds from a worker thread."""

    def __init__(self, sysfs_root: str | Path = "/sys", vcgencmd: str = "vcgencmd", *, timeout_s: float = 1.0) -> None:
        self._thermal_dir = Path(sysfs_root) / "class" / "thermal"
        self._timeout_s = timeout_s
        self._vcgencmd, self._vcgencmd_missing = self._resolve(vcgencmd)
        self._warned: set[str] = set()
        self._process = psutil.Process()
        # psutil measures CPU load between consecutive calls; the first call only sets the baseline.
        psutil.cpu_percent(interval=None)

    @staticmethod
    def _resolve(vcgencmd: str) -> tuple[str | None, str]:
        if "/" in vcgencmd:
            path = Path(vcgencmd)
            if not path.is_file():
                return None, f"no vcgencmd at {path}"
            if shutil.which(str(path)) is None:
                return None, f"vcgencmd at {path} is not executable"
            return str(path), ""
        found = shutil.which(vcgencmd)
        if found is None:
            return None, f"no {vcgencmd} on PATH"
        return found, ""

    @property
    def vcgencmd_path(self) -> str | None:
        return self._vcgencmd

    def read(self) -> DeviceReading:
        celsius, source = self._temperature()
        return DeviceReading(
            temperature_c=None if celsius is None else round(celsius, 1),
            temperature_source=source,
            throttled=self._throttled(),
            cpu_percent=self._cpu_percent(),
            memory_rss_mb=round(self._process.memory_info().rss / (1024 * 1024), 1),
        )

    def _temperature(self) -> tuple[float | None, str]:
        zones = sorted(self._thermal_dir.glob("thermal_zone*"), key=_zone_number)
        readings = [(zone, reading) for zone in zones if (reading := _read_zone(zone)) is not None]
        if readings:
            # min() is stable, so among equally ranked zones the lowest-numbered one wins.
            zone, (zone_type, celsius) = min(readings, key=lambda item: _zone_rank(item[1][0]))
            return celsius, f"sysfs:{zone} ({zone_type})"

        if zones:
            sysfs_reason = f"no valid reading from {len(zones)} thermal zone(s) under {self._thermal_dir}"
        else:
            sysfs_reason = f"no thermal zone under {self._thermal_dir}"

        if self._vcgencmd is None:
            reason = f"{sysfs_reason} and {self._vcgencmd_missing}"
        else:
            output = self._run(self._vcgencmd, "measure_temp")
            if output is not None:
                try:
                    return parse_measure_temp(output), f"vcgencmd:{self._vcgencmd}"
                except ValueError as exc:
                    self._warn_once("measure_temp_parse", "vcgencmd measure_temp: %s", exc)
            reason = f"{sysfs_reason} and vcgencmd measure_temp failed"
        self._warn_once("no_temperature", "no device temperature: %s", reason)
        return None, reason

    def _throttled(self) -> dict | None:
        if self._vcgencmd is None:
            return None
        output = self._run(self._vcgencmd, "get_throttled")
        if output is None:
            return None
        try:
            return parse_throttled(output)
        except ValueError as exc:
            self._warn_once("get_throttled_parse", "vcgencmd get_throttled: %s", exc)
            return None

    def _run(self, vcgencmd: str, command: str) -> str | None:
        """stdout of `vcgencmd <command>`, or None (warned once per command) when it fails."""
        try:
            done = subprocess.run(
                [vcgencmd, command],
                capture_output=True,
                text=True,
                timeout=self._timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self._warn_once(command, "vcgencmd %s timed out after %.1f s", command, self._timeout_s)
            return None
        except OSError as exc:
            self._warn_once(command, "vcgencmd %s could not run: %s", command, exc)
            return None
        if done.returncode != 0:
            # Typical on a Pi when the user lacks access to /dev/vchiq ("VCHI initialization failed").
            detail = (done.stderr or done.stdout).strip()[:200]
            self._warn_once(command, "vcgencmd %s exited %d: %s", command, done.returncode, detail)
            return None
        return done.stdout

    def _cpu_percent(self) -> float | None:
        try:
            return float(psutil.cpu_percent(interval=None))
        except (OSError, psutil.Error) as exc:
            self._warn_once("cpu_percent", "cpu_percent unavailable: %s", exc)
            return None

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        # read() runs every few seconds for the life of the service; one line per failure kind is enough.
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning(message, *args)
