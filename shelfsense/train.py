"""Train and export ShelfSense's default grocery classifier (full-integer INT8 TFLite).

A small MobileNetV1-style student is trained from scratch on GroceryStoreDataset ``train`` by distillation:
a frozen teacher (the shared MobileNetV1 embedding extractor, run through LiteRT) labels K fixed augmented
views of every training image once; those views and embeddings are cached outside the repository. The student
learns to predict the teacher embedding (cosine) and the fine class (cross-entropy on the labels plus KL to a
linear classifier fitted on the teacher embeddings). Only the student, quantised to INT8, is exported; the
teacher's weights never enter the output.

    python -m shelfsense.train --data ../shared/datasets/grocery-store \\
        --teacher ../shared/models/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite --out models/

Needs the ``train`` extra (TensorFlow): ``pip install -e '.[train]'``. TensorFlow is imported lazily so the
service never pays for it.

Input contract of the exported model: the whole image resized (cv2.INTER_AREA) to the square input size,
RGB, uint8 0..255 (quantisation scale 1/127.5, zero point 127 or 128 - read it from the model). Output: int8
logits over ``grocery_labels.txt`` order.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from shelfsense.errors import MissingTrainExtraError, ShelfSenseError
from shelfsense.tools.modeltools import evaluate

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "GroceryData",
    "TrainConfig",
    "MissingTrainExtraError",
    "load_grocery",
    "register",
    "run",
    "train_and_export",
]

TEACHER_SIZE = 224
MODEL_NAME = "grocery_int8.tflite"
LABELS_NAME = "grocery_labels.txt"
COARSE_LABELS_NAME = "grocery_coarse_labels.txt"


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    size: int = 128  # student input side, pixels
    alpha: float = 0.5  # MobileNetV1 width multiplier
    views: int = 10  # cached augmented views per training image (view 0 = whole image, 1 = its mirror)
    epochs: int = 70  # one epoch = one random cached view of every training image
    batch: int = 64
    lr: float = 2e-3  # peak AdamW learning rate, cosine decay after warm-up
    weight_decay: float = 5e-5
    warmup_epochs: int = 2
    temperature: float = 3.0  # KD softmax temperature
    w_ce: float = 0.5
    w_kd: float = 0.5
    w_emb: float = 2.0
    dropout: float = 0.2
    seed: int = 0
    threads: int = 2
    max_images: int | None = None  # smoke runs train on a few images only
    calib_images: int = 200  # representative dataset size for INT8 calibration


@dataclass(frozen=True)
class GroceryData:
    root: Path
    fine_names: list[str]
    coarse_of_fine: list[str]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]


def load_grocery(root: Path) -> GroceryData:
    """Read classes.csv and the train/val listings of a GroceryStoreDataset checkout."""
    classes = root / "classes.csv"
    if not classes.is_file():
        raise ShelfSenseError(f"{classes} not found: --data must point at the grocery-store dataset folder")
    rows: dict[int, tuple[str, str]] = {}
    with classes.open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            rows[int(row[1])] = (row[0].strip(), row[2].strip())
    ids = sorted(rows)
    if ids != list(range(len(ids))):
        raise ShelfSenseError(f"{classes}: fine class ids are not 0..N-1")

    def split(name: str) -> list[tuple[Path, int]]:
        out = []
        for line in (root / f"{name}.txt").read_text().splitlines():
            if line.strip():
                rel, fine, _coarse = (p.strip() for p in line.split(","))
                out.append((root / rel, int(fine)))
        return out

    return GroceryData(
        root=root,
        fine_names=[rows[i][0] for i in ids],
        coarse_of_fine=[rows[i][1] for i in ids],
        train=split("train"),
        val=split("val"),
    )


def read_rgb(path: Path) -> npt.NDArray[np.uint8]:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ShelfSenseError(f"cannot decode image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def resize(img: npt.NDArray[np.uint8], size: int) -> npt.NDArray[np.uint8]:
    # INTER_AREA on the whole image is what the runtime does with a slot crop: train on the same pixels.
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def augmented_views(img: npt.NDArray[np.uint8], rng: np.random.Generator, k: int) -> Iterator[npt.NDArray[np.uint8]]:
    """View 0 is the image itself, view 1 its mirror, the rest random resized crops with colour jitter."""
    h, w = img.shape[:2]
    for v in range(k):
        if v == 0:
            yield img
            continue
        if v == 1:
            yield img[:, ::-1]
            continue
        scale = rng.uniform(0.35, 1.0)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw = min(w, round(w * np.sqrt(scale * ratio)))
        ch = min(h, round(h * np.sqrt(scale / ratio)))
        x0 = int(rng.integers(0, w - cw + 1))
        y0 = int(rng.integers(0, h - ch + 1))
        crop = img[y0 : y0 + ch, x0 : x0 + cw].astype(np.float32)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = crop * rng.uniform(0.75, 1.25)  # brightness
        mean = crop.mean()
        crop = (crop - mean) * rng.uniform(0.75, 1.25) + mean  # contrast
        grey = crop.mean(axis=2, keepdims=True)
        crop = (crop - grey) * rng.uniform(0.7, 1.3) + grey  # saturation
        yield np.clip(crop, 0, 255).astype(np.uint8)


# --- teacher ---------------------------------------------------------------------------------------------

_TEACHER: Any = None


def _teacher_init(teacher_path: str) -> None:
    global _TEACHER
    from ai_edge_litert.interpreter import Interpreter

    # One single-threaded interpreter per worker process: two processes beat one two-threaded interpreter.
    _TEACHER = Interpreter(teacher_path, num_threads=1)
    _TEACHER.allocate_tensors()


def _teacher_embed(img224: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    inp = _TEACHER.get_input_details()[0]
    out = _TEACHER.get_output_details()[0]
    _TEACHER.set_tensor(inp["index"], np.ascontiguousarray(img224[None]))
    _TEACHER.invoke()
    scale, zero = out["quantization"]
    q = _TEACHER.get_tensor(out["index"]).reshape(-1).astype(np.float32)
    return (q - zero) * scale if scale else q


def _teacher_job(job: tuple[str, int, int, int, int]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    path, seed, index, k, size = job
    rng = np.random.default_rng([seed, index])  # per-image stream: the cache does not depend on scheduling
    img = read_rgb(Path(path))
    small, embs = [], []
    for view in augmented_views(img, rng, k):
        small.append(resize(view, size))
        embs.append(_teacher_embed(resize(view, TEACHER_SIZE)))
    return np.stack(small), np.stack(embs)


def _val_job(job: tuple[str, int]) -> npt.NDArray[np.float32]:
    return _teacher_embed(resize(read_rgb(Path(job[0])), TEACHER_SIZE))


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def build_cache(
    data: GroceryData, teacher: Path, cache_dir: Path, cfg: TrainConfig, *, quiet: bool
) -> dict[str, npt.NDArray[Any]]:
    """Student-size views + teacher embeddings of train (K views) and val (whole image); cached by content key."""
    train = data.train[: cfg.max_images] if cfg.max_images else data.train
    key_src = {
        "teacher": _file_digest(teacher),
        "train": [str(p.relative_to(data.root)) for p, _ in train],
        "views": cfg.views,
        "size": cfg.size,
        "seed": cfg.seed,
        "version": 1,
    }
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / f"grocery-{key}.npz"
    if path.is_file():
        _log(f"teacher cache hit: {path}", quiet)
        with np.load(path) as z:
            return {name: z[name] for name in z.files}

    from tqdm import tqdm

    _log(f"teacher: {len(train)} train images x {cfg.views} views + {len(data.val)} val -> {path}", quiet)
    jobs = [(str(p), cfg.seed, i, cfg.views, cfg.size) for i, (p, _) in enumerate(train)]
    small = np.empty((len(train), cfg.views, cfg.size, cfg.size, 3), np.uint8)
    emb = np.empty((len(train), cfg.views, 1024), np.float32)
    # spawn, not fork: the parent may already hold TensorFlow's threads.
    ctx = mp.get_context("spawn")
    with ctx.Pool(max(1, cfg.threads), initializer=_teacher_init, initargs=(str(teacher),)) as pool:
        bar = tqdm(total=len(jobs) + len(data.val), desc="teacher", unit="img", disable=quiet or None)
        for i, (s, e) in enumerate(pool.imap(_teacher_job, jobs, chunksize=4)):
            small[i], emb[i] = s, e
            bar.update()
        val_emb = []
        for e in pool.imap(_val_job, [(str(p), y) for p, y in data.val], chunksize=4):
            val_emb.append(e)
            bar.update()
        bar.close()
    arrays = {
        "train_x": small,
        "train_emb": emb,
        "train_y": np.array([y for _, y in train], np.int32),
        "val_x": np.stack([resize(read_rgb(p), cfg.size) for p, _ in data.val]),
        "val_emb": np.stack(val_emb),
        "val_y": np.array([y for _, y in data.val], np.int32),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return arrays


# --- student ---------------------------------------------------------------------------------------------


def _tf() -> Any:
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise MissingTrainExtraError(
            "model training needs TensorFlow, which is not installed: pip install -e '.[train]'"
        ) from exc
    return tf


def _fit_teacher_head(
    tf: Any, arrays: dict[str, npt.NDArray[Any]], n_classes: int, cfg: TrainConfig, quiet: bool
) -> tuple[npt.NDArray[np.float32], float, npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Linear softmax classifier on teacher embeddings: its logits are the KD targets of every cached view."""
    import keras

    mean = arrays["train_emb"].reshape(-1, 1024).mean(0)
    std = arrays["train_emb"].reshape(-1, 1024).std(0) + 1e-3
    x = ((arrays["train_emb"] - mean) / std).reshape(-1, 1024)
    y = np.repeat(arrays["train_y"], arrays["train_emb"].shape[1])
    head = keras.Sequential(
        [keras.Input((1024,)), keras.layers.Dense(n_classes, kernel_regularizer=keras.regularizers.l2(1e-3))]
    )
    head.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    head.fit(x, y, batch_size=256, epochs=8, verbose=0, shuffle=True)
    logits = head.predict(x, batch_size=1024, verbose=0).reshape(*arrays["train_emb"].shape[:2], n_classes)
    val_logits = head.predict((arrays["val_emb"] - mean) / std, verbose=0)
    val_acc = float((val_logits.argmax(1) == arrays["val_y"]).mean())
    _log(f"teacher linear head: val fine top-1 {val_acc:.3f}", quiet)
    return logits.astype(np.float32), val_acc, mean.astype(np.float32), std.astype(np.float32)


