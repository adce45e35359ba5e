"""Full-integer INT8 TFLite export of the assembled classifier (uint8 image in, int8 logits out)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np


def assemble(keras: Any, trunk: Any, top: Any) -> Any:
    """One model, float image 0..255 in, logits out: the trunk and the fine-tuned top in inference mode."""
    inp = keras.Input(trunk.input.shape[1:], name="image")
    return keras.Model(inp, top(trunk(inp, training=False), training=False), name="grocery")


def to_int8(tf: Any, model: Any, calib: np.ndarray) -> bytes:
    """Full-integer conversion; `calib` is uint8 images [N, S, S, 3] of the runtime's input distribution."""
    size = model.input.shape[1]

    def representative() -> Iterator[list[np.ndarray]]:
        # One frame spanning 0..255 pins the input quantisation to scale 1, zero point 0: a raw RGB byte is
        # then exactly its quantised value, whatever the calibration photos happen to contain.
        span = np.zeros((1, size, size, 3), np.float32)
        span[:, ::2] = 255.0
        yield [span]
        for img in calib:
            yield [img[None].astype(np.float32)]

    # Through a SavedModel: converting a Keras 3 model's concrete function directly leaves its variables
    # as resource reads that the INT8 calibrator cannot run.
    with tempfile.TemporaryDirectory() as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # uint8 in: the camera's RGB bytes go in as they are (input scale 1, zero point 0).
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.int8
        return bytes(conv.convert())
