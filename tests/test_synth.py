from __future__ import annotations

import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from shelfsense.cli.main import main
from shelfsense.config import parse_config
from shelfsense.footage import open_footage, read_truth
from shelfsense.synth.synth import TINY_PRODUCTS, SynthResult, synthesize

SMALL = {"size": (320, 240), "rows": 2, "cols": 4}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    out = tmp_path_factory.mktemp("tiny") / "footage"
    return synthesize(None, out, frames=120, seed=7, progress=False, **SMALL)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def decoded(result: SynthResult) -> list[np.ndarray]:
    with open_footage(result.out) as footage:
        return [cv2.imdecode(np.frombuffer(f.data, np.uint8), cv2.IMREAD_COLOR) for f in footage]


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    return image[y : y + h, x : x + w].astype(np.float32)


def test_tiny_mode_is_deterministic_per_seed(tmp_path: Path) -> None:
    args = {"frames": 12, "progress": False, **SMALL}
    first = synthesize(None, tmp_path / "a", seed=3, **args)
    synthesize(None, tmp_path / "b", seed=3, **args)
    synthesize(None, tmp_path / "c", seed=4, **args)
    a, b, c = (files_of(tmp_path / name) for name in "abc")
    assert len([name for name in a if name.endswith(".jpg")]) == 12
    assert a == b
    frames_a = [data for name, data in a.items() if name.endswith(".jpg")]
    frames_c = [data for name, data in c.items() if name.endswith(".jpg")]
    assert len(frames_c) == 12
    assert all(x != y for x, y in zip(frames_a, frames_c, strict=True))
    assert first.classes == tuple(TINY_PRODUCTS)


def test_camera_toml_parses_and_slots_lie_inside_the_frame(tiny: SynthResult) -> None:
    config = tomllib.loads((tiny.out / "camera.toml").read_text())
    slots = config["cameras"]["cam-0"]["slots"]
    assert len(slots) == 8
    assert [tuple(s) for s in slots] == list(tiny.slots)
    w, h = tiny.size
    for x, y, sw, sh in slots:
        assert x >= 0 and y >= 0 and sw > 0 and sh > 0
        assert x + sw <= w and y + sh <= h
    # The lead's config parser takes the section as is and checks the boxes against the frame size.
    parsed = parse_config(config).cameras["cam-0"]
    assert (parsed.width, parsed.height) == tiny.size
    assert parsed.slots == tiny.slots
    # Slots do not overlap.
    for i, (x1, y1, w1, h1) in enumerate(slots):
        for x2, y2, w2, h2 in slots[i + 1 :]:
            assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1


