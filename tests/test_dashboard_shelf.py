"""The dashboard's shelf view in a real headless Chromium: the latest frame with slots coloured by state, the
out-of-stock list, the event timeline, planogram compliance, and charts that open on the service's history.

Screenshots land in tests/artifacts/ (or $SHELFSENSE_ARTIFACTS): dashboard_shelves.png shows an empty facing.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest
from cdp import launch_chromium
from conftest import colour_config, jpeg
from shelfframes import GRID, shelf
from test_dashboard import chromium  # noqa: F401 - the fixture (skips or fails without Chromium)

from shelfsense.service.app import create_app

pytestmark = pytest.mark.browser

ARTIFACTS = Path(os.environ.get("SHELFSENSE_ARTIFACTS", Path(__file__).parent / "artifacts"))
TOKEN = "read-token-for-tests"
FULL = ["red", "green", "blue", "red", "green", "blue", "red", "green"]


@pytest.fixture
async def service(aiohttp_server, tmp_path: Path):
    planogram = ["red", "green", "blue", "red", "green", "red", "red", "green"]  # slot 5 should hold red
    config = colour_config(tmp_path, {"shelf-1": {**GRID, "planogram": planogram}, "shelf-2": GRID}, read_token=TOKEN)
    config = config.replace(shelf={"history_step_s": 0.1})
    server = await aiohttp_server(create_app(config))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:

        async def post(camera: str, slots, seed: int) -> None:
            url = server.make_url(f"/v1/frames/{camera}")
            async with session.post(
                url, data=jpeg(shelf(slots, seed=seed)), headers={"Content-Type": "image/jpeg"}
            ) as r:
                assert r.status == 200

        for i in range(3):
            await post("shelf-1", FULL, i)
            await post("shelf-2", FULL, i)
        for i in range(4):  # slot 2 of shelf-1 is emptied
            await post("shelf-1", [None if j == 2 else s for j, s in enumerate(FULL)], 10 + i)
        await asyncio.sleep(1.2)  # the snapshot (at most one a second) and a few history samples
        await post("shelf-1", [None if j == 2 else s for j, s in enumerate(FULL)], 20)
        async with session.get(server.make_url("/v1/stats/history")) as r:
            assert len((await r.json())["samples"]) >= 3
    return server


async def test_shelf_view_marks_the_empty_facing(chromium: str, service) -> None:  # noqa: F811
    async with launch_chromium(chromium) as browser:
        page = await browser.new_page(1280, 1000)
        await page.goto(f"{service.make_url('/')}?token={TOKEN}")
        await page.wait_for("document.querySelectorAll('.shelfcam').length === 2")
        await page.wait_for("document.querySelector('#events [data-event]') !== null")
        await page.wait_for(
            "[...document.querySelectorAll('.shelfview img')].every((i) => i.complete && i.naturalWidth > 0)"
        )
        rects = "[...document.querySelectorAll('.shelfcam[data-camera=\"shelf-1\"] rect')]"
        states = await page.evaluate(f"{rects}.map((r) => r.dataset.state)")
        assert states == ["product", "product", "empty", "product", "product", "product", "product", "product"]
        classes = await page.evaluate(f"{rects}.map((r) => r.getAttribute('class'))")
        assert classes[2] == "st-empty" and classes[5] == "st-misplaced"  # blue where the planogram says red
        oos = await page.evaluate("[...document.querySelectorAll('#oos [data-oos]')].map((li) => li.dataset.oos)")
        assert oos == ["shelf-1:2"]
        timeline = await page.evaluate("[...document.querySelectorAll('#events .ev')].map((e) => e.textContent)")
        assert timeline == ["product removed"]
        compliance = await page.evaluate("document.getElementById('compliance').textContent")
        assert compliance == "75% (6/8)"  # slot 2 empty, slot 5 misplaced
        assert int(await page.wait_for("Number(document.body.dataset.history) > 0 && document.body.dataset.history"))
        await page.wait_for_update()
        points = await page.evaluate("Number(document.getElementById('chart-fps').dataset.points)")
        assert points >= 3  # the service's history, not a single dot
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(ARTIFACTS / "dashboard_shelves.png")
        assert page.failed_requests == []
        assert page.js_errors == []