def _build_student(tf: Any, n_classes: int, cfg: TrainConfig) -> tuple[Any, Any]:
    """Returns (training model with fine + embedding outputs, inference model uint8-range in -> fine logits)."""
    import keras

    inp = keras.Input((cfg.size, cfg.size, 3), name="image")  # float 0..255
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    backbone = keras.applications.MobileNet(
        input_shape=(cfg.size, cfg.size, 3), alpha=cfg.alpha, include_top=False, weights=None, pooling="avg"
    )
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            # A short run (~2k steps at fast-changing weights): at the default 0.99 the moving statistics lag
            # so far behind that the inference-mode network collapses to one constant output.
            layer.momentum = 0.9
    feat = backbone(x)
    feat = keras.layers.Dropout(cfg.dropout)(feat)
    fine = keras.layers.Dense(n_classes, name="fine")(feat)
    emb = keras.layers.Dense(1024, name="emb")(feat)
    return keras.Model(inp, {"fine": fine, "emb": emb}), keras.Model(inp, fine)


def _kd_loss(tf: Any, cfg: TrainConfig, n_classes: int) -> Callable[[Any, Any], Any]:
    t = cfg.temperature

    def loss(y_true: Any, logits: Any) -> Any:
        # y_true packs [smoothed one-hot | teacher logits] so one Keras loss sees both targets.
        hard, teacher = y_true[:, :n_classes], y_true[:, n_classes:]
        ce = tf.nn.softmax_cross_entropy_with_logits(hard, logits)
        kd = tf.nn.softmax_cross_entropy_with_logits(tf.nn.softmax(teacher / t), logits / t) * t * t
        return cfg.w_ce * ce + cfg.w_kd * kd

    return loss


