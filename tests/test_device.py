from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from shelfsense.service.device import (
    DeviceMonitor,
    DeviceReading,
    decode_throttled,
    parse_measure_temp,
    parse_throttled,
)

FLAGS = ("under_voltage", "freq_capped", "throttled", "soft_temp_limit")


def make_sysfs(root: Path, zones: dict[int, tuple[str, str | None]]) -> Path:
    """Build <root>/class/thermal/thermal_zoneN/{type,temp}; a temp of None makes `temp` unreadable."""
    thermal = root / "class" / "thermal"
    thermal.mkdir(parents=True)
    # Real trees also hold cooling devices, which must not be mistaken for zones.
    (thermal / "cooling_device0").mkdir()
    (thermal / "cooling_device0" / "type").write_text("cpufreq-cpu0\n")
    for number, (zone_type, temp) in zones.items():
        zone = thermal / f"thermal_zone{number}"
        zone.mkdir()
        (zone / "type").write_text(zone_type + "\n")
        if temp is None:
            # A directory where the file should be: read_text raises an OSError, like EINVAL from a driver
            # (chmod 000 would not do, tests may run as root).
            (zone / "temp").mkdir()
        else:
            (zone / "temp").write_text(temp + "\n")
    return root


def make_vcgencmd(directory: Path, body: str, name: str = "vcgencmd") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


PI_VCGENCMD = """case "$1" in
  measure_temp) echo "temp=61.2'C" ;;
  get_throttled) echo "throttled=0x50005" ;;
  *) echo "error=2 error_msg=\\"Command not registered\\"" ; exit 255 ;;
esac
"""


@pytest.fixture
def no_vcgencmd(tmp_path: Path) -> str:
    return str(tmp_path / "absent" / "vcgencmd")


def test_pi_cpu_thermal_zone(tmp_path: Path, no_vcgencmd: str) -> None:
    sysfs = make_sysfs(tmp_path / "sys", {0: ("cpu-thermal", "52345")})

    reading = DeviceMonitor(sysfs, vcgencmd=no_vcgencmd).read()

    assert reading.temperature_c == pytest.approx(52.345, abs=0.05)
    assert reading.temperature_source == f"sysfs:{sysfs}/class/thermal/thermal_zone0 (cpu-thermal)"
    assert reading.throttled is None


def test_cpu_zone_preferred_over_other_zones(tmp_path: Path, no_vcgencmd: str) -> None:
    # A laptop-like layout: the package sensor is neither the first nor the hottest zone.
    sysfs = make_sysfs(
        tmp_path / "sys",
        {
            0: ("acpitz", "27800"),
            1: ("pch_skylake", "70500"),
            2: ("x86_pkg_temp", "61500"),
            3: ("iwlwifi_1", "45000"),
        },
    )

    reading = DeviceMonitor(sysfs, vcgencmd=no_vcgencmd).read()

    assert reading.temperature_c == pytest.approx(61.5)
    assert "thermal_zone2 (x86_pkg_temp)" in reading.temperature_source


def test_zones_in_natural_order(tmp_path: Path, no_vcgencmd: str) -> None:
    # Two equally ranked cpu zones: zone2 must win over zone10 even though "10" < "2" as strings.
    sysfs = make_sysfs(tmp_path / "sys", {10: ("cpu1-thermal", "80000"), 2: ("cpu0-thermal", "50000")})

    reading = DeviceMonitor(sysfs, vcgencmd=no_vcgencmd).read()

    assert reading.temperature_c == pytest.approx(50.0)
    assert "thermal_zone2 " in reading.temperature_source


@pytest.mark.parametrize("bad_temp", ["garbage", "", None, "-273000", "2147483647"])
def test_bad_cpu_zone_falls_back_to_first_valid_zone(tmp_path: Path, no_vcgencmd: str, bad_temp: str | None) -> None:
    sysfs = make_sysfs(
        tmp_path / "sys",
        {0: ("cpu-thermal", bad_temp), 1: ("acpitz", "45000"), 2: ("battery", "30000")},
    )

    reading = DeviceMonitor(sysfs, vcgencmd=no_vcgencmd).read()

    assert reading.temperature_c == pytest.approx(45.0)
    assert "thermal_zone1 (acpitz)" in reading.temperature_source


