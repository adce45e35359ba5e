"""Training code path end to end: real weights of both backbones, few images, tiny input, one epoch, the fused
INT8 export, LiteRT."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, require_shared

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None,
    reason="tensorflow is not importable: install the train extra (pip install -e '.[train]') to run this test",
)


def test_smoke_training_exports_a_full_integer_model(grocery_dir: Path, tmp_path: Path) -> None:
    backbone = require_shared("models", "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite")
    backbone_v2 = require_shared("models", "mobilenet_v2_1.0_224_quant.tflite")
    out = tmp_path / "models"
    # A subprocess: TensorFlow's import-time warnings must not meet pytest's filterwarnings=error.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "shelfsense.training",
            "--smoke",
            "--quiet",
            "--data",
            str(grocery_dir),
            "--backbone",
            str(backbone),
            "--backbone-v2",
            str(backbone_v2),
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "cache"),
            "--threads",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "grocery_coarse_labels.txt",
        "grocery_int8.tflite",
        "grocery_labels.txt",
    ]

    with (grocery_dir / "classes.csv").open(newline="") as f:
        rows = sorted((int(r[1]), r[0], r[2]) for r in list(csv.reader(f))[1:])
    fine = (out / "grocery_labels.txt").read_text().splitlines()
    coarse = (out / "grocery_coarse_labels.txt").read_text().splitlines()
    assert fine == [name for _, name, _ in rows]
    assert coarse == [name for _, _, name in rows]

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(out / "grocery_int8.tflite"), num_threads=1)
    it.allocate_tensors()
    inp, outp = it.get_input_details()[0], it.get_output_details()[0]
    assert inp["dtype"] == np.uint8 and list(inp["shape"]) == [1, 32, 32, 3]
    assert outp["dtype"] == np.int8 and int(np.prod(outp["shape"])) == len(fine)
    # Full integer: no float tensor anywhere, so nothing falls back to float kernels on the Pi.
    assert [d["name"] for d in it.get_tensor_details() if d["dtype"] == np.float32] == []

    rel = (grocery_dir / "val.txt").read_text().splitlines()[0].split(",")[0].strip()
    img = cv2.cvtColor(cv2.imread(str(grocery_dir / rel)), cv2.COLOR_BGR2RGB)
    it.set_tensor(inp["index"], cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA)[None])
    it.invoke()
    scores = it.get_tensor(outp["index"]).reshape(-1)
    assert scores.shape == (len(fine),)
