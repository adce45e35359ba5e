"""The store dashboard in a real headless Chromium against the real service, fed real frames.

Screenshots land in tests/artifacts/ (or $SHELFSENSE_ARTIFACTS).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import aiohttp
import cv2
import pytest
from cdp import find_chromium, launch_chromium, mismatches
from conftest import jpeg, tile

from shelfsense.service.app import create_app

pytestmark = pytest.mark.browser

ARTIFACTS = Path(os.environ.get("SHELFSENSE_ARTIFACTS", Path(__file__).parent / "artifacts"))
TOKEN = "read-token-for-tests"


@pytest.fixture
def chromium() -> str:
    path = find_chromium()
    if path is None:
        reason = "chromium is not installed (apt-get install -y chromium; .ci/run installs it)"
        if os.environ.get("SHELFSENSE_REQUIRE_SHARED") == "1" or os.environ.get("SHELFSENSE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


async def _post(session: aiohttp.ClientSession, server, camera: str, body: bytes) -> int:
    url = server.make_url(f"/v1/frames/{camera}")
    async with session.post(url, data=body, headers={"Content-Type": "image/jpeg"}) as r:
        return r.status


@pytest.fixture
async def service(aiohttp_server, make_config, shared_dir: Path, tmp_path: Path):
    """A real service on a real socket with a fake Pi vcgencmd and two cameras that have sent frames."""
    vcgencmd = tmp_path / "vcgencmd"
    vcgencmd.write_text(
        '#!/bin/sh\ncase "$1" in\n measure_temp) echo "temp=58.4\'C";;\n'
        " get_throttled) echo throttled=0x50000;;\nesac\n"
    )
    vcgencmd.chmod(vcgencmd.stat().st_mode | stat.S_IEXEC)
    config = make_config(
        server={"read_token": TOKEN},
        telemetry={"vcgencmd": str(vcgencmd), "interval_s": 0.2},
        cameras={"shelf-1": {"grid": {"rows": 2, "cols": 4}}, "aisle.7": {}},
    )
    server = await aiohttp_server(create_app(config))
    images = [cv2.imread(str(p)) for p in sorted((shared_dir / "images").glob("*.[bj][mp]*"))]
    shelf = jpeg(tile(images * 2, 2, 4))
    async with aiohttp.ClientSession() as session:
        for camera, body in (("shelf-1", shelf), ("shelf-1", shelf), ("aisle.7", jpeg(images[0])), ("shelf-1", shelf)):
            assert await _post(session, server, camera, body) == 200
        assert await _post(session, server, "shelf-1", b"junk") == 400
    return server


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (768, 1024)])
async def test_dashboard_shows_what_the_service_reports(chromium: str, service, width: int, height: int) -> None:
    async with launch_chromium(chromium) as browser:
        page = await browser.new_page(width, height)
        await page.goto(f"{service.make_url('/')}?token={TOKEN}")
        first = await page.wait_for_update()
        await page.wait_for_update(after=first)  # it keeps polling

        snapshot = await page.read_stats()
        stats = await page.response_json(snapshot.updated)  # the very /v1/stats body this render came from
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(ARTIFACTS / f"dashboard_{width}x{height}.png")

        assert mismatches(snapshot, stats) == []
        for path in (
            "cache.hit_rate_window",
            "throughput_fps",
            "latency_ms.hit.p50",
            "latency_ms.miss.p99",
            "latency_ms.frame.p50",
            "device.temperature_c",
            "queue_depth",
            "cameras.shelf-1.fps",
            "cameras.aisle.7.hit_rate",
            "errors.bad_image",
        ):
            assert path in snapshot.values, path
        assert stats["cameras"]["shelf-1"]["frames"] == 3 and stats["errors"]["bad_image"] == 1
        assert stats["device"]["temperature_c"] == pytest.approx(58.4)
        assert float(snapshot.values["device.temperature_c"]) == pytest.approx(58.4)
        assert float(snapshot.values["cache.hit_rate_window"]) == pytest.approx(stats["cache"]["hit_rate_window"])
        assert page.failed_requests == []
        assert page.js_errors == []


async def test_dashboard_says_offline_when_the_service_stops(chromium: str, service) -> None:
    async with launch_chromium(chromium) as browser:
        page = await browser.new_page()
        await page.goto(f"{service.make_url('/')}?token={TOKEN}")
        await page.wait_for_update()
        await service.close()
        status = await page.wait_for(
            "document.body.dataset.connection === 'offline' && document.getElementById('status').textContent"
        )
        assert status.startswith("Offline")
        await page.screenshot(ARTIFACTS / "dashboard_offline.png")
