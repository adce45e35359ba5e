from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# SHELFSENSE_SHARED names another copy (or none, to see what skips without it)
SHARED = Path(os.environ.get("SHELFSENSE_SHARED") or ROOT.parent / "shared")


def require_shared(*parts: str) -> Path:
    """Path inside ../shared; skip (or fail under SHELFSENSE_REQUIRE_SHARED=1) when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = f"{path} is absent: these tests need the shared data beside the repository"
        if os.environ.get("SHELFSENSE_REQUIRE_SHARED") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def mobilenet_v2(shared_dir: Path) -> Path:
    return require_shared("models", "mobilenet_v2_1.0_224_quant.tflite")


@pytest.fixture(scope="session")
def imagenet_labels(shared_dir: Path) -> Path:
    return require_shared("models", "imagenet_labels.txt")


@pytest.fixture(scope="session")
def grocery_dir(shared_dir: Path) -> Path:
    return require_shared("datasets", "grocery-store")


def grocery_photos(grocery_dir: Path, split: str = "val", step: int = 1) -> list[tuple[Path, str]]:
    """(path, fine class name) of a split's photos, every `step`-th line of <split>.txt, in file order."""
    rows = []
    for line in (grocery_dir / f"{split}.txt").read_text().splitlines()[::step]:
        rel = line.split(",")[0].strip()
        rows.append((grocery_dir / rel, Path(rel).parent.name))
    return rows


def tile(crops: list, rows: int, cols: int, cell: tuple[int, int] = (160, 240)):
    """A rows x cols shelf frame (BGR) with each crop resized into its cell: what a grid camera sees."""
    import cv2
    import numpy as np

    w, h = cell
    frame = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, c in enumerate(crops):
        r, col = divmod(i, cols)
        frame[r * h : (r + 1) * h, col * w : (col + 1) * w] = cv2.resize(c, (w, h), interpolation=cv2.INTER_AREA)
    return frame


def jpeg(frame, quality: int = 90) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def config_factory(model: dict, tmp_path: Path):
    """Config factory with a fresh disk cache under tmp_path; overrides by section."""
    from shelfsense.config import parse_config

    def make(**sections: dict) -> object:
        data: dict = {
            "model": {**model, "threads": 2},
            "cache": {"disk_path": str(tmp_path / "cache")},
            "telemetry": {"sysfs_root": str(tmp_path / "no-sysfs"), "vcgencmd": str(tmp_path / "no-vcgencmd")},
            "cameras": {"shelf": {"grid": {"rows": 2, "cols": 4}}, "one": {}},
        }
        for name, values in sections.items():
            if name == "cameras":
                data["cameras"] = values
            else:
                data.setdefault(name, {}).update(values)
        return parse_config(data, base_dir=tmp_path)

    return make


@pytest.fixture
def make_config(mobilenet_v2: Path, imagenet_labels: Path, tmp_path: Path):
    """Config factory on the shared MobileNetV2 (tests that assert what ImageNet says of real photos)."""
    return config_factory({"path": str(mobilenet_v2), "labels": str(imagenet_labels)}, tmp_path)


@pytest.fixture
def own_config(tmp_path: Path):
    """Config factory on the project's own bundled model: tests that only need a real classifier, no shared data."""
    from shelfsense.locations import BUNDLED_MODEL

    return config_factory({"path": str(BUNDLED_MODEL)}, tmp_path)


FIXTURE_MODELS = Path(__file__).parent / "fixtures" / "models"


def colour_config(tmp_path: Path, cameras: dict, **server: object):
    """Config on the tiny fixture classifier (red/green/blue by dominant colour): real inference that loads in
    milliseconds and needs no shared data."""
    from shelfsense.config import parse_config

    return parse_config(
        {
            "model": {
                "path": str(FIXTURE_MODELS / "colour_u8_128.tflite"),
                "labels": str(FIXTURE_MODELS / "colour_u8_128_labels.txt"),
                "threads": 1,
            },
            "cache": {"disk_path": str(tmp_path / "cache")},
            "telemetry": {"sysfs_root": str(tmp_path / "no-sysfs"), "vcgencmd": str(tmp_path / "no-vcgencmd")},
            "server": dict(server),
            "cameras": cameras,
        },
        base_dir=tmp_path,
    )


async def wait_ready(url: str, proc, status: int = 200, tries: int = 300, log: Path | None = None) -> dict:
    """Poll `url`/readyz until it answers `status` (0.1 s apart); fail with the server's output if it exits."""
    import asyncio

    import aiohttp

    def output() -> str:
        if log is not None:
            return log.read_text(errors="replace")[-3000:]
        return proc.stderr.read().decode() if proc.stderr else "server exited"

    async with aiohttp.ClientSession() as session:
        for _ in range(tries):
            assert proc.poll() is None, output()
            try:
                async with session.get(url + "/readyz") as r:
                    if r.status == status:
                        return await r.json()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"the server never became ready: {output() if log is not None else ''}")
