"""The tflite-runtime fallback on ARM: tflite-runtime 2.14's optimized int8 FULLY_CONNECTED kernel dereferences a
NULL bias when the weights are quantized per channel and the op has no bias (the int8 fixture models are such).
ShelfSense finds those ops at load and uses the reference kernels for that model instead of crashing."""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from shelfsense.locations import BUNDLED_MODEL
from shelfsense.recognition.runtime import Classifier, unsafe_fully_connected

FIXTURES = Path(__file__).parent / "fixtures" / "models"
ARM = platform.machine().lower() in ("aarch64", "arm64", "armv7l")


def _red() -> np.ndarray:
    image = np.zeros((90, 120, 3), np.uint8)
    image[:] = (30, 30, 220)
    return image


def _interpreter(model: Path):
    """An interpreter that lists the model's own ops (no delegate folding them away)."""
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        if importlib.util.find_spec(module.split(".")[0]) is not None:
            mod = __import__(module, fromlist=["Interpreter"])
            resolver = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            interpreter = mod.Interpreter(model_path=str(model), experimental_op_resolver_type=resolver)
            interpreter.allocate_tensors()
            return interpreter
    pytest.skip("no TFLite runtime installed")


@pytest.mark.pi
def test_tflite_unsafe_fully_connected_is_per_channel_without_bias(mobilenet_v2: Path) -> None:
    # the int8 fixtures: a 3x3 FULLY_CONNECTED, per-channel weights, no bias
    for name in ("colour_i8_48x64", "colour_u8_128"):
        assert len(unsafe_fully_connected(_interpreter(FIXTURES / f"{name}.tflite"))) == 1, name
    # float weights; per-channel with a bias (the bundled model); no FULLY_CONNECTED at all (MobileNetV2)
    for model in (FIXTURES / "colour_f32_96.tflite", BUNDLED_MODEL, mobilenet_v2):
        assert unsafe_fully_connected(_interpreter(model)) == [], model.name


needs_tflite_on_arm = pytest.mark.skipif(
    not ARM
    or (importlib.util.find_spec("tflite_runtime") is None and os.environ.get("SHELFSENSE_REQUIRE_TFLITE") != "1"),
    reason="the crash is in tflite-runtime's ARM build (run by .ci/pi/stage in the emulated Pi OS)",
)


@pytest.mark.pi
@needs_tflite_on_arm
def test_tflite_runtime_on_arm_avoids_the_crashing_kernel(caplog: pytest.LogCaptureFixture) -> None:
    model = FIXTURES / "colour_i8_48x64.tflite"
    # the bug itself, in a process of its own: the default (optimized) kernels die with SIGSEGV
    probe = (
        "import sys, numpy as np\n"
        "from tflite_runtime.interpreter import Interpreter\n"
        "it = Interpreter(model_path=sys.argv[1]); it.allocate_tensors(); d = it.get_input_details()[0]\n"
        "it.set_tensor(d['index'], np.zeros(d['shape'], d['dtype'])); it.invoke(); print('survived')\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(model)], capture_output=True, text=True, timeout=300)
    if out.returncode == 0:
        pytest.fail(f"this tflite-runtime no longer crashes: the reference-kernel workaround can go ({out.stdout})")
    assert out.returncode == -11, (out.returncode, out.stderr[-2000:])  # SIGSEGV
    # ShelfSense on the same model: a warning naming the op, the reference kernels, the right answer
    with caplog.at_level(logging.WARNING, logger="shelfsense.recognition.runtime"):
        c = Classifier(model, backend="tflite-runtime")
        assert c.classify(_red())[0][0] == "red"
    assert "per-channel FULLY_CONNECTED without bias" in caplog.text
    # a model without such an op keeps the optimized kernels
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="shelfsense.recognition.runtime"):
        Classifier(FIXTURES / "colour_f32_96.tflite", backend="tflite-runtime").classify(_red())
        Classifier(BUNDLED_MODEL, backend="tflite-runtime").classify(cv2.resize(_red(), (128, 128)))
    assert "FULLY_CONNECTED" not in caplog.text
