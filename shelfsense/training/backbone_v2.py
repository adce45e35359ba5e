"""MobileNetV2 1.0 rebuilt in Keras from the shared quantised TFLite ImageNet classifier.

The classifier (from google-coral/test_data, Apache-2.0) is quantisation-aware-trained: every layer is a CONV_2D or
DEPTHWISE_CONV_2D with BatchNorm folded into its uint8 weights and int32 bias; expand and depthwise convolutions
end in ReLU6 (their output tensors are named ``.../Relu6``), projections are linear, and a block whose input and
output shapes match adds its input back (ADD). The graph is walked in order, tensor by tensor, so the residual
wiring is the file's own. Strides come from the tensors' shapes; padding is TensorFlow "SAME" (the slim graph
has no PAD op). The input quantisation (scale 1/128, zero point 128) gives the normalisation ``x / 128 - 1``.
The final average pool and the 1001-class classifier are dropped: the top ends in a new Dense head.

Blocks are numbered as in the graph: -1 the stem ``Conv``, 0..16 ``expanded_conv[_k]``, 17 the last 1x1 conv
``Conv_1`` (1280 channels). Blocks up to ``split`` form the frozen trunk, the rest the fine-tuned top.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backbone import dequantise

LAST_BLOCK = 17  # Conv_1, the 1x1 conv to 1280 channels before the pool


@dataclass(frozen=True)
class Op:
    name: str  # Keras layer name, e.g. v2_expanded_conv_13_expand
    kind: str  # CONV_2D, DEPTHWISE_CONV_2D or ADD
    block: int
    inputs: tuple[int, ...]  # TFLite tensor indices (activations only)
    output: int
    stride: int = 1
    relu6: bool = False
    kernel: np.ndarray | None = None  # Keras layout
    bias: np.ndarray | None = None


def _block_of(scope: str) -> int:
    if scope == "Conv":
        return -1
    if scope == "Conv_1":
        return LAST_BLOCK
    if scope == "expanded_conv":
        return 0
    return int(scope.rsplit("_", 1)[1])


def _interpreter(tflite: Path) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        str(tflite),
        num_threads=1,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True,
    )
    it.allocate_tensors()
    return it


def read_ops(tflite: Path) -> tuple[list[Op], int]:
    """The convolutions and residual additions up to the final pool, dequantised, in graph order; and the
    index of the graph's input tensor."""
    it = _interpreter(tflite)
    details = {d["index"]: d for d in it.get_tensor_details()}
    ops: list[Op] = []
    for op in it._get_ops_details():
        kind = op["op_name"]
        if kind == "AVERAGE_POOL_2D":
            break
        out = int(op["outputs"][0])
        scope_path = details[out]["name"].split(";")[0].removeprefix("MobilenetV2/").split("/")
        block = _block_of(scope_path[0])
        name = "v2_" + "_".join(scope_path[:-1]) + ("_add" if kind == "ADD" else "")
        if kind == "ADD":
            ops.append(Op(name, kind, block, tuple(int(i) for i in op["inputs"]), out))
            continue
        if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            raise ValueError(f"{tflite}: unexpected op {kind} before the final pool")
        x_idx, w_idx, b_idx = (int(i) for i in op["inputs"])
        w = dequantise(details[w_idx], it.get_tensor(w_idx))
        bias = dequantise(details[b_idx], it.get_tensor(b_idx))
        stride = int(details[x_idx]["shape"][1]) // int(details[out]["shape"][1])
        kernel = np.ascontiguousarray(np.transpose(w, (1, 2, 3, 0)))  # [out,kh,kw,in] -> [kh,kw,in,out]
        relu6 = scope_path[-1].startswith("Relu6")
        ops.append(Op(name, kind, block, (x_idx,), out, stride, relu6, kernel, bias))
    if not ops or ops[-1].block != LAST_BLOCK:
        raise ValueError(f"{tflite}: not a MobileNetV2 classifier graph (no Conv_1 before the pool)")
    return ops, int(it.get_input_details()[0]["index"])


def _run(keras: Any, ops: list[Op], tensors: dict[int, Any], trainable: bool) -> Any:
    x = None
    for op in ops:
        if op.kind == "ADD":
            x = keras.layers.Add(name=op.name)([tensors[i] for i in op.inputs])
        else:
            if op.kind == "DEPTHWISE_CONV_2D":
                layer = keras.layers.DepthwiseConv2D(
                    op.kernel.shape[0], op.stride, padding="same", name=op.name, trainable=trainable
                )
            else:
                layer = keras.layers.Conv2D(
                    op.kernel.shape[-1],
                    op.kernel.shape[0],
                    op.stride,
                    padding="same",
                    name=op.name,
                    trainable=trainable,
                )
            x = layer(tensors[op.inputs[0]])
            layer.set_weights([op.kernel, op.bias])
            if op.relu6:
                x = keras.layers.ReLU(6.0, name=f"{op.name}_relu6")(x)
        tensors[op.output] = x
    return x


def build_trunk(keras: Any, ops: list[Op], input_index: int, size: int, split: int) -> Any:
    """Float image 0..255 -> activations after block `split` (frozen)."""
    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 128, offset=-1.0, name="to_unit_v2")(inp)
    out = _run(keras, [op for op in ops if op.block <= split], {input_index: x}, trainable=False)
    return keras.Model(inp, out, name="trunk_v2")


def build_top(
    keras: Any, ops: list[Op], split: int, last: int, in_shape: tuple[int, ...], n_classes: int, dropout: float
) -> Any:
    """Trunk activations -> blocks split+1..last -> global average pool -> dropout -> Dense logits."""
    trunk_ops = [op for op in ops if op.block <= split]
    inp = keras.Input(in_shape, name="features_v2")
    top_ops = [op for op in ops if split < op.block <= last]
    x = _run(keras, top_ops, {trunk_ops[-1].output: inp}, trainable=True)
    x = keras.layers.GlobalAveragePooling2D(name="pool_v2")(x)
    x = keras.layers.Dropout(dropout, name="dropout_v2")(x)
    out = keras.layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inp, out, name="top_v2")


def check_against_tflite(keras: Any, ops: list[Op], input_index: int, tflite: Path, images: np.ndarray) -> float:
    """Lowest cosine similarity between the float rebuild's pooled 1280-d features and the TFLite's pool output,
    over 224x224 uint8 RGB images."""
    it = _interpreter(tflite)
    pool = next(o for o in it._get_ops_details() if o["op_name"] == "AVERAGE_POOL_2D")
    pd = next(d for d in it.get_tensor_details() if d["index"] == pool["outputs"][0])
    scale, zero = pd["quantization"]
    ref = []
    for img in images:
        it.set_tensor(input_index, np.ascontiguousarray(img[None]))
        it.invoke()
        ref.append((it.get_tensor(pd["index"]).reshape(-1).astype(np.float32) - zero) * scale)
    ref = np.stack(ref)
    trunk = build_trunk(keras, ops, input_index, images.shape[1], LAST_BLOCK)
    emb = keras.ops.convert_to_numpy(keras.ops.mean(trunk(images.astype(np.float32), training=False), axis=(1, 2)))
    cos = (emb * ref).sum(1) / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1) + 1e-9)
    return float(cos.min())
