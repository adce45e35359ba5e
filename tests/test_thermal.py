"""Thermal-aware operation: the step controller, the inference-thread limit, the service on a fake Pi whose sysfs
temperature and `vcgencmd get_throttled` the tests change while it runs, and a real camera agent obeying it.

Run with -s to see the step-down trace the service test prints.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from cdp import find_chromium, launch_chromium, mismatches
from conftest import FIXTURE_MODELS, colour_config, jpeg
from prometheus_client.parser import text_string_to_metric_families
from test_agent import until
from test_device import make_sysfs, make_vcgencmd

from shelfsense.config import Config, parse_config
from shelfsense.errors import ConfigError
from shelfsense.recognition.runtime import InferencePool
from shelfsense.service.app import create_app
from shelfsense.service.device import DeviceReading, decode_throttled
from shelfsense.service.state import SERVICE
from shelfsense.service.thermal import NEXT_FRAME_HEADER, STEPS, ThermalController
from shelfsense.synth.synth import SynthResult, synthesize
from shelfsense.thermalconfig import ThermalConfig
from shelfsense.tools.agent import CameraAgent, run_agent

ARTIFACTS = Path(os.environ.get("SHELFSENSE_ARTIFACTS", Path(__file__).parent / "artifacts"))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def reading(celsius: float | None, bits: int | None = None) -> DeviceReading:
    throttled = None if bits is None else decode_throttled(bits)
    return DeviceReading(celsius, "test", throttled, None, 1.0)


def controller(clock: Clock | None = None, **thermal: object) -> ThermalController:
    return ThermalController(ThermalConfig(**thermal), model_threads=2, clock=clock or Clock())


def test_steps_up_at_once_and_back_one_per_hold_of_calm() -> None:
    clock = Clock()
    c = controller(clock, hold_s=30.0)
    seen = []
    for t, celsius in [
        (0, 50),
        (1, 72),
        (2, 83),
        (10, 60),
        (20, 81),
        (25, 60),
        (55, 60),
        (70, 60),
        (85, 60),
        (115, 60),
    ]:
        clock.now = t
        c.update(reading(celsius))
        seen.append((t, STEPS[c.step], sorted(c.reasons)))
        if t in (10, 25):
            assert "30 s left" in c.reasons["hold"]

    assert seen == [
        (0, "normal", []),
        (1, "pause_background", ["temperature"]),
        (2, "slow_cameras", ["temperature"]),  # 83 C: straight to step 3
        (10, "slow_cameras", ["hold"]),  # cool: the hold starts
        (20, "slow_cameras", ["temperature"]),  # 81 C asks for step 3 again: the hold restarts
        (25, "slow_cameras", ["hold"]),
        (55, "fewer_threads", ["hold"]),  # 30 s of calm: one step back, and the next hold starts
        (70, "fewer_threads", ["hold"]),
        (85, "pause_background", ["hold"]),
        (115, "normal", []),
    ]
    clock.now = 120
    status = c.status()
    assert status.seconds_in_step == {
        "normal": 6.0,
        "pause_background": 31.0,
        "fewer_threads": 30.0,
        "slow_cameras": 53.0,
    }
    assert status.changes == 5 and [(ch.from_step, ch.to_step) for ch in status.recent] == [
        (0, 1),
        (1, 3),
        (3, 2),
        (2, 1),
        (1, 0),
    ]


def test_temperature_hysteresis_without_hold() -> None:
    c = controller(hold_s=0.0)
    seen = []
    for celsius in [79.9, 80.0, 79.9, 76.0, 75.1, 74.9, 70.1, 69.9, 65.1, 64.9]:
        c.update(reading(celsius))
        seen.append((celsius, c.step))
    # Up at 75 and 80; each step is left only below its threshold minus 5 C, so hovering near 80 does not flap.
    assert seen == [
        (79.9, 2),
        (80.0, 3),
        (79.9, 3),
        (76.0, 3),
        (75.1, 3),
        (74.9, 2),
        (70.1, 2),
        (69.9, 1),
        (65.1, 1),
        (64.9, 0),
    ]
    assert c.reasons == {}


def test_firmware_flags_ask_for_steps_and_under_voltage_is_named(caplog: pytest.LogCaptureFixture) -> None:
    c = controller(hold_s=0.0)
    with caplog.at_level(logging.WARNING, logger="shelfsense.service.thermal"):
        c.update(reading(None, 0x1))  # no temperature sensor: the flags alone decide
    assert (c.step, c.under_voltage, list(c.reasons)) == (2, True, ["under_voltage"])
    assert "power" in c.reasons["under_voltage"]
    assert any("under-voltage now" in r.getMessage() and "power supply" in r.getMessage() for r in caplog.records)
    for bits, flag in [(0x2, "freq_capped"), (0x4, "throttled"), (0x8, "soft_temp_limit")]:
        c.update(reading(50.0, bits))
        assert (c.step, list(c.reasons), c.under_voltage) == (3, [flag], False)
    for _ in range(3):
        c.update(reading(50.0, 0x50000))  # under-voltage and throttled since boot, nothing now
    assert (c.step, c.reasons) == (0, {})


def test_flag_steps_are_configurable_and_disabled_only_reports() -> None:
    ignore = controller(hold_s=0.0, under_voltage_step=0, throttled_step=1)
    ignore.update(reading(50.0, 0x1))
    assert (ignore.step, ignore.under_voltage) == (0, True)
    ignore.update(reading(50.0, 0x4))
    assert ignore.step == 1

    off = controller(enabled=False)
    off.update(reading(95.0, 0x5))
    status = off.status()
    assert (status.step, status.reasons, status.under_voltage, status.next_frame_after_ms) == (0, {}, True, 0)


@pytest.mark.parametrize(
    ("thermal", "message"),
    [
        ({"fewer_threads_c": 60.0}, "'thermal.fewer_threads_c' must be >= thermal.pause_background_c"),
        ({"slow_cameras_c": 74.0}, "'thermal.slow_cameras_c' must be >= thermal.fewer_threads_c"),
        ({"reduced_threads": 0}, "'thermal.reduced_threads' must be 1..64, got 0"),
        ({"hysteresis_c": -1}, "'thermal.hysteresis_c' must be >= 0"),
        ({"frame_interval_ms": 0}, "'thermal.frame_interval_ms' must be 1..600000"),
        ({"throttled_step": 4}, "'thermal.throttled_step' must be 0..3"),
        ({"hold": 3}, "Unknown config key(s) thermal.hold"),
    ],
)
def test_bad_thermal_config_names_the_key(thermal: dict, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config({"model": {"threads": 2}, "thermal": thermal})
    assert message in str(exc.value)


def test_every_thermal_setting_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    section = doc.split("## Thermal steps", 1)[1].split("\n## ", 1)[0]
    missing = [f.name for f in dataclasses.fields(ThermalConfig) if not re.search(rf"\b{f.name}\b", section)]
    assert not missing, f"docs/api.md 'Thermal steps' does not mention {missing}"


async def test_pool_never_runs_more_inferences_than_active_threads() -> None:
    pool = InferencePool(FIXTURE_MODELS / "colour_u8_128.tflite", threads=3)
    try:
        crops = [np.full((64, 64, 3), (b, g, r), np.uint8) for b, g, r in [(200, 0, 0), (0, 200, 0), (0, 0, 200)]]
        pool.active_threads = 1
        limited = await asyncio.gather(*(pool.classify(c) for c in crops * 8))
        assert pool.peak_running == 1
        pool.active_threads = 3
        free = await asyncio.gather(*(pool.classify(c) for c in crops * 8))
        assert [p for p, _ in limited] == [p for p, _ in free]  # fewer threads, same answers, none lost
        with pytest.raises(ValueError, match="1..3"):
            pool.active_threads = 4
    finally:
        pool.close()


class FakePi:
    """A sysfs thermal zone and a `vcgencmd` whose readings the test changes while the service runs."""

    def __init__(self, root: Path) -> None:
        self.sysfs = make_sysfs(root / "sys", {0: ("cpu-thermal", "50000")})
        self._temp = self.sysfs / "class" / "thermal" / "thermal_zone0" / "temp"
        self._bits = root / "throttled"
        self._bits.write_text("0x0\n")
        script = f'case "$1" in\n  get_throttled) echo "throttled=$(cat {self._bits})" ;;\n  *) exit 255 ;;\nesac\n'
        self.vcgencmd = make_vcgencmd(root / "bin", script)

    def set(self, celsius: float, bits: int = 0) -> None:
        # Replaced, not rewritten in place: the service reads these files at any moment.
        for path, text in ((self._temp, f"{round(celsius * 1000)}\n"), (self._bits, f"0x{bits:x}\n")):
            tmp = path.with_name(path.name + ".new")
            tmp.write_text(text)
            os.replace(tmp, path)

    def config(self, config: Config, **thermal: object) -> Config:
        telemetry = {"sysfs_root": self.sysfs, "vcgencmd": str(self.vcgencmd), "interval_s": 0.02}
        return config.replace(telemetry=telemetry, thermal={"hold_s": 0.0, **thermal})


async def settle(client, pi: FakePi, celsius: float, bits: int = 0) -> dict:
    """Set the fake Pi, wait until the service has read it and three readings more (with hold_s = 0 that is time
    for up to three steps back), and return /v1/stats."""
    pi.set(celsius, bits)

    async def stats() -> dict:
        return await (await client.get("/v1/stats")).json()

    for _ in range(2000):
        s = await stats()
        device = s["device"] or {}
        if device.get("temperature_c") == celsius and (device.get("throttled") or {}).get("raw") == hex(bits):
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError(f"the service never read {celsius} C, {hex(bits)}")
    seen = s["thermal"]["readings"]
    while s["thermal"]["readings"] < seen + 3:
        await asyncio.sleep(0.01)
        s = await stats()
    return s


def _carton() -> bytes:
    img = np.full((120, 90, 3), (40, 60, 200), np.uint8)
    img[30:90, 20:70] = (30, 30, 160)
    return jpeg(img, 95)


# (SoC temperature, get_throttled bits, the step the service must be in after it settles)
SEQUENCE = [
    (50.0, 0x0, "normal"),
    (72.0, 0x0, "pause_background"),
    (77.0, 0x0, "fewer_threads"),
    (83.0, 0x0, "slow_cameras"),
    (78.0, 0x0, "slow_cameras"),  # below 80, not below 80 - 5: held
    (74.0, 0x0, "fewer_threads"),
    (69.0, 0x0, "pause_background"),
    (64.0, 0x0, "normal"),
    (55.0, 0x1, "fewer_threads"),  # under-voltage, cool
    (55.0, 0x50000, "normal"),  # the same flags since boot only
    (55.0, 0x4, "slow_cameras"),  # the firmware throttles
    (55.0, 0x0, "normal"),
]


async def test_service_steps_down_and_back_with_hysteresis(aiohttp_client, tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    config = pi.config(colour_config(tmp_path, {"one": {}}).replace(model={"threads": 2}))
    client = await aiohttp_client(create_app(config))
    service = client.server.app[SERVICE]
    frame = _carton()
    rows = []
    for celsius, bits, expected in SEQUENCE:
        stats = await settle(client, pi, celsius, bits)
        answer = await client.post("/v1/frames/one", data=frame, headers={"Content-Type": "image/jpeg"})
        body = await answer.json()
        thermal = stats["thermal"]
        rows.append((celsius, hex(bits), thermal["state"], thermal, body["next_frame_after_ms"], answer.headers))
        assert answer.status == 200 and thermal["state"] == expected, (celsius, hex(bits), thermal)
        step = STEPS.index(expected)
        assert thermal["background_paused"] is (step >= 1) is service.recognizer.background_paused
        assert thermal["inference_threads"] == (1 if step >= 2 else 2) == service.recognizer.pool.active_threads
        assert body["next_frame_after_ms"] == (2000 if step >= 3 else 0) == thermal["next_frame_after_ms"]
        assert answer.headers.get(NEXT_FRAME_HEADER) == ("2000" if step >= 3 else None)
        assert thermal["under_voltage"] is bool(bits & 0x1)
        if step:
            assert thermal["reasons"], "a step above normal always says why"

    print("\nthermal step-down trace (fake Pi, defaults 70/75/80 C, hysteresis 5 C, hold_s 0):")
    print(f"{'SoC C':>6} {'throttled':>9}  {'step':<17} {'threads':>7} {'next_frame_ms':>13}  reasons")
    for celsius, bits, state, thermal, wait_ms, _ in rows:
        reasons = "; ".join(f"{k}: {v}" for k, v in thermal["reasons"].items()) or "-"
        print(f"{celsius:6.1f} {bits:>9}  {state:<17} {thermal['inference_threads']:>7} {wait_ms:>13}  {reasons}")

    final = rows[-1][3]
    assert all(final["seconds_in_step"][name] > 0 for name in STEPS)
    assert final["changes"] == len(final["recent"]) == 13  # up 3, down 3; up 2, down 2; up 3, down 3
    text = await (await client.get("/metrics")).text()
    samples = {
        (s.name, tuple(s.labels.values())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }
    assert samples[("shelfsense_thermal_step", ())] == 0
    assert samples[("shelfsense_under_voltage", ())] == 0
    assert all(samples[("shelfsense_thermal_step_seconds_total", (name,))] > 0 for name in STEPS)
    assert samples[("shelfsense_thermal_reason", ("temperature",))] == 0


async def test_background_confirmations_wait_for_a_cool_device(aiohttp_client, tmp_path: Path) -> None:
    pi = FakePi(tmp_path)
    client = await aiohttp_client(create_app(pi.config(colour_config(tmp_path, {"one": {}}))))
    recognizer = client.server.app[SERVICE].recognizer
    frame = _carton()

    async def post_hits(n: int) -> None:
        for _ in range(n):
            answer = await client.post("/v1/frames/one", data=frame, headers={"Content-Type": "image/jpeg"})
            assert answer.status == 200

    assert (await settle(client, pi, 72.0))["thermal"]["state"] == "pause_background"
    await post_hits(12)  # a miss, then hits: a cool service would confirm after the 4th
    await recognizer.settle()
    assert recognizer.confirmations == 0 and recognizer.pool.invokes == 1

    assert (await settle(client, pi, 60.0))["thermal"]["state"] == "normal"
    await post_hits(2)
    await until(lambda: recognizer.confirmations >= 1, "a confirmation once the device cooled")


@pytest.fixture(scope="module")
def shelf(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    return synthesize(
        None, tmp_path_factory.mktemp("thermal") / "shelf", frames=16, rows=2, cols=4, seed=7, progress=False
    )


def _timing_middleware(log: list[tuple[float, float, int, int]]):
    """Notes (arrival, answered, status, next_frame_after_ms) of every frame request, in the service's own clock."""

    @web.middleware
    async def timing(request: web.Request, handler):
        arrived = time.monotonic()
        response = await handler(request)
        log.append((arrived, time.monotonic(), response.status, int(response.headers.get(NEXT_FRAME_HEADER, 0))))
        return response

    return timing


