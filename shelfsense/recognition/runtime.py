"""TFLite runtime: backend choice, model spec, pre/post-processing, and a pool of interpreter threads.

LiteRT (`ai-edge-litert`) is the default backend; `tflite-runtime` is the fallback (same Interpreter API).
A TFLite interpreter is not thread-safe, so every worker thread owns one; the pool bounds how many slot
inferences may wait, and answers `OverloadedError` beyond that rather than queueing without limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.metadata
import logging
import platform
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from shelfsense.errors import ModelError, OverloadedError
from shelfsense.types import Prediction

if TYPE_CHECKING:
    from shelfsense.config import ModelConfig

log = logging.getLogger(__name__)

BACKENDS = {  # config name -> (module with Interpreter, distribution for its version)
    "litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite-runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
}


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    version: str
    interpreter_cls: Any

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def load_backend(name: str = "auto") -> Backend:
    """The interpreter backend called `name`; "auto" takes LiteRT, else tflite-runtime."""
    names = list(BACKENDS) if name == "auto" else [name]
    errors = []
    for candidate in names:
        if candidate not in BACKENDS:
            raise ModelError(f"Unknown runtime {candidate!r}: choose auto, {', '.join(BACKENDS)}")
        module_name, dist = BACKENDS[candidate]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{dist}: {exc}")
            continue
        return Backend(candidate, importlib.metadata.version(dist), module.Interpreter)
    raise ModelError(
        "No TFLite runtime is installed (" + "; ".join(errors) + "). "
        "Install ai-edge-litert, or the fallback with pip install -e '.[tflite]'"
    )


@dataclass(frozen=True, slots=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype in ("uint8", "int8") and self.scale > 0


@dataclass(frozen=True, slots=True)
class ModelSpec:
    path: Path
    sha256: str
    size_bytes: int
    input: TensorSpec
    output: TensorSpec
    labels: tuple[str, ...]
    op_count: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) of the model input."""
        return self.input.shape[2], self.input.shape[1]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_labels(model_path: Path) -> Path:
    """The labels file beside a model: `<stem>_labels.txt`, `<prefix>_labels.txt`, or the one `*labels.txt`."""
    folder, stem = model_path.parent, model_path.stem
    for candidate in (f"{stem}_labels.txt", f"{stem}.txt", f"{stem.split('_')[0]}_labels.txt", "labels.txt"):
        if (folder / candidate).is_file():
            return folder / candidate
    found = [p for p in folder.glob("*labels.txt") if "coarse" not in p.name]
    if len(found) == 1:
        return found[0]
    raise ModelError(f"No labels file found beside {model_path}: set model.labels (one label per line)")


def read_labels(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ModelError(f"Cannot read labels file {path}: {exc.strerror or exc}") from None
    return tuple(line.strip() for line in lines if line.strip())


def unsafe_fully_connected(interpreter: Any) -> list[str]:
    """FULLY_CONNECTED ops that tflite-runtime 2.14 on ARM kills the process in: int8 weights quantized per
    channel and no bias. Its gemmlowp per-channel output pipeline always adds the bias vector, read through a NULL
    pointer (SIGSEGV in gemmlowp::UnpackResult), whenever the op leaves the NEON GEMV fast path (batch > 1, fewer
    than 4 outputs or 8 inputs). Found in the emulated Pi OS stage (.ci/pi/stage, docs/raspberry-pi.md); the
    x86_64 build and LiteRT 1.4/2.x run these models."""
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    unsafe = []
    for op in interpreter._get_ops_details():
        inputs = list(op["inputs"])
        if op["op_name"] != "FULLY_CONNECTED" or len(inputs) < 2 or inputs[1] not in tensors:
            continue
        weights = tensors[inputs[1]]
        per_channel = len(weights.get("quantization_parameters", {}).get("scales", ())) > 1
        if per_channel and (len(inputs) < 3 or inputs[2] < 0):
            unsafe.append(f"op {op['index']} ({weights['name']})")
    return unsafe


def _tensor_spec(detail: dict) -> TensorSpec:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorSpec(
        tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]).name, float(scale), int(zero_point)
    )