def _emb_loss(tf: Any) -> Callable[[Any, Any], Any]:
    def loss(y_true: Any, y_pred: Any) -> Any:
        return 1.0 - tf.reduce_sum(tf.math.l2_normalize(y_true, -1) * tf.math.l2_normalize(y_pred, -1), -1)

    return loss


def _batches_cls(keras: Any) -> type:
    class ViewBatches(keras.utils.PyDataset):
        """Each epoch: every training image once, as one of its cached views drawn at random."""

        def __init__(self, arrays: dict[str, Any], targets: dict[str, Any], batch: int, seed: int) -> None:
            super().__init__()
            self.x, self.targets, self.batch = arrays["train_x"], targets, batch
            self.rng = np.random.default_rng(seed)
            self.on_epoch_end()

        def on_epoch_end(self) -> None:
            n, k = self.x.shape[:2]
            self.order = self.rng.permutation(n)
            self.view = self.rng.integers(0, k, n)

        def __len__(self) -> int:
            return -(-len(self.order) // self.batch)

        def __getitem__(self, i: int) -> tuple[Any, dict[str, Any]]:
            idx = self.order[i * self.batch : (i + 1) * self.batch]
            v = self.view[idx]
            x = self.x[idx, v].astype(np.float32)
            return x, {name: t[idx, v] for name, t in self.targets.items()}

    return ViewBatches


def train_and_export(
    data_dir: Path, teacher: Path, out_dir: Path, cache_dir: Path, cfg: TrainConfig, *, quiet: bool = False
) -> dict[str, Any]:
    """Whole pipeline: teacher cache, student training (best epoch on val), INT8 export, LiteRT evaluation."""
    t0 = time.monotonic()
    data = load_grocery(data_dir)
    if not teacher.is_file():
        raise ShelfSenseError(f"teacher model {teacher} not found")
    n_classes = len(data.fine_names)
    arrays = build_cache(data, teacher, cache_dir, cfg, quiet=quiet)
    t_cache = time.monotonic() - t0

    tf = _tf()
    import keras

    tf.config.threading.set_intra_op_parallelism_threads(cfg.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(cfg.seed)

    teacher_logits, teacher_val_acc, emb_mean, _ = _fit_teacher_head(tf, arrays, n_classes, cfg, quiet)
    onehot = np.eye(n_classes, dtype=np.float32)[arrays["train_y"]] * 0.9 + 0.1 / n_classes
    k = arrays["train_x"].shape[1]
    targets = {
        "fine": np.concatenate([np.repeat(onehot[:, None], k, 1), teacher_logits], -1),
        # Centred: raw post-ReLU embeddings all point into one orthant, so raw cosines say little.
        "emb": arrays["train_emb"] - emb_mean,
    }
    model, infer = _build_student(tf, n_classes, cfg)
    batches = _batches_cls(keras)(arrays, targets, cfg.batch, cfg.seed)
    steps = len(batches) * cfg.epochs
    warm = min(len(batches) * cfg.warmup_epochs, steps // 2)
    schedule = keras.optimizers.schedules.CosineDecay(
        cfg.lr * 0.05, max(1, steps - warm), warmup_target=cfg.lr, warmup_steps=warm, alpha=0.01
    )
    model.compile(
        keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay),
        loss={"fine": _kd_loss(tf, cfg, n_classes), "emb": _emb_loss(tf)},
        loss_weights={"fine": 1.0, "emb": cfg.w_emb},
    )

    best = {"acc": -1.0, "epoch": -1, "weights": None}
    history: list[dict[str, float]] = []

    class SelectOnVal(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            pred = infer.predict(arrays["val_x"].astype(np.float32), batch_size=128, verbose=0)
            acc = float((pred.argmax(1) == arrays["val_y"]).mean())
            history.append({"epoch": epoch + 1, "val_top1": acc, **{k: float(v) for k, v in (logs or {}).items()}})
            if acc >= best["acc"]:
                best.update(acc=acc, epoch=epoch + 1, weights=infer.get_weights())
            _log(f"epoch {epoch + 1}: val fine top-1 {acc:.3f} (best {best['acc']:.3f} @ {best['epoch']})", quiet)

    verbose = 0 if quiet else (1 if sys.stderr.isatty() else 2)
    model.fit(batches, epochs=cfg.epochs, verbose=verbose, callbacks=[SelectOnVal()])
    infer.set_weights(best["weights"])
    # Kept outside the repo so a changed export step can be re-run without retraining.
    cache_dir.mkdir(parents=True, exist_ok=True)
    infer.save_weights(cache_dir / "student-best.weights.h5")
    t_train = time.monotonic() - t0 - t_cache

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_NAME
    calib = arrays["train_x"][:, 0]  # whole, unaugmented images: the runtime's input distribution
    calib = calib[np.random.default_rng(cfg.seed).permutation(len(calib))[: cfg.calib_images]]
    model_path.write_bytes(_to_int8(tf, infer, calib, cfg))
    (out_dir / LABELS_NAME).write_text("\n".join(data.fine_names) + "\n")
    (out_dir / COARSE_LABELS_NAME).write_text("\n".join(data.coarse_of_fine) + "\n")
    t_total = time.monotonic() - t0

    # The service's own runtime and preprocessing: what is reported here is what `shelfsense model eval` says.
    result = evaluate(model_path, data_dir, threads=cfg.threads, progress=not quiet, worst=10)
    report = {
        "config": asdict(cfg),
        "best_epoch": best["epoch"],
        "float_val_top1": best["acc"],
        "teacher_linear_val_top1": teacher_val_acc,
        "int8": {
            "n": result["images"],
            "fine_top1": result["top1"],
            "fine_top5": result["top5"],
            "coarse_top1": result["coarse_top1"],
        },
        "worst_classes": result["worst_classes"],
        "model_bytes": model_path.stat().st_size,
        "seconds": {"teacher_cache": round(t_cache, 1), "train": round(t_train, 1), "total": round(t_total, 1)},
        "history": history,
    }
    _log(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=1), quiet)
    return report


def _to_int8(tf: Any, infer: Any, calib: npt.NDArray[np.uint8], cfg: TrainConfig) -> bytes:
    import tempfile

    def representative() -> Iterator[list[npt.NDArray[np.float32]]]:
        # One frame spanning 0..255 pins the input quantisation to scale 1, zero point 0: a raw RGB byte is
        # then exactly its quantised value, whatever the calibration photos happen to contain.
        span = np.zeros((1, cfg.size, cfg.size, 3), np.float32)
        span[:, ::2] = 255.0
        yield [span]
        for img in calib:
            yield [img[None].astype(np.float32)]

    # Through a SavedModel: converting a Keras 3 model's concrete function directly leaves its variables
    # as resource reads that the INT8 calibrator cannot run.
    with tempfile.TemporaryDirectory() as tmp:
        infer.export(tmp, format="tf_saved_model", verbose=False)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # uint8 in: the camera's RGB bytes go in as they are (the input scale is ~1 over 0..255).
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.int8
        return bytes(conv.convert())


# --- evaluation (LiteRT only: no TensorFlow needed) --------------------------------------------------------


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


# --- CLI -------------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--data", type=Path, required=True, help="grocery-store dataset folder")
    p.add_argument("--teacher", type=Path, required=True, help="MobileNetV1 embedding extractor .tflite")
    p.add_argument("--out", type=Path, default=Path("models"), help="output folder (default: models)")
    p.add_argument("--cache", type=Path, default=Path("../traincache"), help="teacher cache folder, outside the repo")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--views", type=int, default=d.views, help="cached augmented views per training image")
    p.add_argument("--size", type=int, default=d.size, help="student input side in pixels")
    p.add_argument("--alpha", type=float, default=d.alpha, help="MobileNetV1 width multiplier")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--smoke", action="store_true", help="tiny model, few images, 1 epoch: checks the export path")
    p.add_argument("--report", type=Path, help="write the training report (JSON) here")
    p.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig(
        size=args.size, alpha=args.alpha, views=args.views, epochs=args.epochs, seed=args.seed, threads=args.threads
    )
    if args.smoke:
        cfg = replace(cfg, size=32, alpha=0.25, views=2, epochs=1, batch=8, max_images=16, calib_images=8)
    try:
        report = train_and_export(args.data, args.teacher, args.out, args.cache, cfg, quiet=args.quiet)
    except ShelfSenseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.report:
        args.report.write_text(json.dumps(report, indent=1) + "\n")
    i8 = report["int8"]
    print(
        f"{args.out / MODEL_NAME}: {report['model_bytes'] / 1e6:.2f} MB, val fine top-1 {i8['fine_top1']:.3f}, "
        f"top-5 {i8['fine_top5']:.3f}, coarse top-1 {i8['coarse_top1']:.3f}, {report['seconds']['total']:.0f} s"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train and export the default grocery INT8 model")
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(prog="python -m shelfsense.train", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