def test_recording_and_truth_line_up(tiny: SynthResult) -> None:
    truth = read_truth(tiny.out / "truth.jsonl")
    assert [row.frame for row in truth] == list(range(120))
    assert all(row.camera == "cam-0" and len(row.slots) == 8 for row in truth)
    assert [row.slots for row in truth] == list(tiny.truth)
    names = {name for row in truth for name in row.slots if name is not None}
    assert names <= set(TINY_PRODUCTS) and len(names) >= 2
    with open_footage(tiny.out) as footage:
        frames = list(footage)
        assert footage.cameras == ["cam-0"]
    assert len(frames) == 120
    assert [f.t for f in frames] == [i / 2.0 for i in range(120)]
    image = cv2.imdecode(np.frombuffer(frames[0].data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (240, 320, 3)


def test_facings_repeat_on_the_shelf(tiny: SynthResult) -> None:
    first = tiny.truth[0]
    assert len(set(first)) < len(first)


def test_same_product_in_same_slot_looks_nearly_the_same_across_frames(tiny: SynthResult) -> None:
    images = decoded(tiny)
    steady, changed = [], []
    for s, box in enumerate(tiny.slots):
        # Compare each arm-free view of the slot with the previous arm-free view.
        clear = [f for f in range(len(images)) if not tiny.coverage[f][s]]
        for f0, f1 in zip(clear, clear[1:], strict=False):
            diff = float(np.abs(crop(images[f1], box) - crop(images[f0], box)).mean())
            (steady if tiny.truth[f1][s] == tiny.truth[f0][s] else changed).append(diff)
    assert steady and changed
    # Noise, drift, shake and JPEG move a steady slot by a few levels; a take or restock by far more.
    assert np.median(steady) < 6
    assert min(changed) > max(steady)


def test_products_are_taken_and_restocked(tiny: SynthResult) -> None:
    assert tiny.takes >= 1 and tiny.restocks >= 1
    empty = [
        [name is None and tiny.coverage[f][s] <= 0.3 for s, name in enumerate(row)] for f, row in enumerate(tiny.truth)
    ]
    taken = [(f, s) for f in range(1, 120) for s in range(8) if tiny.truth[f - 1][s] and empty[f][s]]
    restocked = [(f, s) for f in range(1, 120) for s in range(8) if empty[f - 1][s] and tiny.truth[f][s]]
    assert taken and restocked
    # An empty slot shows the shelf back, not a product: compare arm-free views around a take.
    images = decoded(tiny)
    pairs = []
    for f, s in taken:
        before = [g for g in range(f) if tiny.truth[g][s] and not tiny.coverage[g][s]]
        after = [g for g in range(f, 120) if empty[g][s] and not tiny.coverage[g][s]]
        if before and after:
            pairs.append((before[-1], after[0], tiny.slots[s]))
    assert pairs
    for g0, g1, box in pairs:
        assert float(np.abs(crop(images[g1], box) - crop(images[g0], box)).mean()) > 15


def test_arms_hide_slots_and_make_them_null(tiny: SynthResult) -> None:
    assert tiny.arms >= 2
    occluded = [(f, s) for f, row in enumerate(tiny.coverage) for s, c in enumerate(row) if c > 0.3]
    assert occluded
    assert all(tiny.truth[f][s] is None for f, s in occluded)
    # Truth is only withheld for real reasons: empty or covered.
    images = decoded(tiny)
    f, s = occluded[0]
    clear = next(g for g in range(f - 1, -1, -1) if not any(tiny.coverage[g]))
    box = tiny.slots[s]
    assert float(np.abs(crop(images[f], box) - crop(images[clear], box)).mean()) > 10


def test_photo_mode_uses_folder_names_as_classes(grocery_dir: Path, tmp_path: Path) -> None:
    apples = grocery_dir / "val" / "Fruit" / "Apple"
    expected = {p.name for p in apples.iterdir() if p.is_dir()}
    result = synthesize(apples, tmp_path / "out", frames=8, seed=1, progress=False, **SMALL)
    assert set(result.classes) <= expected and len(result.classes) >= 2
    truth = read_truth(tmp_path / "out" / "truth.jsonl")
    assert len(truth) == 8
    assert {n for row in truth for n in row.slots if n} <= expected
    images = decoded(result)
    # A photo facing is textured, unlike the flat shelf back of an empty slot.
    for s, name in enumerate(result.truth[0]):
        if name is not None:
            assert crop(images[0], result.slots[s]).std() > 15


def test_out_folder_must_be_empty_unless_forced(tmp_path: Path) -> None:
    synthesize(None, tmp_path / "out", frames=2, progress=False, **SMALL)
    with pytest.raises(FileExistsError, match="out"):
        synthesize(None, tmp_path / "out", frames=2, progress=False, **SMALL)
    synthesize(None, tmp_path / "out", frames=3, progress=False, overwrite=True, **SMALL)
    assert len(read_truth(tmp_path / "out" / "truth.jsonl")) == 3
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="mine.txt"):
        synthesize(None, tmp_path / "out", frames=2, progress=False, overwrite=True, **SMALL)
    assert (tmp_path / "out" / "mine.txt").exists()


def cli(argv: list[str]) -> int:
    return main(argv)


def test_cli_footage_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = ["footage", "synth", "--tiny", "--out", str(out)]
    argv += ["--frames", "5", "--slots", "1x3", "--size", "240x160"]
    argv += ["--seed", "2", "--camera", "aisle-4", "--quiet"]
    assert cli(argv) == 0
    config = tomllib.loads((out / "camera.toml").read_text())
    assert len(config["cameras"]["aisle-4"]["slots"]) == 3
    assert len(open_footage(out)) == 5
    assert cli(argv) == 2  # not empty any more
    assert str(out) in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["footage", "synth", "--tiny", "--products", str(tmp_path), "--out", str(out)])
    with pytest.raises(SystemExit):
        cli(["footage", "synth", "--tiny", "--out", str(out), "--slots", "2by4"])
