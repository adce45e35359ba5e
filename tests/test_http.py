"""The service over HTTP: a real aiohttp app and server, real inference, real cache files."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest
from conftest import jpeg, tile
from prometheus_client.parser import text_string_to_metric_families

from shelfsense.service.app import create_app

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def documented_error_codes() -> set[str]:
    """The codes in the errors table of docs/api.md, the contract clients rely on."""
    table = API_DOC.read_text().split("## Errors", 1)[1]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("|")]
    return {code for cells in rows for code in cells[2].split("`")[1::2]}  # | status | code | when |


@pytest.fixture
def images(shared_dir: Path) -> dict[str, np.ndarray]:
    """The shared photos, for tests that assert what ImageNet calls them."""
    return {p.stem: cv2.imread(str(p)) for p in sorted((shared_dir / "images").glob("*.[bj][mp]*"))}


@pytest.fixture
def pictures() -> dict[str, np.ndarray]:
    """Four distinct textured pictures under the photos' names, for tests that need pictures, not labels."""
    rng = np.random.default_rng(7)
    out = {}
    for i, name in enumerate(("hot_dog", "cat", "missvickie_potato_chips", "grace_hopper")):
        base = cv2.resize(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC)
        cv2.putText(base, name[:6], (40, 260), cv2.FONT_HERSHEY_SIMPLEX, 3 + i % 2, (255 - 60 * i, 60 * i, 128), 8)
        out[name] = base
    return out


