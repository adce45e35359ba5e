"""Hostile and broken clients against a real server on a real socket (docs/reliability.md): every refusal is a fast
JSON answer, counted, and nothing a client does stops a well-behaved camera."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest
from conftest import FIXTURE_MODELS, jpeg, tile

from shelfsense.config import Config, parse_config
from shelfsense.service.app import create_app
from shelfsense.service.server import serve

RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(tmp_path: Path, *, server: dict | None = None, model: dict | None = None, cameras: dict | None = None):
    return parse_config(
        {
            "server": {"host": "127.0.0.1", "port": _port(), **(server or {})},
            "model": {
                "path": str(FIXTURE_MODELS / "colour_u8_128.tflite"),
                "labels": str(FIXTURE_MODELS / "colour_u8_128_labels.txt"),
                "threads": 1,
                **(model or {}),
            },
            "cache": {"disk_path": str(tmp_path / "cache")},
            "telemetry": {"sysfs_root": str(tmp_path / "no-sysfs"), "vcgencmd": str(tmp_path / "no-vcgencmd")},
            "cameras": cameras
            if cameras is not None
            else {"cam": {"grid": {"rows": 1, "cols": 2}}, "sized": {"width": 64, "height": 48}},
        },
        base_dir=tmp_path,
    )


@asynccontextmanager
async def live(config: Config, extra_routes=()) -> AsyncIterator[str]:
    app = create_app(config)
    for method, path, handler in extra_routes:
        app.router.add_route(method, path, handler)
    runner = await serve(app, config)
    try:
        yield f"http://127.0.0.1:{config.server.port}"
    finally:
        await runner.cleanup()


def _frame(colours=(RED, GREEN), size=(48, 64)) -> bytes:
    cells = [np.full((*size, 3), c, np.uint8) for c in colours]
    return jpeg(tile(cells, 1, len(cells), cell=(size[1], size[0])))


async def _post(session: aiohttp.ClientSession, url: str, camera: str, body: bytes, ctype="image/jpeg"):
    async with session.post(f"{url}/v1/frames/{camera}", data=body, headers={"Content-Type": ctype}) as r:
        return r.status, await r.json(), r.headers


async def _stats(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(f"{url}/v1/stats") as r:
        return await r.json()


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF header says it is `width` x `height`: a decompression bomb."""
    data = bytearray(jpeg(np.zeros((16, 16, 3), np.uint8)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _png_claiming(width: int, height: int) -> bytes:
    data = bytearray(cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    data[16:24] = struct.pack(">II", width, height)
    return bytes(data)


async def test_bombs_are_refused_from_their_header(tmp_path: Path) -> None:
    async with live(_config(tmp_path)) as url, aiohttp.ClientSession() as session:
        for body, ctype in ((_jpeg_claiming(30000, 30000), "image/jpeg"), (_png_claiming(32768, 32768), "image/png")):
            status, answer, _ = await _post(session, url, "cam", body, ctype)
            assert status == 400 and "server.max_frame_pixels" in answer["detail"], answer
        stats = await _stats(session, url)
    assert stats["errors"]["bad_image"] == 2 and stats["frames"] == 0


async def test_other_image_formats_are_415_naming_the_format(tmp_path: Path) -> None:
    picture = np.full((48, 64, 3), 90, np.uint8)
    bodies = {
        "BMP": cv2.imencode(".bmp", picture)[1].tobytes(),
        "TIFF": cv2.imencode(".tiff", picture)[1].tobytes(),
        "WebP": cv2.imencode(".webp", picture)[1].tobytes(),
        "GIF": b"GIF89a" + bytes(64),
        "Netpbm": cv2.imencode(".ppm", picture)[1].tobytes(),
    }
    async with live(_config(tmp_path)) as url, aiohttp.ClientSession() as session:
        for name, body in bodies.items():
            status, answer, _ = await _post(session, url, "cam", body)  # sent as image/jpeg all the same
            assert status == 415 and name in answer["detail"], (name, answer)
        status, answer, _ = await _post(session, url, "cam", b"not an image at all")
        assert status == 400 and answer["error"] == "bad_image"


async def test_corrupt_jpeg_is_refused_not_classified_or_cached(tmp_path: Path) -> None:
    # a textured frame, as cameras send: its scan data fills most of the file
    noise = np.random.default_rng(1).integers(0, 255, (48, 128, 3), dtype=np.uint8)
    good = jpeg(cv2.GaussianBlur(noise, (5, 5), 0))
    broken = bytearray(good)
    broken[len(good) // 3 : len(good) // 2] = bytes(len(good) // 2 - len(good) // 3)
    async with live(_config(tmp_path)) as url, aiohttp.ClientSession() as session:
        for body in (bytes(broken), good[: len(good) * 2 // 3]):
            status, answer, _ = await _post(session, url, "cam", body)
            assert status == 400 and "not a decodable JPEG" in answer["detail"], answer
        stats = await _stats(session, url)
        assert stats["cache"]["entries_memory"] == 0 and stats["frames"] == 0
        status, answer, _ = await _post(session, url, "cam", _frame())
        assert status == 200 and [s["label"] for s in answer["slots"]] == ["red", "green"]


async def test_corrupt_data_is_refused_where_a_reduced_decode_would_answer(tmp_path: Path) -> None:
    """A fixed camera's frame whose slots all keep their keys is decoded at a reduced size only (its 320x240 slots
    at half size, pictures.picture_reduction): corrupt data must be refused there too, not answered from the
    cache that the previous good frames filled."""
    noise = np.random.default_rng(2).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    good = jpeg(cv2.GaussianBlur(noise, (9, 9), 0), 90)
    broken = bytearray(good)
    broken[len(good) // 3 : len(good) // 2] = bytes(len(good) // 2 - len(good) // 3)
    config = _config(tmp_path, cameras={"big": {"grid": {"rows": 2, "cols": 2}}})
    async with live(config) as url, aiohttp.ClientSession() as session:
        for first in (True, False):
            status, answer, _ = await _post(session, url, "big", good)
            tiers = {s["cache"] for s in answer["slots"]}
            assert status == 200 and ("memory" not in tiers if first else tiers == {"memory"}), answer
        for body in (bytes(broken), good[: len(good) * 2 // 3]):
            status, answer, _ = await _post(session, url, "big", body)
            assert status == 400 and "not a decodable JPEG" in answer["detail"], answer
        assert (await _stats(session, url))["frames"] == 2


async def test_a_frame_of_another_size_than_declared_is_400(tmp_path: Path) -> None:
    async with live(_config(tmp_path)) as url, aiohttp.ClientSession() as session:
        status, answer, _ = await _post(session, url, "sized", _frame(size=(96, 96)))
        assert status == 400 and "configured for 64x48" in answer["detail"]
        status, _, _ = await _post(session, url, "sized", jpeg(np.full((48, 64, 3), RED, np.uint8)))
        assert status == 200


async def _raw(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = int(url.rsplit(":", 1)[1])
    return await asyncio.open_connection("127.0.0.1", port)


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status = int(head.split()[1])
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    return status, json.loads(await reader.readexactly(length))


async def test_slow_body_clients_do_not_lock_out_a_camera(tmp_path: Path) -> None:
    config = _config(tmp_path, server={"body_timeout_s": 3.0})
    async with live(config) as url, aiohttp.ClientSession() as session:
        slow = [await _raw(url) for _ in range(32)]
        for _, writer in slow:
            writer.write(b"POST /v1/frames/cam HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n")
            writer.write(b"Content-Length: 100000\r\n\r\n" + b"\xff\xd8\xff" + bytes(13))
            await writer.drain()
        await asyncio.sleep(0.3)  # every slow client is inside the frame handler, reading its body
        statuses = [(await _post(session, url, "cam", _frame()))[0] for _ in range(10)]
        assert statuses == [200] * 10
        # the slow bodies end with a JSON 408 once server.body_timeout_s has passed
        status, answer = await _response(slow[0][0])
        assert status == 408 and answer["error"] == "request_timeout"
        for _, writer in slow:
            writer.close()
        stats = await _stats(session, url)
    assert stats["errors"]["request_timeout"] >= 1


async def test_connections_past_the_cap_get_a_json_503(tmp_path: Path) -> None:
    async with live(_config(tmp_path, server={"max_connections": 4})) as url:
        held = [await _raw(url) for _ in range(4)]
        reader, writer = await _raw(url)
        status, answer = await _response(reader)
        assert status == 503 and answer["error"] == "too_many_connections"
        for _, w in [*held, (reader, writer)]:
            w.close()
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as session:
            assert (await _post(session, url, "cam", _frame()))[0] == 200  # room again once they are gone


async def test_connections_that_never_finish_their_headers_are_closed(tmp_path: Path) -> None:
    async with live(_config(tmp_path, server={"keepalive_timeout_s": 0.5})) as url:
        idle = await _raw(url)
        slow = await _raw(url)
        slow[1].write(b"POST /v1/frames/cam HTTP/1.1\r\nHost: x\r\n")  # and no more
        for reader, _ in (idle, slow):
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server


async def test_unparseable_requests_get_json_counted_and_no_token_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with live(_config(tmp_path)) as url:
        for raw in (
            b"GET /v1/stats?token=SECRET123 HTTP/1.1\r\nthis header has no colon\r\n\r\n",
            b"GET /v1/stats?token=SECRET123&x=" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n",
            b"GET /v1/stats?token=SECRET123 HTTP/1.1\r\nAuthorization: Bearer SECRET123\x01\r\n\r\n",
        ):
            reader, writer = await _raw(url)
            writer.write(raw)
            status, answer = await _response(reader)
            assert 400 <= status < 500 and answer["error"] and answer["detail"], answer
            assert "SECRET123" not in json.dumps(answer)
            writer.close()
        async with aiohttp.ClientSession() as session:
            stats = await _stats(session, url)
    assert sum(stats["errors"].values()) >= 3
    assert "SECRET123" not in caplog.text


async def test_a_client_that_disconnects_mid_body_is_counted(tmp_path: Path) -> None:
    async with live(_config(tmp_path)) as url:
        reader, writer = await _raw(url)
        writer.write(b"POST /v1/frames/cam HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n")
        writer.write(b"Content-Length: 10000\r\n\r\n" + bytes(100))
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await asyncio.sleep(0.3)
        async with aiohttp.ClientSession() as session:
            stats = await _stats(session, url)
            assert (await _post(session, url, "cam", _frame()))[0] == 200
    assert stats["errors"].get("client_disconnected") == 1


async def test_overload_is_refused_per_frame_before_decoding(tmp_path: Path) -> None:
    """With room for one 8-slot frame at a time, a burst gets fast 503s; every admitted frame completes."""
    config = _config(
        tmp_path,
        model={"queue_size": 10},  # 10 - 1 thread = room for 9 slots
        cameras={"shelf": {"grid": {"rows": 2, "cols": 4}}},
    )
    rng = np.random.default_rng(0)
    frames = [jpeg(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)) for _ in range(30)]
    async with live(config) as url, aiohttp.ClientSession() as session:
        answers = await asyncio.gather(*(_post(session, url, "shelf", f) for f in frames))
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    for status, answer, headers in answers:
        if status == 503:
            assert headers["Retry-After"] and "slots" in answer["detail"] or "frame" in answer["detail"]
        else:
            assert len(answer["slots"]) == 8


async def test_unknown_cameras_are_bounded(tmp_path: Path) -> None:
    config = _config(tmp_path, server={"allow_unknown_cameras": True, "max_cameras": 3}, cameras={})
    async with live(config) as url, aiohttp.ClientSession() as session:
        for i in range(10):
            assert (await _post(session, url, f"cam{i}", _frame()))[0] == 200
        stats = await _stats(session, url)
        async with session.get(f"{url}/metrics") as r:
            metrics = await r.text()
    assert sorted(stats["cameras"]) == ["cam7", "cam8", "cam9"]
    assert metrics.count("shelfsense_frames_total{") == 3


async def test_small_leaks_are_closed(tmp_path: Path) -> None:
    config = _config(tmp_path, cameras={"cam": {"token": "right"}, "secret-camera-name": {}})
    async with live(config) as url, aiohttp.ClientSession() as session:
        status, answer, _ = await _post(session, url, "cam%0A", _frame())
        assert status == 400  # a trailing newline is not part of a valid id
        status, answer, _ = await _post(session, url, "nope", _frame())
        assert status == 404 and "secret-camera-name" not in answer["detail"]
        headers = {"Content-Type": "image/jpeg", "Authorization": "Bearer r\u00e9ght"}
        async with session.post(f"{url}/v1/frames/cam", data=_frame(), headers=headers) as r:
            assert r.status == 403 and (await r.json())["error"] == "forbidden"
        headers = {"Content-Type": "multipart/form-data", "Authorization": "Bearer right"}
        async with session.post(f"{url}/v1/frames/cam", data=b"--x\r\n", headers=headers) as r:
            assert r.status == 400 and "multipart" in (await r.json())["detail"]


async def test_an_unexpected_exception_is_a_json_500_with_an_error_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: aiohttp.web.Request) -> aiohttp.web.Response:
        raise RuntimeError("something nobody planned for")

    async with live(_config(tmp_path), [("GET", "/v1/broken", broken)]) as url, aiohttp.ClientSession() as session:
        async with session.get(f"{url}/v1/broken") as r:
            assert r.status == 500 and r.content_type == "application/json"
            answer = await r.json()
        stats = await _stats(session, url)
    assert answer["error"] == "internal_error" and answer["error_id"] in caplog.text
    assert stats["errors"]["internal_RuntimeError"] == 1