async def test_camera_agent_slows_down_when_asked_and_speeds_up_after(tmp_path: Path, shelf: SynthResult) -> None:
    pi = FakePi(tmp_path)
    config = pi.config(colour_config(tmp_path, {"cam-t": {"grid": {"rows": 2, "cols": 4}}}), frame_interval_ms=250)
    app = create_app(config)
    requests: list[tuple[float, float, int, int]] = []
    app.middlewares.append(_timing_middleware(requests))
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    stop = asyncio.Event()
    agents: list[CameraAgent] = []
    task = asyncio.create_task(
        run_agent(shelf.out, url, "cam-t", fps=25, loop=True, stop=stop, backoff_base_s=0.02, agent_out=agents)
    )
    try:
        await until(lambda: bool(agents) and agents[0].stats.ok >= 8, "frames at the camera's own rate")
        agent = agents[0]
        pi.set(85.0)
        await until(lambda: agent.pace.requested_ms == 250, "the agent to hear the request to slow down")
        ok_hot = agent.stats.ok
        await until(lambda: agent.stats.ok >= ok_hot + 6, "frames while slowed down")
        pi.set(50.0)
        await until(lambda: agent.pace.requested_ms == 0, "the agent to hear it may speed up")
        paced, ok_cool = agent.pace.paced, agent.stats.ok
        await until(lambda: agent.stats.ok >= ok_cool + 8, "frames at the camera's own rate again")
        assert agent.pace.paced == paced  # no more waiting once the answers stopped asking
    finally:
        stop.set()
        result = await asyncio.wait_for(task, 30)
        served = runner.app[SERVICE].stats.snapshot()["cameras"]["cam-t"]["frames"]
        await runner.cleanup()

    # Nothing lost: every frame the agent sent was answered 200 and counted by the service.
    assert result.failed == 0 and not result.errors and result.ok == result.sent == served == len(requests)
    assert all(status == 200 for _, _, status, _ in requests)
    assert result.sent + result.dropped <= result.grabbed <= result.sent + result.dropped + 2
    # Obeyed: after every answer that asked for a wait, the next frame came no sooner (same clock, same process).
    asked = [(prev, nxt) for prev, nxt in zip(requests, requests[1:], strict=False) if prev[3]]
    assert len(asked) >= 6 and agent.pace.paced >= 6
    assert all(nxt[0] - prev[1] >= prev[3] / 1000 - 0.005 for prev, nxt in asked)

    print("\ncamera agent at 25 fps against the fake Pi (50 C, then 85 C, then 50 C; frame_interval_ms 250):")
    for wait_ms, chunk in _runs(requests):
        span = chunk[-1][0] - chunk[0][0]
        rate = f"{(len(chunk) - 1) / span:5.1f} frames/s" if span > 0 else "    - frames/s"
        print(f"  answers asking to wait {wait_ms:3d} ms: {len(chunk):3d} frames posted, {rate}")
    print(f"  agent: {result.line()}; waited {agent.pace.paced} times for the server ({agent.pace.paced_s:.1f} s)")