@pytest.fixture
def vcgencmd(tmp_path: Path) -> Path:
    """A stand-in for the Pi firmware tool at a configurable path, as the Pi's would answer."""
    script = tmp_path / "vcgencmd"
    script.write_text(
        '#!/bin/sh\ncase "$1" in\n measure_temp) echo "temp=61.2\'C";;\n'
        " get_throttled) echo throttled=0x50005;;\nesac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


async def _client(aiohttp_client, config):
    client = await aiohttp_client(create_app(config))
    assert (await client.get("/readyz")).status == 200
    return client


async def post(client, camera: str, body: bytes, ctype: str = "image/jpeg", **kw):
    return await client.post(f"/v1/frames/{camera}", data=body, headers={"Content-Type": ctype, **kw})


@pytest.mark.pi
async def test_frames_from_several_cameras_and_counters_add_up(aiohttp_client, make_config, images) -> None:
    cameras = {f"cam-{i}": {"grid": {"rows": 2, "cols": 2}} for i in range(4)}
    client = await _client(aiohttp_client, make_config(cameras=cameras, cache={"confirm_inferences": 1}))
    shelf = jpeg(
        tile([images["hot_dog"], images["cat"], images["missvickie_potato_chips"], images["grace_hopper"]], 2, 2)
    )

    async def camera(cid: str) -> list[dict]:
        out = []
        for _ in range(3):
            resp = await post(client, cid, shelf)
            assert resp.status == 200, await resp.text()
            out.append(await resp.json())
        return out

    bodies = [b for bs in await asyncio.gather(*(camera(c) for c in cameras)) for b in bs]
    for body in bodies:
        assert set(body) >= {"camera", "frame", "latency_ms", "model", "slots"}
        assert body["model"] == "mobilenet_v2_1.0_224_quant.tflite"
        assert [s["slot"] for s in body["slots"]] == [0, 1, 2, 3]
        for s in body["slots"]:
            assert s["cache"] in {"memory", "disk", "miss", "coalesced"}
            assert len(s["box"]) == 4 and isinstance(s["score"], float)
            assert (s["distance"] is None) == (s["cache"] in {"miss", "coalesced"} and s["distance"] is None)
    for cid in cameras:  # frame numbers count up per camera
        assert sorted(b["frame"] for b in bodies if b["camera"] == cid) == [1, 2, 3]
    labels = {s["label"] for b in bodies for s in b["slots"]}
    assert {"hotdog, hot dog, red hot", "packet", "military uniform"} <= labels
    seen = [s["cache"] for b in bodies for s in b["slots"]]
    stats = await (await client.get("/v1/stats")).json()
    c = stats["cache"]
    assert c["memory_hits"] + c["disk_hits"] + c["misses"] + c["coalesced"] == len(seen) == 48
    for tier, key in (("memory", "memory_hits"), ("disk", "disk_hits"), ("miss", "misses"), ("coalesced", "coalesced")):
        assert c[key] == seen.count(tier)
    assert c["misses"] == 4  # four distinct products, one inference each, whatever the interleaving
    assert stats["model"]["invokes"] == 4
    assert c["entries_memory"] == 4 and c["disk_available"] is True and c["confirmations"] == 0
    assert (await (await client.get("/readyz")).json())["cache"] == "memory+disk"
    assert c["hit_rate"] == pytest.approx((c["memory_hits"] + c["disk_hits"]) / 48, abs=1e-3)
    assert stats["cameras"]["cam-0"]["frames"] == 3 and stats["frames"] == 12
    assert stats["latency_ms"]["frame"]["count"] == 12
    assert stats["latency_ms"]["hit"]["count"] + stats["latency_ms"]["miss"]["count"] == 12
    assert stats["window_s"] == 60.0 and stats["throughput_fps"] > 0


async def test_multipart_and_png_frames(aiohttp_client, make_config, images) -> None:
    client = await _client(aiohttp_client, make_config())
    ok, png = cv2.imencode(".png", images["hot_dog"])
    resp = await post(client, "one", png.tobytes(), "image/png")
    assert resp.status == 200 and (await resp.json())["slots"][0]["label"] == "hotdog, hot dog, red hot"
    form = aiohttp.FormData()
    form.add_field("frame", jpeg(images["hot_dog"]), content_type="image/jpeg", filename="f.jpg")
    resp = await client.post("/v1/frames/one", data=form)
    assert resp.status == 200 and (await resp.json())["slots"][0]["cache"] == "memory"


async def test_every_error_answers_json_and_service_keeps_serving(aiohttp_client, own_config, pictures) -> None:
    config = own_config(
        server={"max_body_bytes": 200_000},
        cameras={"one": {}, "locked": {"token": "s3cret"}},
    )
    client = await _client(aiohttp_client, config)
    good = jpeg(cv2.resize(pictures["hot_dog"], (320, 240)))
    full = jpeg(pictures["cat"])
    cases = [
        (lambda: post(client, "one", b""), 400, "bad_image"),
        (lambda: post(client, "one", b"\x89PNG\r\n\x1a\n corrupt"), 400, "bad_image"),
        (
            lambda: post(client, "one", full[: len(full) // 3]),
            None,
            None,
        ),  # truncated JPEG: decoded partially or refused
        (lambda: post(client, "one", os.urandom(300_000)), 413, "payload_too_large"),
        (lambda: post(client, "one", good, "text/plain"), 415, "unsupported_media_type"),
        (lambda: post(client, "nope", good), 404, "unknown_camera"),
        (lambda: post(client, "bad id!", good), 400, "bad_image"),
        (lambda: post(client, "-x", good), 400, "bad_image"),  # the config refuses this id too
        (lambda: post(client, "locked", good), 401, "unauthorized"),
        (lambda: post(client, "locked", good, Authorization="Bearer wrong"), 403, "forbidden"),
        (lambda: client.get("/v1/nothing-here"), 404, "not_found"),
        (lambda: client.get("/v1/frames/one"), 405, "method_not_allowed"),
    ]
    for request, status, code in cases:
        resp = await request()
        body = await resp.json()
        assert set(body) == {"error", "detail"} or resp.status == 200, body
        if status is not None:
            assert (resp.status, body["error"]) == (status, code), body
            assert len(body["detail"]) > 10
            assert code in documented_error_codes()
        # and a good frame right after still succeeds
        after = await post(client, "one", good)
        assert after.status == 200
    resp = await post(client, "locked", good, Authorization="Bearer s3cret")
    assert resp.status == 200

    # a chunked upload without Content-Length over the limit is refused too
    async def chunks():
        for _ in range(30):
            yield b"\xff" * 10_000

    resp = await client.post("/v1/frames/one", data=chunks(), headers={"Content-Type": "image/jpeg"})
    assert resp.status == 413 and (await resp.json())["error"] == "payload_too_large"
    stats = await (await client.get("/v1/stats")).json()
    assert stats["errors"]["bad_image"] >= 3 and stats["errors"]["unknown_camera"] == 1


async def test_overload_answers_503_with_retry_after(aiohttp_client, own_config, pictures) -> None:
    client = await _client(aiohttp_client, own_config(server={"max_pending_frames": 1}, cache={"enabled": False}))
    body = jpeg(tile([pictures["cat"]] * 8, 2, 4))
    responses = await asyncio.gather(*(post(client, "shelf", body) for _ in range(6)))
    statuses = sorted(r.status for r in responses)
    assert 200 in statuses and 503 in statuses
    busy = next(r for r in responses if r.status == 503)
    assert busy.headers["Retry-After"] == "1" and (await busy.json())["error"] == "overloaded"
    assert (await post(client, "shelf", body)).status == 200


async def test_unknown_cameras_allowed_get_whole_frame(aiohttp_client, own_config, pictures) -> None:
    client = await _client(aiohttp_client, own_config(server={"allow_unknown_cameras": True}))
    resp = await post(client, "new-cam", jpeg(pictures["hot_dog"]))
    body = await resp.json()
    h, w = pictures["hot_dog"].shape[:2]
    assert resp.status == 200 and body["slots"][0]["box"] == [0, 0, w, h]


async def test_read_token_guards_stats_metrics_dashboard(aiohttp_client, own_config) -> None:
    client = await _client(aiohttp_client, own_config(server={"read_token": "r"}))
    for path in ("/v1/stats", "/metrics", "/"):
        assert (await client.get(path)).status == 401
        assert (await client.get(path, headers={"Authorization": "Bearer x"})).status == 403
        assert (await client.get(path, headers={"Authorization": "Bearer r"})).status == 200
    assert (await client.get("/v1/stats?token=r")).status == 200
    assert (await client.get("/?token=r")).status == 200
    assert (await client.get("/healthz")).status == 200
    # a browser cannot send a header: the answer must say how to open the dashboard
    assert "open it as /?token=<token>" in (await (await client.get("/")).json())["detail"]


async def test_metrics_parse_and_agree_with_stats(aiohttp_client, own_config, pictures, vcgencmd) -> None:
    client = await _client(aiohttp_client, own_config(telemetry={"vcgencmd": str(vcgencmd), "interval_s": 0.05}))
    for name in ("hot_dog", "cat", "hot_dog"):
        assert (await post(client, "one", jpeg(pictures[name]))).status == 200
    await post(client, "one", b"junk")
    await asyncio.sleep(0.2)
    text = await (await client.get("/metrics")).text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("shelfsense_frames_total", (("camera", "one"),))] == 3
    assert samples[("shelfsense_slot_results_total", (("cache", "miss"),))] == 2
    assert samples[("shelfsense_slot_results_total", (("cache", "memory"),))] == 1
    assert samples[("shelfsense_errors_total", (("kind", "bad_image"),))] == 1
    assert samples[("shelfsense_inference_seconds_count", ())] == 2
    assert samples[("shelfsense_frame_latency_seconds_count", (("path", "hit"),))] == 1
    assert samples[("shelfsense_frame_latency_seconds_count", (("path", "miss"),))] == 2
    assert samples[("shelfsense_cache_entries", (("tier", "memory"),))] == 2
    assert samples[("shelfsense_queue_depth", ())] == 0
    assert samples[("shelfsense_temperature_celsius", ())] == pytest.approx(61.2)
    assert samples[("shelfsense_throttled", ())] == 1.0
    stats = await (await client.get("/v1/stats")).json()
    assert stats["device"]["temperature_c"] == pytest.approx(61.2)
    assert stats["device"]["throttled"]["now"]["under_voltage"] is True
    assert stats["device"]["throttled"]["since_boot"]["throttled"] is True


async def test_device_without_sensors_reports_null_with_reason(aiohttp_client, own_config) -> None:
    client = await _client(aiohttp_client, own_config())
    for _ in range(50):
        stats = await (await client.get("/v1/stats")).json()
        if stats["device"] is not None:
            break
        await asyncio.sleep(0.02)
    assert stats["device"]["temperature_c"] is None and stats["device"]["throttled"] is None
    assert "no" in stats["device"]["temperature_source"].lower()
    assert stats["device"]["memory_rss_mb"] > 10


async def test_missing_model_keeps_service_up(aiohttp_client, own_config, tmp_path: Path, pictures) -> None:
    client = await aiohttp_client(create_app(own_config(model={"path": str(tmp_path / "gone.tflite")})))
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    body = await ready.json()
    assert ready.status == 503 and "does not exist" in body["detail"]
    assert body["error"] == "not_ready" and "not_ready" in documented_error_codes()
    resp = await post(client, "one", jpeg(pictures["cat"]))
    assert resp.status == 503 and (await resp.json())["error"] == "model_error"
    stats = await (await client.get("/v1/stats")).json()
    assert "does not exist" in stats["model"]["error"]
    assert (await client.get("/")).status == 200


async def test_restart_serves_from_disk_over_http(aiohttp_client, own_config, pictures) -> None:
    config = own_config()
    body = jpeg(tile([pictures["cat"], pictures["hot_dog"]] * 4, 2, 4))
    client = await _client(aiohttp_client, config)
    assert (await post(client, "shelf", body)).status == 200
    await client.close()  # runs the app's cleanup: queued disk writes land, the cache closes
    client = await _client(aiohttp_client, config)
    slots = (await (await post(client, "shelf", body)).json())["slots"]
    assert {s["cache"] for s in slots} <= {"disk", "coalesced"} and "disk" in {s["cache"] for s in slots}


async def test_record_tap_stores_exactly_what_cameras_posted(aiohttp_client, own_config, pictures, tmp_path) -> None:
    from shelfsense.footage import open_footage

    folder = tmp_path / "rec"
    config = own_config(
        record={"enabled": True, "folder": str(folder), "cameras": ["one", "shelf"]},
        cameras={"one": {}, "shelf": {"grid": {"rows": 2, "cols": 4}}, "other": {}},
    )
    client = await _client(aiohttp_client, config)
    sent = [("one", jpeg(pictures["cat"])), ("shelf", jpeg(tile([pictures["hot_dog"]] * 8, 2, 4))), ("one", b"junk")]
    for camera, body in sent:
        await post(client, camera, body)
    assert (await post(client, "other", jpeg(pictures["cat"]))).status == 200  # not in record.cameras
    await client.close()  # the recorder closes with the app
    with open_footage(folder) as footage:
        frames = list(footage)
    # exactly the bytes cameras sent, but only frames that decoded: a corrupt body is refused, not recorded
    assert [(f.camera, f.data) for f in frames] == sent[:2]
    assert frames[0].t <= frames[1].t


async def test_empty_disk_tier_is_reported_available(aiohttp_client, own_config) -> None:
    """A fresh disk cache holds nothing yet and is still open: readiness and stats must say so."""
    client = await _client(aiohttp_client, own_config())
    assert (await (await client.get("/readyz")).json())["cache"] == "memory+disk"
    stats = await (await client.get("/v1/stats")).json()
    assert stats["cache"]["disk_available"] is True and stats["cache"]["entries_disk"] == 0