class Classifier:
    """One interpreter: crop in, top-k labels out. Not thread-safe: one per thread."""

    def __init__(
        self,
        model_path: str | Path,
        labels: str | Path | Sequence[str] | None = None,
        *,
        backend: Backend | str = "auto",
        num_threads: int = 1,
        top_k: int = 3,
        float_range: tuple[float, float] = (-1.0, 1.0),
    ) -> None:
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelError(f"Model file {self.path} does not exist")
        self.backend = load_backend(backend) if isinstance(backend, str) else backend
        self._interpreter = self._load(num_threads)
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][3] != 3:
            raise ModelError(f"{self.path}: expected one NHWC RGB image input, got {[d['shape'] for d in inputs]}")
        if len(outputs) != 1:
            raise ModelError(f"{self.path}: expected one output of class scores, got {len(outputs)}")
        self._in, self._out = inputs[0]["index"], outputs[0]["index"]
        in_spec, out_spec = _tensor_spec(inputs[0]), _tensor_spec(outputs[0])
        n_classes = int(np.prod(out_spec.shape))
        if isinstance(labels, str | Path):
            label_list = read_labels(Path(labels))
        elif labels is None:
            label_list = read_labels(find_labels(self.path))
        else:
            label_list = tuple(labels)
        if len(label_list) != n_classes:
            raise ModelError(f"{self.path} has {n_classes} outputs but its labels file has {len(label_list)} lines")
        self.spec = ModelSpec(
            path=self.path,
            sha256=file_sha256(self.path),
            size_bytes=self.path.stat().st_size,
            input=in_spec,
            output=out_spec,
            labels=label_list,
            op_count=len(self._interpreter._get_ops_details())
            if hasattr(self._interpreter, "_get_ops_details")
            else -1,
        )
        self.top_k = max(1, min(top_k, n_classes))
        self.float_range = float_range
        self.invokes = 0

    def _load(self, num_threads: int) -> Any:
        """The interpreter with tensors allocated; on ARM tflite-runtime, its reference kernels where the optimized
        per-channel FULLY_CONNECTED kernel would crash the process."""
        try:
            interpreter = self.backend.interpreter_cls(model_path=str(self.path), num_threads=num_threads)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.path} is not a loadable TFLite model: {exc}") from None
        if self.backend.name != "tflite-runtime" or platform.machine().lower() not in ("aarch64", "arm64", "armv7l"):
            return interpreter
        unsafe = unsafe_fully_connected(interpreter)
        if not unsafe:
            return interpreter
        log.warning(
            "%s: tflite-runtime on %s crashes in per-channel FULLY_CONNECTED without bias (%s); "
            "using its reference kernels (slower; LiteRT has no such bug)",
            self.path.name,
            platform.machine(),
            ", ".join(unsafe),
        )
        resolver = importlib.import_module(BACKENDS["tflite-runtime"][0]).OpResolverType.BUILTIN_REF
        interpreter = self.backend.interpreter_cls(
            model_path=str(self.path), num_threads=num_threads, experimental_op_resolver_type=resolver
        )
        interpreter.allocate_tensors()
        return interpreter

    def preprocess(self, crop_bgr: np.ndarray) -> np.ndarray:
        """A BGR crop as the model's input tensor: resized, RGB, quantized or normalized."""
        width, height = self.spec.input_size
        h, w = crop_bgr.shape[:2]
        interp = cv2.INTER_AREA if w > width or h > height else cv2.INTER_LINEAR
        rgb = cv2.cvtColor(cv2.resize(crop_bgr, (width, height), interpolation=interp), cv2.COLOR_BGR2RGB)
        spec = self.spec.input
        # Quantized image models are calibrated so that 0..255 pixels span the input's integer range.
        if spec.dtype == "uint8":
            tensor = rgb
        elif spec.dtype == "int8":
            tensor = (rgb.astype(np.int16) - 128).astype(np.int8)
        else:
            lo, hi = self.float_range
            tensor = (rgb.astype(np.float32) * ((hi - lo) / 255.0) + lo).astype(spec.dtype)
        return tensor[np.newaxis]

    def scores(self, crop_bgr: np.ndarray) -> np.ndarray:
        """Class scores (probabilities) for one crop."""
        self._interpreter.set_tensor(self._in, self.preprocess(crop_bgr))
        self._interpreter.invoke()
        self.invokes += 1
        raw = self._interpreter.get_tensor(self._out).reshape(-1)
        spec = self.spec.output
        values = (raw.astype(np.float32) - spec.zero_point) * spec.scale if spec.quantized else raw.astype(np.float32)
        # Classifiers end in softmax or in logits; only the latter need it applied.
        if values.min() < 0 or values.sum() > 1.5:
            values = np.exp(values - values.max())
            values /= values.sum()
        return values

    def classify(self, crop_bgr: np.ndarray) -> Prediction:
        values = self.scores(crop_bgr)
        top = np.argsort(-values, kind="stable")[: self.top_k]
        return [(self.spec.labels[i], round(float(values[i]), 4)) for i in top]


