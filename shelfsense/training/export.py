"""Full-integer INT8 TFLite export of the assembled classifier (uint8 image in, int8 logits out)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np


def assemble(keras: Any, pairs: list[tuple[Any, Any]]) -> Any:
    """One model, float image 0..255 in, logits out: each (trunk, fine-tuned top) branch in inference mode on
    the same image, and with more than one branch the mean of their logits.

    Mean of logits, not of log-softmax: the two differ per image by a constant added to every class, so they
    give the same argmax and the same softmax (hence the same coarse scores); the plain mean needs no
    LOG_SOFTMAX in the INT8 graph."""
    inp = keras.Input(pairs[0][0].input.shape[1:], name="image")
    outs = [top(trunk(inp, training=False), training=False) for trunk, top in pairs]
    out = outs[0] if len(outs) == 1 else keras.layers.Average(name="fuse")(outs)
    return keras.Model(inp, out, name="grocery")


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