def test_no_sensor_and_no_vcgencmd(tmp_path: Path, no_vcgencmd: str) -> None:
    empty = tmp_path / "sys"
    empty.mkdir()

    reading = DeviceMonitor(empty, vcgencmd=no_vcgencmd).read()

    assert reading.temperature_c is None
    assert reading.throttled is None
    assert f"no thermal zone under {empty}/class/thermal" in reading.temperature_source
    assert f"no vcgencmd at {no_vcgencmd}" in reading.temperature_source


def test_only_invalid_zones_and_vcgencmd_not_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sysfs = make_sysfs(tmp_path / "sys", {0: ("cpu-thermal", "n/a"), 1: ("acpitz", None)})
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))

    reading = DeviceMonitor(sysfs, vcgencmd="vcgencmd").read()

    assert reading.temperature_c is None
    assert "no valid reading from 2 thermal zone(s)" in reading.temperature_source
    assert "no vcgencmd on PATH" in reading.temperature_source
    assert reading.throttled is None


def test_non_executable_vcgencmd_is_absent(tmp_path: Path) -> None:
    script = make_vcgencmd(tmp_path / "bin", PI_VCGENCMD)
    script.chmod(0o644)
    empty = tmp_path / "sys"
    empty.mkdir()

    monitor = DeviceMonitor(empty, vcgencmd=str(script))
    reading = monitor.read()

    assert monitor.vcgencmd_path is None
    assert reading.throttled is None
    assert "not executable" in reading.temperature_source


def test_vcgencmd_temperature_and_throttling(tmp_path: Path) -> None:
    script = make_vcgencmd(tmp_path / "bin", PI_VCGENCMD)
    empty = tmp_path / "sys"
    empty.mkdir()

    reading = DeviceMonitor(empty, vcgencmd=str(script)).read()

    assert reading.temperature_c == pytest.approx(61.2)
    assert reading.temperature_source == f"vcgencmd:{script}"
    # 0x50005 = bits 0, 2 (now) and 16, 18 (since boot): under-voltage and throttled, now and before.
    flags = {"under_voltage": True, "freq_capped": False, "throttled": True, "soft_temp_limit": False}
    assert reading.throttled == {"raw": "0x50005", "now": flags, "since_boot": flags}