class _Gate:
    """At most `limit` holders at once, and the limit may change while threads wait (thermal steps lower it).

    A threading.Semaphore cannot shrink, and an asyncio one would leave idle worker threads asleep on nothing;
    this gate is held inside the worker, so lowering it lets running inferences finish and holds the next ones.
    """

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition()
        self._limit = limit
        self._running = 0
        self.peak = 0  # most holders seen at once, for tests and the curious

    @property
    def limit(self) -> int:
        return self._limit

    @limit.setter
    def limit(self, limit: int) -> None:
        with self._cond:
            self._limit = limit
            self._cond.notify_all()

    def __enter__(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._running < self._limit)
            self._running += 1
            self.peak = max(self.peak, self._running)

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._running -= 1
            self._cond.notify()


class InferencePool:
    """Worker threads, each with its own Classifier, fed from the event loop; at most `queue_size` waiting.

    `active_threads` (at most `threads`) caps how many of the workers infer at once: the service lowers it while
    the device runs hot (service/thermal.py) without rebuilding interpreters.
    """

    def __init__(
        self,
        model_path: str | Path,
        labels: str | Path | None = None,
        *,
        backend: str = "auto",
        threads: int = 1,
        interpreter_threads: int = 1,
        top_k: int = 3,
        queue_size: int = 64,
    ) -> None:
        self._make = lambda: Classifier(
            model_path, labels, backend=self.backend, num_threads=interpreter_threads, top_k=top_k
        )
        self.backend = load_backend(backend)
        first = self._make()  # fail here, at start-up, on a bad model or labels file
        self.spec = first.spec
        self.threads = threads
        self.queue_size = queue_size
        self._classifiers: list[Classifier] = [first]
        self._spare = [first]
        self._local = threading.local()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="shelfsense-infer")
        self._gate = _Gate(threads)
        self.pending = 0

    @classmethod
    def from_config(cls, model: ModelConfig) -> InferencePool:
        return cls(
            model.path,
            model.labels,
            backend=model.runtime,
            threads=model.threads,
            interpreter_threads=model.interpreter_threads,
            top_k=model.top_k,
            queue_size=model.queue_size,
        )

    @property
    def invokes(self) -> int:
        return sum(c.invokes for c in self._classifiers)

    @property
    def active_threads(self) -> int:
        """Workers allowed to infer at once (1..threads)."""
        return self._gate.limit

    @active_threads.setter
    def active_threads(self, n: int) -> None:
        if not 1 <= n <= self.threads:
            raise ValueError(f"active_threads must be 1..{self.threads}, got {n}")
        self._gate.limit = n

    @property
    def peak_running(self) -> int:
        """Most inferences seen running at once since the pool started."""
        return self._gate.peak

    def _classifier(self) -> Classifier:
        classifier = getattr(self._local, "classifier", None)
        if classifier is None:
            with self._lock:
                if self._spare:
                    classifier = self._spare.pop()
                else:
                    classifier = self._make()
                    self._classifiers.append(classifier)
            self._local.classifier = classifier
        return classifier

    def _run(self, crop_bgr: np.ndarray) -> tuple[Prediction, float]:
        with self._gate:  # the wait for a turn is queueing, not inference: it stays outside the timing
            t0 = time.perf_counter()
            prediction = self._classifier().classify(crop_bgr)
            return prediction, (time.perf_counter() - t0) * 1000.0

    async def classify(self, crop_bgr: np.ndarray) -> tuple[Prediction, float]:
        """Top-k prediction and the inference time in ms; OverloadedError when the queue is full."""
        if self.pending >= self.queue_size:
            raise OverloadedError(f"Inference queue is full ({self.queue_size} slot inferences waiting)")
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, crop_bgr)
        finally:
            self.pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
