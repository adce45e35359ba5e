"""Replay against the real service on a real socket: ordering, hit rate, counters, accuracy, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from aiohttp import web
from conftest import colour_config

from shelfsense.cli.main import main
from shelfsense.config import Config
from shelfsense.footage import TruthRow, read_truth, write_truth
from shelfsense.service.app import create_app
from shelfsense.synth.synth import SynthResult, synthesize
from shelfsense.tools.replay import replay

pytestmark = pytest.mark.replay

FRAMES, ROWS, COLS, FAN_OUT = 40, 2, 4, 3


@contextlib.asynccontextmanager
async def serving(config: Config) -> AsyncIterator[str]:
    """The real app on a real 127.0.0.1 socket (port chosen by the OS); yields its base URL."""
    runner = web.AppRunner(create_app(config), shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def stats_of(url: str) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(f"{url}/v1/stats") as resp:
        assert resp.status == 200
        return await resp.json()


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    out = tmp_path_factory.mktemp("replay") / "shelf"
    return synthesize(None, out, frames=FRAMES, rows=ROWS, cols=COLS, size=(320, 240), seed=11, progress=False)


def fanned_cameras(footage: SynthResult, k: int) -> dict:
    cam = tomllib.loads((footage.out / "camera.toml").read_text())["cameras"][footage.camera]
    return {f"{footage.camera}-{i}": {"slots": cam["slots"]} for i in range(k)}


async def test_three_cameras_at_max_speed_in_order_with_counters_matching(make_config, footage: SynthResult) -> None:
    config = make_config(cameras=fanned_cameras(footage, FAN_OUT))
    async with serving(config) as url:
        report = await replay(
            [footage.out], url, cameras=FAN_OUT, speed=None, truth=footage.out / "truth.jsonl", warmup=1
        )
        stats = await stats_of(url)

    ids = [f"cam-0-{i}" for i in range(FAN_OUT)]
    assert report.cameras == ids
    assert report.sent == report.ok == FRAMES * FAN_OUT and report.errors == {}
    for cid in ids:
        mine = report.camera_records(cid)
        # One request in flight per camera: sent in footage order, answered in that order.
        assert [r.seq for r in mine] == list(range(FRAMES))
        assert [r.index for r in mine] == list(range(FRAMES))
        assert [r.server_frame for r in mine] == list(range(1, FRAMES + 1))
        assert report.in_order(cid)
        assert all(r.slots == ROWS * COLS and r.server_ms is not None and r.client_ms > 0 for r in mine)

    # Measured on this footage (seed 11, MobileNetV2, 3 runs): hit rate 0.826-0.830, 0.846-0.852 after
    # warm-up, always 53 misses and 110-114 coalesced of 960 slots. Which of a miss's twins (same frame on
    # the other cameras, same product in a neighbouring slot) are coalesced rather than memory hits depends
    # on interleaving, hence the margin; a cache that never hit across frames would score near 0.
    assert report.hit_rate is not None and report.hit_rate > 0.7
    assert report.hit_rate_after_warmup is not None and report.hit_rate_after_warmup >= report.hit_rate

    # The server counted exactly what the client sent and saw.
    cache = stats["cache"]
    assert stats["frames"] == FRAMES * FAN_OUT
    assert {cid: stats["cameras"][cid]["frames"] for cid in ids} == dict.fromkeys(ids, FRAMES)
    assert cache["slot_results"] == FRAMES * FAN_OUT * ROWS * COLS
    assert cache["memory_hits"] + cache["disk_hits"] + cache["misses"] + cache["coalesced"] == cache["slot_results"]
    tiers = report.tiers
    assert (cache["memory_hits"], cache["disk_hits"], cache["misses"], cache["coalesced"]) == (
        tiers["memory"],
        tiers["disk"],
        tiers["miss"],
        tiers["coalesced"],
    )
    assert cache["hit_rate"] == pytest.approx(report.hit_rate, abs=1e-3)

    # MobileNetV2 knows no drawn grocery names: accuracy is computed over the non-null truth slots only.
    truth_slots = sum(s is not None for row in read_truth(footage.out / "truth.jsonl") for s in row.slots)
    summary = report.as_dict()
    assert summary["accuracy"]["slots_scored"] == truth_slots * FAN_OUT
    assert 0.0 <= summary["accuracy"]["value"] <= 1.0
    assert summary["fps"]["offered"] is None and summary["fps"]["achieved"] > 0
    assert summary["client_latency_ms"]["p50"] <= summary["client_latency_ms"]["p99"]
    assert "hit rate after warm-up" in report.table()

    # Agreement: each served label against a fresh inference on that exact crop, judged like `shelfsense bench`
    # on slots showing a product; bounded by the model's own stability (consecutive frames, same product).
    fresh, truth = _fresh_labels(footage, config), read_truth(footage.out / "truth.jsonl")
    product = [(f, s) for f, row in enumerate(truth) for s, t in enumerate(row.slots) if t is not None]
    stable = [
        fresh[f][s] == fresh[f - 1][s] for f, s in product if f > 0 and truth[f - 1].slots[s] == truth[f].slots[s]
    ]
    stability = sum(stable) / len(stable)
    for cid in ids:
        served = [r.labels for r in report.camera_records(cid)]
        agreement = sum(served[f][s] == fresh[f][s] for f, s in product) / len(product)
        print(f"{cid}: agreement {agreement:.3f}, model stability {stability:.3f}")
        # Measured (9 runs): stability 0.598, agreement 0.646-0.726 per camera. It moves with which crops the
        # background confirmations sample, which depends on timing; the bar is the model's stability.
        assert agreement >= stability, (cid, agreement, stability)


def _fresh_labels(footage: SynthResult, config: Config) -> list[tuple[str | None, ...]]:
    """Top-1 label of a fresh inference on every slot crop of every frame (camera 0's view: all cameras share it)."""
    from shelfsense.config import slot_boxes
    from shelfsense.footage import open_footage
    from shelfsense.recognition.runtime import Classifier
    from shelfsense.recognition.slots import crop

    classifier = Classifier(config.model.path, config.model.labels)
    camera = next(iter(config.cameras.values()))
    labels = []
    with open_footage(footage.out) as frames:
        for frame in frames:
            image = cv2.imdecode(np.frombuffer(frame.data, np.uint8), cv2.IMREAD_COLOR)
            boxes = slot_boxes(camera, image.shape[1], image.shape[0])
            labels.append(tuple(classifier.classify(np.ascontiguousarray(crop(image, b)))[0][0] for b in boxes))
    return labels


def colour_frames(folder: Path, colours: list[str]) -> None:
    """Textured frames whose dominant colour is known, as a folder of JPEGs named in order."""
    bgr = {"red": (30, 40, 220), "green": (40, 200, 50), "blue": (210, 60, 40)}
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i, name in enumerate(colours):
        image = np.full((120, 160, 3), bgr[name], np.uint8)
        cv2.rectangle(image, (20 + 7 * i, 30), (70 + 7 * i, 90), (128, 128, 128), -1)
        image = cv2.add(image, rng.integers(0, 20, image.shape, dtype=np.uint8))
        assert cv2.imwrite(str(folder / f"frame{i}.jpg"), image)


async def test_accuracy_against_known_truth_and_paced_sending(tmp_path: Path) -> None:
    colours = ["red", "green", "blue", "red", "blue", "green"]
    colour_frames(tmp_path / "rgb", colours)
    truth = [list(c) for c in ([c] for c in colours)]
    truth[2] = [None]  # occluded: not scored
    truth[4] = ["green"]  # the frame is blue: scored wrong
    write_truth(tmp_path / "truth.jsonl", [TruthRow("rgb", i, tuple(s)) for i, s in enumerate(truth)])
    async with serving(colour_config(tmp_path, {"rgb": {}})) as url:
        report = await replay(
            [tmp_path / "rgb"], url, camera="rgb", speed=4.0, fps=10.0, truth=tmp_path / "truth.jsonl", warmup=0
        )
    assert report.ok == 6 and report.errors == {}
    assert report.accuracy == pytest.approx(4 / 5)
    assert report.as_dict()["accuracy"] == {"value": 0.8, "slots_scored": 5, "correct": 4}
    # Frames are 0.1 s apart at 10 fps; at speed 4 frame i is due 0.025 * i s after the start, never sooner.
    for r in report.records:
        assert r.sent_s >= 0.025 * r.index - 0.005
    assert report.offered_fps == pytest.approx(40.0)


async def test_cli_replay_end_to_end_writes_report(tmp_path: Path, footage: SynthResult, capsys) -> None:
    config = colour_config(tmp_path, fanned_cameras(footage, 2))
    out = tmp_path / "report.json"
    async with serving(config) as url:
        args = ["replay", str(footage.out), "--url", url, "--cameras", "2", "--speed", "max", "--quiet"]
        args += ["--concurrency", "1", "--truth", str(footage.out / "truth.jsonl"), "--report", str(out)]
        code = await asyncio.to_thread(main, args)
        # The same footage as a camera the server does not know: every frame answered 404, exit status 1.
        bad = await asyncio.to_thread(main, ["replay", str(footage.out), "--url", url, "--speed", "max", "--quiet"])
        stats = await stats_of(url)
    assert code == 0 and bad == 1
    report = json.loads(out.read_text())
    assert report["frames"] == {"sent": 2 * FRAMES, "ok": 2 * FRAMES, "failed": 0}
    assert report["errors"] == {} and report["concurrency"] == 1
    assert set(report["per_camera"]) == {"cam-0-0", "cam-0-1"}
    assert all(c["in_order"] and c["ok"] == FRAMES for c in report["per_camera"].values())
    assert report["slots"]["total"] == 2 * FRAMES * ROWS * COLS == stats["cache"]["slot_results"]
    assert 0.0 <= report["accuracy"]["value"] <= 1.0
    assert stats["errors"]["unknown_camera"] == FRAMES
    printed = capsys.readouterr().out
    assert "frames sent / ok" in printed and f"{2 * FRAMES} / {2 * FRAMES}" in printed
    # The count says how many were refused, the server's own detail why.
    assert f"404: {FRAMES} (Camera 'cam-0' is not configured" in printed


async def test_unreachable_server_counts_connection_errors(tmp_path: Path, footage: SynthResult) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report = await replay([footage.out], f"http://127.0.0.1:{port}", speed=None)
    assert report.sent == FRAMES and report.ok == 0 and report.errors == {"connect": FRAMES}
    assert report.hit_rate is None and "connect: 40" in report.table()


async def test_url_without_scheme_is_refused_before_anything_is_sent(footage: SynthResult, capsys) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ValueError, match="--url must be an http"):
        await replay([footage.out], address, speed=None)
    code = await asyncio.to_thread(main, ["replay", str(footage.out), "--url", address, "--speed", "max", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"--url must be an http:// or https:// URL, got '{address}'" in err