def _runs(requests: list[tuple[float, float, int, int]]) -> list[tuple[int, list]]:
    """Consecutive requests grouped by the wait their answers asked for."""
    runs: list[tuple[int, list]] = []
    for request in requests:
        if not runs or runs[-1][0] != request[3]:
            runs.append((request[3], []))
        runs[-1][1].append(request)
    return runs


@pytest.mark.browser
async def test_dashboard_shows_the_thermal_step_and_why(aiohttp_server, tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("SHELFSENSE_REQUIRE_BROWSER") == "1" or os.environ.get("SHELFSENSE_REQUIRE_SHARED") == "1":
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    pi = FakePi(tmp_path)
    pi.set(83.0, 0x5)  # hot, under-voltage and throttled now
    server = await aiohttp_server(create_app(pi.config(colour_config(tmp_path, {"one": {}}))))
    async with launch_chromium(chromium) as browser:
        page = await browser.new_page(1280, 800)
        await page.goto(str(server.make_url("/")))
        await page.wait_for("document.getElementById('thermal-line').dataset.step === '3'")
        snapshot = await page.read_stats()
        stats = await page.response_json(snapshot.updated)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(ARTIFACTS / "dashboard_thermal.png")
        line = await page.evaluate(
            "(() => { const l = document.getElementById('thermal-line');"
            " return {text: l.textContent, uv: l.classList.contains('under-voltage')}; })()"
        )
        assert mismatches(snapshot, stats) == []
        assert (snapshot.values["thermal.state"], snapshot.values["thermal.inference_threads"]) == ("slow_cameras", "1")
        assert line["uv"] and "cameras asked to slow down" in line["text"]
        assert "a power problem, not heat" in line["text"]
        assert "83.0 C, at or above thermal.slow_cameras_c" in line["text"]
        assert page.js_errors == [] and page.failed_requests == []
