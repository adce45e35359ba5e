"""MobileNetV1 1.0 rebuilt in Keras from the shared quantised TFLite embedding extractor.

The extractor (google-coral test_data, Apache-2.0) is a quantisation-aware-trained MobileNetV1: every layer is a
CONV_2D or DEPTHWISE_CONV_2D with BatchNorm already folded into its uint8 weights and int32 bias, followed by
ReLU6, and a final average pool. Dequantising gives a float network that reproduces the TFLite outputs (checked
by `check_against_tflite`): ``w = (q - zero_point) * scale``, ``b = q_bias * bias_scale``.

The network is split in two for training: the *trunk* (stem and blocks 1..split) stays frozen, the *top*
(blocks split+1..13) is fine-tuned with a new classifier head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# (name, kind, stride, filters) in graph order; the stem is a 3x3 conv, then 13 depthwise/pointwise pairs.
STRIDE2 = {"Conv2d_0", "Conv2d_2_depthwise", "Conv2d_4_depthwise", "Conv2d_6_depthwise", "Conv2d_12_depthwise"}
BLOCKS = 13
PREFIX = "MobilenetV1/MobilenetV1/"


@dataclass(frozen=True)
class Layer:
    name: str  # e.g. Conv2d_7_pointwise
    depthwise: bool
    stride: int
    kernel: np.ndarray  # Keras layout: conv [kh, kw, in, out], depthwise [kh, kw, C, 1]
    bias: np.ndarray

    @property
    def block(self) -> int:
        return int(self.name.split("_")[1])


def dequantise(detail: dict, raw: np.ndarray) -> np.ndarray:
    q = detail["quantization_parameters"]
    scales, zeros = q["scales"], q["zero_points"]
    if len(scales) == 0:
        return raw.astype(np.float32)
    if len(scales) > 1:  # per-channel (axis 0 of a TFLite weight)
        shape = (-1,) + (1,) * (raw.ndim - 1)
        return (raw.astype(np.float32) - zeros.reshape(shape)) * scales.reshape(shape).astype(np.float32)
    return (raw.astype(np.float32) - float(zeros[0])) * float(scales[0])


def read_layers(tflite: Path) -> list[Layer]:
    """The 27 conv layers of the extractor, dequantised, in graph order."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(tflite), num_threads=1)
    it.allocate_tensors()
    details = {d["index"]: d for d in it.get_tensor_details()}
    layers = []
    for op in it._get_ops_details():
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        _, w_idx, b_idx = op["inputs"]
        wd, bd = details[w_idx], details[b_idx]
        name = bd["name"].removeprefix(PREFIX).split("/")[0]
        w = dequantise(wd, it.get_tensor(w_idx))
        depthwise = op["op_name"] == "DEPTHWISE_CONV_2D"
        # TFLite conv weights are [out, kh, kw, in]; depthwise [1, kh, kw, C].
        kernel = np.transpose(w, (1, 2, 3, 0))
        bias = dequantise(bd, it.get_tensor(b_idx))
        layers.append(Layer(name, depthwise, 2 if name in STRIDE2 else 1, np.ascontiguousarray(kernel), bias))
    if len(layers) != 1 + 2 * BLOCKS:
        raise ValueError(f"{tflite}: expected {1 + 2 * BLOCKS} conv layers of MobileNetV1, found {len(layers)}")
    return layers


def _apply(keras: Any, x: Any, layer: Layer, trainable: bool) -> Any:
    if layer.depthwise:
        conv = keras.layers.DepthwiseConv2D(3, layer.stride, padding="same", name=layer.name, trainable=trainable)
    else:
        k = layer.kernel.shape[0]
        conv = keras.layers.Conv2D(
            layer.kernel.shape[-1], k, layer.stride, padding="same", name=layer.name, trainable=trainable
        )
    x = conv(x)
    conv.set_weights([layer.kernel, layer.bias])
    return keras.layers.ReLU(6.0, name=f"{layer.name}_relu6")(x)


def trunk_layers(layers: list[Layer], split: int) -> list[Layer]:
    return [layer for layer in layers if layer.name == "Conv2d_0" or layer.block <= split]


def top_layers(layers: list[Layer], split: int) -> list[Layer]:
    return [layer for layer in layers if layer.name != "Conv2d_0" and layer.block > split]


def build_trunk(keras: Any, layers: list[Layer], size: int, split: int) -> Any:
    """Float image 0..255 -> activations after block `split` (frozen)."""
    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit")(inp)
    for layer in trunk_layers(layers, split):
        x = _apply(keras, x, layer, trainable=False)
    return keras.Model(inp, x, name="trunk")


def build_top(
    keras: Any, layers: list[Layer], split: int, in_shape: tuple[int, ...], n_classes: int, dropout: float
) -> Any:
    """Trunk activations -> blocks split+1..13 -> global average pool -> dropout -> Dense logits."""
    inp = keras.Input(in_shape, name="features")
    x = inp
    for layer in top_layers(layers, split):
        x = _apply(keras, x, layer, trainable=True)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    out = keras.layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inp, out, name="top")


def build_embedder(keras: Any, layers: list[Layer], size: int) -> Any:
    """The whole float extractor: image 0..255 -> 1024-d average-pooled embedding (for the TFLite check)."""
    trunk = build_trunk(keras, layers, size, BLOCKS)
    return keras.Model(trunk.input, keras.layers.GlobalAveragePooling2D()(trunk.output))


def check_against_tflite(keras: Any, layers: list[Layer], tflite: Path, images: np.ndarray) -> float:
    """Lowest cosine similarity between the float rebuild's embeddings and the TFLite's, over 224x224 uint8 RGB
    images: the dequantised weights, strides, padding and layout are right when it is close to 1."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(str(tflite), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zero = out["quantization"]
    ref = []
    for img in images:
        it.set_tensor(inp["index"], np.ascontiguousarray(img[None]))
        it.invoke()
        ref.append((it.get_tensor(out["index"]).reshape(-1).astype(np.float32) - zero) * scale)
    ref = np.stack(ref)
    emb = build_embedder(keras, layers, images.shape[1])(images.astype(np.float32), training=False).numpy()
    cos = (emb * ref).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1) + 1e-9)
    return float(cos.min())
