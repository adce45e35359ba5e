"""`shelfsense model inspect|eval` and `shelfsense classify` from the shell, on real models."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from shelfsense.cli.main import main
from shelfsense.locations import BUNDLED_MODEL
from shelfsense.recognition.runtime import Classifier, file_sha256
from shelfsense.tools.modeltools import inspect_model

FIXTURES = Path(__file__).parent / "fixtures" / "models"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shelfsense.cli", *args], capture_output=True, text=True, timeout=300)


def test_inspect_shared_mobilenet(mobilenet_v2: Path, imagenet_labels: Path, capsys) -> None:
    assert main(["model", "inspect", str(mobilenet_v2), "--labels", str(imagenet_labels), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["input"] == {"shape": [1, 224, 224, 3], "dtype": "uint8", "scale": 0.0078125, "zero_point": 128}
    assert info["output"]["shape"] == [1, 1001] and info["output"]["dtype"] == "uint8"
    assert info["labels"] == 1001 and info["first_labels"][:2] == ["background", "tench, Tinca tinca"]
    assert info["sha256"] == file_sha256(mobilenet_v2) and info["ops"] > 50
    assert info["size_bytes"] == mobilenet_v2.stat().st_size


def test_inspect_text_on_int8_model() -> None:
    out = run("model", "inspect", str(FIXTURES / "colour_i8_48x64.tflite"))
    assert out.returncode == 0, out.stderr
    assert "[1, 48, 64, 3] int8" in out.stdout and "labels   3 (first: red; green; blue)" in out.stdout


def test_classify_from_the_shell(shared_dir: Path, mobilenet_v2: Path, imagenet_labels: Path) -> None:
    images = shared_dir / "images"
    out = run(
        "classify", str(mobilenet_v2), "--labels", str(imagenet_labels),
        str(images / "hot_dog.jpg"), str(images / "missvickie_potato_chips.bmp"), "--top-k", "2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith(f"{images / 'hot_dog.jpg'}: hotdog, hot dog, red hot (0.")
    assert lines[1].startswith(f"{images / 'missvickie_potato_chips.bmp'}: packet (0.")
    assert lines[0].count("(") == 2


def test_classify_unreadable_image_fails_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    out = run("classify", str(FIXTURES / "colour_u8_128.tflite"), str(bad))
    assert out.returncode == 1 and "not a readable image" in out.stderr
    missing = run("classify", str(FIXTURES / "colour_u8_128.tflite"), str(tmp_path / "nope.jpg"))
    assert missing.returncode == 1 and "nope.jpg: no such file" in missing.stderr and "WARN" not in missing.stderr


def test_classify_refuses_top_k_zero(tmp_path: Path) -> None:
    out = run("classify", str(FIXTURES / "colour_u8_128.tflite"), "x.jpg", "--top-k", "0")
    assert out.returncode == 2 and "--top-k: must be 1 or more, got 0" in out.stderr


def test_missing_model_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    out = run("model", "inspect", str(tmp_path / "nope.tflite"))
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_eval_on_class_folders_with_a_known_answer(tmp_path: Path, capsys) -> None:
    """A folder of class folders; the colour model's answers are known, so top-1 is too."""
    import cv2
    import numpy as np

    colours = {"red": (30, 30, 220), "green": (40, 200, 40), "blue": (210, 60, 20)}
    for name, bgr in colours.items():
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(tmp_path / "data" / name / f"{i}.png"), np.full((40, 40, 3), bgr, np.uint8))
    # one mislabelled photo: a blue image filed under red
    cv2.imwrite(str(tmp_path / "data" / "red" / "wrong.png"), np.full((40, 40, 3), colours["blue"], np.uint8))
    code = main(["model", "eval", str(FIXTURES / "colour_u8_128.tflite"), "--data", str(tmp_path / "data"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["images"] == 10 and report["split"] == "all class folders"
    assert report["top1"] == 0.9 and report["top5"] == 1.0
    assert report["worst_classes"][0] == {"label": "red", "correct": 3, "total": 4}


def test_eval_grocery_layout_on_shared_mobilenet(grocery_dir: Path, mobilenet_v2: Path, imagenet_labels: Path) -> None:
    """The shared MobileNetV2 knows ImageNet, not grocery names: the tool still runs and says so in numbers."""
    out = run(
        "model", "eval", str(mobilenet_v2), "--labels", str(imagenet_labels), "--data", str(grocery_dir), "--json",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["images"] == 296 and report["split"] == "val"
    assert report["top1"] == 0.0 and report["coarse_top1"] is None
    # 0 % because no grocery class name is an ImageNet label, and the report says so.
    val_classes = {line.split(",")[1] for line in (grocery_dir / "val.txt").read_text().splitlines() if line.strip()}
    assert report["classes_in_model_labels"] == 0 and report["classes"] == len(val_classes)


def test_eval_refuses_a_split_the_dataset_does_not_have(grocery_dir: Path) -> None:
    """A misspelt split used to score every image under --data, train images included (94 %)."""
    out = run("model", "eval", str(FIXTURES / "colour_u8_128.tflite"), "--data", str(grocery_dir), "--split", "test")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "No split 'test'" in out.stderr and "it has: train, val" in out.stderr


def _card_figure(row: str) -> float:
    """A bold percentage from the model card's accuracy table, e.g. the row starting '| fine (81) |'."""
    card = (BUNDLED_MODEL.parent / "README.md").read_text()
    line = next(line for line in card.splitlines() if line.startswith(row))
    return float(re.search(r"\*\*([0-9.]+)%\*\*", line).group(1))


def test_bundled_model_is_committed_with_labels_and_card() -> None:
    info = inspect_model(BUNDLED_MODEL)
    assert info["labels"] == 81 and info["output"]["shape"] == [1, 81]
    assert info["input"]["dtype"] in ("uint8", "int8") and info["output"]["dtype"] in ("uint8", "int8")
    assert info["size_bytes"] <= 6_000_000  # issue 11: at most 6 MB, so that it fits a Pi comfortably
    coarse = (BUNDLED_MODEL.parent / "grocery_coarse_labels.txt").read_text().splitlines()
    assert len(coarse) == 81 and len(set(coarse)) == 43


@pytest.mark.pi
def test_bundled_model_classifies_val_photos(grocery_dir: Path) -> None:
    """Rule: the first val photo of every class. The model card says ~45 % top-1, so well above chance (1.2 %)."""
    from conftest import grocery_photos

    c = Classifier(BUNDLED_MODEL, top_k=5)
    firsts: dict[str, Path] = {}
    for path, label in grocery_photos(grocery_dir, "val"):
        firsts.setdefault(label, path)
    predictions = {label: c.classify(cv2.imread(str(path))) for label, path in firsts.items()}
    top1 = sum(p[0][0] == label for label, p in predictions.items())
    top5 = sum(label in {name for name, _ in p} for label, p in predictions.items())
    assert len(predictions) == len({label for _, label in grocery_photos(grocery_dir, "val")})
    print(f"first val photo per class: top-1 {top1}/{len(predictions)}, top-5 {top5}/{len(predictions)}")
    assert top1 >= 0.3 * len(predictions) and top5 >= 0.55 * len(predictions), (top1, top5)


def test_eval_of_bundled_model_matches_its_card(grocery_dir: Path) -> None:
    out = run("model", "eval", str(BUNDLED_MODEL), "--data", str(grocery_dir), "--json", "--quiet")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["images"] == 296
    assert round(report["top1"] * 100, 1) == _card_figure("| fine (81) |")
    assert round(report["coarse_top1"] * 100, 1) == _card_figure("| coarse (43")
