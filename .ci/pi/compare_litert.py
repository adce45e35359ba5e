"""Top-1 answers and invoke time of one TFLite runtime on the test models, for comparing runtimes line by line.

    python .ci/pi/compare_litert.py SHARED_DIR [--runtime litert|tflite-runtime]

Prints `answer ...` lines (model, input, top-1 label: equal across runtimes when they agree) and `time ...` lines
(ms per invoke, one interpreter thread). Needs only numpy, opencv and the runtime, not the shelfsense package.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.metadata
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def top1(interpreter, image_bgr: np.ndarray) -> tuple[int, float]:
    """(class index, ms) for one image, preprocessed as shelfsense.recognition.runtime does."""
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    height, width = int(inp["shape"][1]), int(inp["shape"][2])
    h, w = image_bgr.shape[:2]
    interp = cv2.INTER_AREA if w > width or h > height else cv2.INTER_LINEAR
    rgb = cv2.cvtColor(cv2.resize(image_bgr, (width, height), interpolation=interp), cv2.COLOR_BGR2RGB)
    if inp["dtype"] == np.uint8:
        tensor = rgb
    elif inp["dtype"] == np.int8:
        tensor = (rgb.astype(np.int16) - 128).astype(np.int8)
    else:
        tensor = rgb.astype(np.float32) * (2.0 / 255.0) - 1.0
    interpreter.set_tensor(inp["index"], tensor[np.newaxis])
    t0 = time.perf_counter()
    interpreter.invoke()
    ms = (time.perf_counter() - t0) * 1000.0
    scores = interpreter.get_tensor(out["index"]).reshape(-1)
    return int(np.argmax(scores)), ms


def solid(bgr: tuple[int, int, int]) -> np.ndarray:
    image = np.zeros((90, 120, 3), np.uint8)
    image[:] = bgr
    cv2.putText(image, "SHELF", (5, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared", type=Path)
    parser.add_argument("--runtime", default="litert", choices=["litert", "tflite-runtime"])
    args = parser.parse_args()
    module, dist = {
        "litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
        "tflite-runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
    }[args.runtime]
    interpreter_cls = importlib.import_module(module).Interpreter
    print(f"runtime {dist} {importlib.metadata.version(dist)} on {platform.machine()}, numpy {np.__version__}")

    grocery = args.shared / "datasets" / "grocery-store"
    firsts: dict[str, Path] = {}
    for line in (grocery / "val.txt").read_text().splitlines():
        rel = line.split(",")[0].strip()
        firsts.setdefault(Path(rel).parent.name, grocery / rel)
    colours = {"red": (30, 30, 220), "green": (40, 200, 40), "blue": (210, 60, 20)}
    cases = [
        (args.shared / "models" / "mobilenet_v2_1.0_224_quant.tflite", args.shared / "models" / "imagenet_labels.txt",
         {p.name: cv2.imread(str(p)) for p in sorted((args.shared / "images").glob("*.[bj][mp]*"))}),
        (REPO / "models" / "grocery_int8.tflite", REPO / "models" / "grocery_labels.txt",
         {f"{label} (first val photo)": cv2.imread(str(p)) for label, p in firsts.items()}),
    ] + [
        (REPO / "tests" / "fixtures" / "models" / f"{name}.tflite",
         REPO / "tests" / "fixtures" / "models" / f"{name}_labels.txt",
         {colour: solid(bgr) for colour, bgr in colours.items()})
        for name in ("colour_f32_96", "colour_i8_48x64", "colour_u8_128")
    ]  # fmt: skip
    for model, labels_path, images in cases:
        labels = [line.strip() for line in labels_path.read_text().splitlines() if line.strip()]
        interpreter = interpreter_cls(model_path=str(model), num_threads=1)
        interpreter.allocate_tensors()
        answers, times = [], []
        for name, image in images.items():
            index, ms = top1(interpreter, image)
            answers.append((name, labels[index]))
            times.append(ms)
        if len(answers) > 10:  # the 81 grocery photos: their count right and a digest of every answer
            right = sum(name.startswith(label + " ") for name, label in answers)
            digest = hashlib.sha256(repr(answers).encode()).hexdigest()[:12]
            print(f"answer {model.name}: top-1 right on {right}/{len(answers)}, answers digest {digest}")
        else:
            for name, label in answers:
                print(f"answer {model.name} {name}: {label}")
        steady = times[1:] or times
        print(f"time {model.name}: {np.median(steady):.1f} ms/invoke median over {len(steady)} (first {times[0]:.1f})")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
