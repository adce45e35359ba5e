"""Shelf state over HTTP: slot states per frame, debounced shelf state, planogram, restarts, a corrupt store.

A real app on the fixture colour model (real inference, real cache and state files under tmp_path), fed drawn
shelves (tests/shelfframes.py) as a camera would post them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import colour_config, jpeg
from prometheus_client.parser import text_string_to_metric_families
from shelfframes import GRID, shelf

from shelfsense.recognition.slotstate import SlotState
from shelfsense.service.app import create_app
from shelfsense.shelf.tracker import ShelfTracker, SlotReading, TrackerRules

FULL = ["red", "green", "blue", "red", "green", "blue", "red", "green"]


def config(tmp_path: Path, **sections):
    cameras = sections.pop("cameras", {"shelf-1": GRID})
    return colour_config(tmp_path, cameras).replace(**sections) if sections else colour_config(tmp_path, cameras)


async def post(client, slots, *, camera: str = "shelf-1", seed: int = 0, **kw) -> dict:
    r = await client.post(
        f"/v1/frames/{camera}", data=jpeg(shelf(slots, seed=seed, **kw)), headers={"Content-Type": "image/jpeg"}
    )
    assert r.status == 200, await r.text()
    return await r.json()


async def feed(client, slots, frames: int, *, start: int = 0, **kw) -> list[dict]:
    return [await post(client, slots, seed=start + i, **kw) for i in range(frames)]


def without(slots: list, *empty: int) -> list:
    return [None if i in empty else s for i, s in enumerate(slots)]


async def test_an_emptied_facing_becomes_empty_after_confirm_frames(aiohttp_client, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(config(tmp_path)))
    first = await feed(client, FULL, 3)
    assert [s["state"] for s in first[-1]["slots"]] == ["product"] * 8
    assert [s["label"] for s in first[-1]["slots"]] == FULL

    shelves = await (await client.get("/v1/shelves")).json()
    (camera,) = shelves["cameras"]
    assert [s["state"] for s in camera["slots"]] == ["product"] * 8
    assert shelves["out_of_stock"] == 0

    # Slot 2 is emptied; the shelf state follows once the new reading has held confirm_frames (3) frames.
    frames = await feed(client, without(FULL, 2), 4, start=10)
    per_frame = [f["slots"][2]["state"] for f in frames]
    assert per_frame[-1] == "empty"
    states = await (await client.get("/v1/shelves/shelf-1")).json()
    slot = states["slots"][2]
    assert slot["state"] == "empty" and slot["last_label"] == "blue" and slot["seconds"] >= 0
    assert states["out_of_stock"] == [{"slot": 2, "label": "blue", "expected": None, "seconds": slot["seconds"]}]
    assert states["counts"]["empty"] == 1 and states["counts"]["product"] == 7

    events = (await (await client.get("/v1/events")).json())["events"]
    assert [(e["type"], e["slot"], e["before"]["label"], e["after"]["state"]) for e in events] == [
        ("product_removed", 2, "blue", "empty")
    ]
    # Confirmed on the third empty reading: the delay is within confirm_frames + 1 frames of the change.
    assert events[0]["frame"] - frames[0]["frame"] <= 3

    metrics = (await (await client.get("/metrics")).text()).replace("\r", "")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
    }
    assert samples[("shelfsense_shelf_slots", (("camera", "shelf-1"), ("state", "empty")))] == 1
    assert samples[("shelfsense_shelf_events_total", (("type", "product_removed"),))] == 1
    assert samples[("shelfsense_out_of_stock_seconds", ())] >= 0

    # Restocked with another product.
    await feed(client, [*FULL[:2], "green", *FULL[3:]], 4, start=20)
    events = (await (await client.get("/v1/events?since=1")).json())["events"]
    assert [(e["type"], e["slot"], e["after"]["label"]) for e in events] == [("restocked", 2, "green")]


@pytest.mark.parametrize("kind", ["plain", "wood"])
async def test_arms_passing_change_no_state_and_raise_no_event(aiohttp_client, tmp_path: Path, kind: str) -> None:
    """On a light grey shelf and a dark wooden one alike: nothing in the slot cues is tied to one shelf's look."""
    client = await aiohttp_client(create_app(config(tmp_path)))
    slots = without(FULL, 5)
    await feed(client, slots, 3, kind=kind)
    seen = []
    for reach in range(6):  # three arms, each two frames into a different slot
        frame = await post(client, slots, seed=100 + reach, kind=kind, arm=[1, 5, 6][reach // 2])
        seen += [s["state"] for s in frame["slots"]]
        if reach % 2:
            await post(client, slots, seed=200 + reach, kind=kind)
    assert "occluded" in seen
    await feed(client, slots, 3, start=300, kind=kind)
    shelves = await (await client.get("/v1/shelves")).json()
    assert [s["state"] for s in shelves["cameras"][0]["slots"]] == ["empty" if i == 5 else "product" for i in range(8)]
    assert (await (await client.get("/v1/events")).json())["events"] == []


async def test_planogram_misplaced_product_and_compliance(aiohttp_client, tmp_path: Path) -> None:
    planogram = ["red", "green", "blue", "red", "", "", "", ""]
    client = await aiohttp_client(create_app(config(tmp_path, cameras={"shelf-1": {**GRID, "planogram": planogram}})))
    await feed(client, FULL, 3)
    shelves = await (await client.get("/v1/shelves")).json()
    assert shelves["cameras"][0]["compliance"] == {
        "planned": 4,
        "compliant": 4,
        "empty": 0,
        "misplaced": 0,
        "share": 1.0,
    }
    assert shelves["compliance"] == {"planned": 4, "compliant": 4, "share": 1.0}
    await feed(client, without(FULL, 0), 4, start=10)  # red taken from slot 0 ...
    await feed(client, ["blue", *FULL[1:]], 4, start=20)  # ... and blue put there instead
    events = (await (await client.get("/v1/events")).json())["events"]
    assert [(e["type"], e["slot"]) for e in events] == [("product_removed", 0), ("restocked", 0), ("misplaced", 0)]
    assert events[2]["after"] == {"state": "product", "label": "blue", "expected": "red"}
    camera = await (await client.get("/v1/shelves/shelf-1")).json()
    assert camera["slots"][0]["misplaced"] is True and camera["slots"][0]["expected"] == "red"
    assert camera["compliance"]["share"] == 0.75 and camera["compliance"]["misplaced"] == 1


async def test_shelf_state_and_event_ids_survive_a_restart(aiohttp_client, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(config(tmp_path)))
    await feed(client, FULL, 3)
    await feed(client, without(FULL, 4), 4, start=10)
    before = await (await client.get("/v1/shelves/shelf-1")).json()
    await client.close()
    assert (tmp_path / "shelf" / "state.json").is_file()  # beside the disk cache (tmp_path / "cache")

    client = await aiohttp_client(create_app(config(tmp_path)))
    after = await (await client.get("/v1/shelves/shelf-1")).json()
    assert [(s["state"], s["label"], s["since"]) for s in after["slots"]] == [
        (s["state"], s["label"], s["since"]) for s in before["slots"]
    ]
    # The restocked slot raises an event whose id follows the one from before the restart.
    await feed(client, FULL, 4, start=20)
    events = (await (await client.get("/v1/events")).json())["events"]
    assert [(e["id"], e["type"]) for e in events] == [(1, "product_removed"), (2, "restocked")]


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 1, "cameras": {"shelf-1": {"slots": [{}]}}}', b"[]"])
async def test_a_corrupt_state_store_starts_empty_with_a_warning(
    aiohttp_client, tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    store = tmp_path / "shelf" / "state.json"
    store.parent.mkdir()
    store.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="shelfsense"):
        client = await aiohttp_client(create_app(config(tmp_path)))
    assert any("shelf state" in r.getMessage() and "empty shelf state" in r.getMessage() for r in caplog.records)
    assert (await (await client.get("/v1/shelves")).json())["cameras"] == []
    assert (await client.get("/readyz")).status == 200
    await feed(client, FULL, 3)  # and it works from there
    assert len((await (await client.get("/v1/shelves")).json())["cameras"][0]["slots"]) == 8
    await client.close()
    assert json.loads(store.read_text())["version"] == 1


async def test_shelf_state_off_answers_404_and_frames_still_work(aiohttp_client, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(config(tmp_path, shelf={"enabled": False})))
    frame = await post(client, FULL)
    assert frame["slots"][0]["state"] == "product"
    r = await client.get("/v1/shelves")
    assert r.status == 404 and "shelf.enabled" in (await r.json())["detail"]


async def test_shelf_endpoints_need_the_read_token(aiohttp_client, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(colour_config(tmp_path, {"shelf-1": GRID}, read_token="t0k")))
    for path in ("/v1/shelves", "/v1/shelves/shelf-1", "/v1/events", "/v1/stats/history", "/v1/events/stream"):
        assert (await client.get(path)).status == 401, path
        assert (await client.get(path, headers={"Authorization": "Bearer nope"})).status == 403, path
    assert (await client.get("/v1/shelves?token=t0k")).status == 200


async def test_reverification_notices_a_look_alike_swapped_into_a_facing(aiohttp_client, tmp_path: Path) -> None:
    """A blue carton replaces a red one of the same print. With the colour check off (tolerance beyond any colour)
    its key falls within the hit radius of another carton's, so the cache answers with that carton's label:
    re-verification after cache.reverify_hits hits infers it again, and the answer and the shelf state follow."""
    cfg = config(
        tmp_path,
        cache={"colour_tolerance": 10_000, "max_distance": 16, "confirm_inferences": 1, "reverify_hits": 2},
    )
    client = await aiohttp_client(create_app(cfg))
    await feed(client, FULL, 3)
    swapped = ["blue", *FULL[1:]]
    await post(client, FULL, seed=9, arm=0)  # the hand that swaps them
    labels = [(await post(client, swapped, seed=10 + i))["slots"][0] for i in range(12)]
    # A look-alike's stale answer, served from the cache (whichever carton's key happens to be nearest).
    assert labels[0]["label"] != "blue" and labels[0]["cache"] == "memory"
    assert labels[-1]["label"] == "blue"
    shelves = await (await client.get("/v1/shelves")).json()
    assert shelves["reverify"]["changed"] >= 1 and shelves["reverify"]["runs"] >= shelves["reverify"]["changed"]
    assert shelves["cameras"][0]["slots"][0]["label"] == "blue"
    events = (await (await client.get("/v1/events")).json())["events"]
    assert {e["type"] for e in events} == {"product_changed"} and events[0]["before"]["label"] == "red"
    assert events[-1]["after"]["label"] == "blue"


def test_a_label_that_wavers_on_an_untouched_facing_raises_no_event() -> None:
    """The model reading A, then B, on a facing nothing passed in front of: the state follows, silently. The same
    change with a hand in front in between is a product_changed event."""
    tracker = ShelfTracker(TrackerRules(confirm_frames=2, confirm_s=0))
    a, b = SlotReading(SlotState.PRODUCT, "A", 0.9), SlotReading(SlotState.PRODUCT, "B", 0.9)
    hand = SlotReading(SlotState.OCCLUDED, "B", 0.4)
    frames = [a, a, b, b, a, a, hand, b, b]
    changes = [c for f, r in enumerate(frames) for c in tracker.observe("cam", [r], f, float(f))]
    assert [(c["type"], c["before"]["label"], c["after"]["label"], c["frame"]) for c in changes] == [
        ("product_changed", "A", "B", 8)
    ]


async def test_unconfigured_cameras_get_slot_states_but_no_shelf_state(aiohttp_client, tmp_path: Path) -> None:
    cfg = colour_config(tmp_path, {"shelf-1": GRID}, allow_unknown_cameras=True, max_cameras=2)
    client = await aiohttp_client(create_app(cfg))
    for i in range(5):  # more made-up ids than server.max_cameras
        frame = await post(client, FULL, camera=f"walk-in-{i}", seed=i)
        assert frame["slots"][0]["state"] == "product"
    assert (await (await client.get("/v1/shelves")).json())["cameras"] == []