def test_vcgencmd_found_on_path_and_sysfs_wins_for_temperature(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = make_vcgencmd(tmp_path / "bin", PI_VCGENCMD)
    monkeypatch.setenv("PATH", str(script.parent))
    sysfs = make_sysfs(tmp_path / "sys", {0: ("cpu-thermal", "48000")})

    monitor = DeviceMonitor(sysfs)  # default name "vcgencmd", looked up on PATH
    reading = monitor.read()

    assert monitor.vcgencmd_path == str(script)
    assert reading.temperature_c == pytest.approx(48.0)
    assert reading.temperature_source.startswith("sysfs:")
    assert reading.throttled is not None
    assert reading.throttled["raw"] == "0x50005"


def test_failing_vcgencmd_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = make_vcgencmd(tmp_path / "bin", 'echo "VCHI initialization failed" >&2\nexit 255\n')
    empty = tmp_path / "sys"
    empty.mkdir()
    monitor = DeviceMonitor(empty, vcgencmd=str(script))

    with caplog.at_level(logging.WARNING, logger="shelfsense.service.device"):
        readings = [monitor.read() for _ in range(3)]

    assert all(r.temperature_c is None and r.throttled is None for r in readings)
    assert "vcgencmd measure_temp failed" in readings[0].temperature_source
    messages = [record.getMessage() for record in caplog.records]
    assert sum("get_throttled exited 255: VCHI initialization failed" in m for m in messages) == 1
    assert sum("measure_temp exited 255" in m for m in messages) == 1
    assert sum("no device temperature" in m for m in messages) == 1


def test_hanging_vcgencmd_times_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    script = make_vcgencmd(tmp_path / "bin", "exec sleep 30\n")
    sysfs = make_sysfs(tmp_path / "sys", {0: ("cpu-thermal", "40000")})

    with caplog.at_level(logging.WARNING, logger="shelfsense.service.device"):
        reading = DeviceMonitor(sysfs, vcgencmd=str(script), timeout_s=0.2).read()

    assert reading.temperature_c == pytest.approx(40.0)
    assert reading.throttled is None
    assert any("get_throttled timed out" in record.getMessage() for record in caplog.records)


def test_unexpected_vcgencmd_output(tmp_path: Path) -> None:
    script = make_vcgencmd(tmp_path / "bin", 'echo "error=1 error_msg=\\"bad\\""\n')
    empty = tmp_path / "sys"
    empty.mkdir()

    reading = DeviceMonitor(empty, vcgencmd=str(script)).read()

    assert reading.temperature_c is None
    assert reading.throttled is None


@pytest.mark.parametrize(
    ("bits", "now", "since_boot"),
    [
        (0x0, (False, False, False, False), (False, False, False, False)),
        (0x50005, (True, False, True, False), (True, False, True, False)),
        (0xF000F, (True, True, True, True), (True, True, True, True)),
        (0x50000, (False, False, False, False), (True, False, True, False)),
        (0x8, (False, False, False, True), (False, False, False, False)),
        (0x20002, (False, True, False, False), (False, True, False, False)),
    ],
)
def test_decode_throttled(bits: int, now: tuple[bool, ...], since_boot: tuple[bool, ...]) -> None:
    decoded = decode_throttled(bits)

    assert decoded["raw"] == hex(bits)
    assert decoded["now"] == dict(zip(FLAGS, now, strict=True))
    assert decoded["since_boot"] == dict(zip(FLAGS, since_boot, strict=True))


@pytest.mark.parametrize("bit", [0, 1, 2, 3, 16, 17, 18, 19])
def test_each_throttled_bit_maps_to_one_flag(bit: int) -> None:
    decoded = decode_throttled(1 << bit)

    group = "now" if bit < 16 else "since_boot"
    other = "since_boot" if bit < 16 else "now"
    expected = FLAGS[bit % 16]
    assert [name for name, on in decoded[group].items() if on] == [expected]
    assert not any(decoded[other].values())


def test_undocumented_bits_are_ignored() -> None:
    decoded = decode_throttled(0xFFF0_FFF0)

    assert decoded["raw"] == "0xfff0fff0"
    assert not any(decoded["now"].values())
    assert not any(decoded["since_boot"].values())


def test_parsers() -> None:
    assert parse_throttled("throttled=0x50005\n")["raw"] == "0x50005"
    assert parse_throttled("throttled=0x0")["now"]["throttled"] is False
    assert parse_measure_temp("temp=48.3'C\n") == pytest.approx(48.3)
    with pytest.raises(ValueError, match="get_throttled"):
        parse_throttled("VCHI initialization failed")
    with pytest.raises(ValueError, match="measure_temp"):
        parse_measure_temp("")


def test_as_dict_is_json_ready_with_exact_keys(tmp_path: Path) -> None:
    script = make_vcgencmd(tmp_path / "bin", PI_VCGENCMD)
    sysfs = make_sysfs(tmp_path / "sys", {0: ("cpu-thermal", "52345")})

    reading = DeviceMonitor(sysfs, vcgencmd=str(script)).read()
    data = json.loads(json.dumps(reading.as_dict()))

    assert list(data) == ["temperature_c", "temperature_source", "throttled", "cpu_percent", "memory_rss_mb"]
    assert data["temperature_c"] == reading.temperature_c
    assert data["throttled"]["now"]["under_voltage"] is True
    assert data["memory_rss_mb"] > 1.0
    assert data["cpu_percent"] is None or 0.0 <= data["cpu_percent"] <= 100.0


def test_reading_is_immutable() -> None:
    reading = DeviceReading(None, "none", None, None, 1.0)
    with pytest.raises(AttributeError):
        reading.temperature_c = 3.0  # type: ignore[misc]


def test_real_host_never_raises() -> None:
    # Whatever this machine has (a Pi, a laptop, a container without /sys/class/thermal), read() answers.
    reading = DeviceMonitor().read()

    if reading.temperature_c is None:
        assert "thermal" in reading.temperature_source
    else:
        assert reading.temperature_source.startswith(("sysfs:", "vcgencmd:"))
