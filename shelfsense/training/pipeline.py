"""The whole rebuild: backbone from the shared TFLite, cached trunk activations, fine-tuning, INT8 export."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from shelfsense.errors import MissingTrainExtraError, ShelfSenseError

from . import backbone, export, features, fit
from .config import TrainConfig
from .data import GroceryData, holdout_mask, load_grocery, read_rgb, to_input

MODEL_NAME = "grocery_int8.tflite"
LABELS_NAME = "grocery_labels.txt"
COARSE_LABELS_NAME = "grocery_coarse_labels.txt"


def log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def import_tf(threads: int) -> tuple[Any, Any]:
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise MissingTrainExtraError(
            "model training needs TensorFlow, which is not installed: pip install -e '.[train]'"
        ) from exc
    import keras

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf, keras


def prepare(
    data_dir: Path, backbone_path: Path, cache_dir: Path, cfg: TrainConfig, quiet: bool
) -> tuple[GroceryData, list[backbone.Layer], Any, np.ndarray, np.ndarray]:
    """Data listing, backbone layers, the frozen trunk, and its cached activations of every train view."""
    data = load_grocery(data_dir)
    if cfg.max_images:
        step = max(1, len(data.train) // cfg.max_images)
        data = replace(data, train=data.train[::step][: cfg.max_images])
    if not backbone_path.is_file():
        raise ShelfSenseError(f"backbone model {backbone_path} not found")
    tf, keras = import_tf(cfg.threads)
    keras.utils.set_random_seed(cfg.seed)
    layers = backbone.read_layers(backbone_path)
    probe = np.stack([to_input(read_rgb(p), 224) for p, _ in data.train[:: max(1, len(data.train) // 4)][:4]])
    agreement = backbone.check_against_tflite(keras, layers, backbone_path, probe)
    if agreement < 0.99:
        raise ShelfSenseError(f"the Keras rebuild of {backbone_path} disagrees with it (cosine {agreement:.4f})")
    log(f"backbone rebuild agrees with the TFLite: lowest embedding cosine {agreement:.4f}", quiet)
    trunk = backbone.build_trunk(keras, layers, cfg.size, cfg.split)
    key = features.cache_key(
        backbone=hashlib.sha256(backbone_path.read_bytes()).hexdigest()[:16],
        train=[str(p.relative_to(data.root)) for p, _ in data.train],
        size=cfg.size,
        split=cfg.split,
        views=cfg.views,
        seed=cfg.seed,
    )
    t0 = time.monotonic()
    feats, labels = features.trunk_features(
        trunk, data, cache_dir, seed=cfg.seed, views=cfg.views, workers=cfg.threads, key=key, quiet=quiet
    )
    log(f"trunk activations {feats.shape} float16 ready in {time.monotonic() - t0:.0f} s", quiet)
    return data, layers, trunk, feats, labels


def holdout_scores(top: Any, feats: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> dict[str, float]:
    """Float top-1 of held-out train images: whole photo (view 0) and their shelf-slot views (1..K-1)."""
    if len(idx) == 0:
        return {}
    clean = fit.predict_logits(top, feats[idx, 0]).argmax(1)
    shelf = fit.predict_logits(top, feats[idx, 1:].reshape(-1, *feats.shape[2:])).argmax(1)
    return {
        "holdout_photo_top1": float((clean == labels[idx]).mean()),
        "holdout_shelf_top1": float((shelf == np.repeat(labels[idx], feats.shape[1] - 1)).mean()),
    }


def train_and_export(
    data_dir: Path, backbone_path: Path, out_dir: Path, cache_dir: Path, cfg: TrainConfig, *, quiet: bool = False
) -> dict[str, Any]:
    """Whole pipeline; the exported model is the last epoch's (no selection on val)."""
    t0 = time.monotonic()
    data, layers, trunk, feats, labels = prepare(data_dir, backbone_path, cache_dir, cfg, quiet)
    t_cache = time.monotonic() - t0
    tf, keras = import_tf(cfg.threads)
    keras.utils.set_random_seed(cfg.seed)
    held = holdout_mask(labels, cfg.holdout_every)
    train_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)
    top = backbone.build_top(keras, layers, cfg.split, feats.shape[2:], len(data.fine_names), cfg.dropout)

    def on_epoch(epoch: int, row: dict) -> None:
        if len(held_idx) and (epoch % 5 == 0 or epoch == cfg.epochs):
            row.update(holdout_scores(top, feats, labels, held_idx))
        log(f"epoch {epoch}/{cfg.epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch"), quiet)

    verbose = 0 if quiet else (1 if sys.stderr.isatty() else 2)
    coarse_names = sorted(set(data.coarse_of_fine))
    coarse_of = np.array([coarse_names.index(c) for c in data.coarse_of_fine])
    history = fit.fit_top(
        keras, top, feats, labels, train_idx, cfg.fit_config(), coarse_of=coarse_of, on_epoch=on_epoch, verbose=verbose
    )
    t_train = time.monotonic() - t0 - t_cache
    # Kept outside the repository, so that the export step can be re-run or the float model inspected.
    top.save_weights(cache_dir / "top-last.weights.h5")
    held_final = holdout_scores(top, feats, labels, held_idx)

    model = export.assemble(keras, trunk, top)
    # Calibration: whole photos and shelf views of training images, the runtime's two kinds of input.
    rng = np.random.default_rng(cfg.seed)
    pick = rng.choice(len(train_idx), min(cfg.calib_images, len(train_idx)), replace=False)
    calib = features.render_calibration(data, train_idx[pick], cfg.size, cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_NAME
    model_path.write_bytes(export.to_int8(tf, model, calib))
    (out_dir / LABELS_NAME).write_text("\n".join(data.fine_names) + "\n")
    (out_dir / COARSE_LABELS_NAME).write_text("\n".join(data.coarse_of_fine) + "\n")
    report = {
        "config": asdict(cfg),
        "holdout": held_final,
        "model_bytes": model_path.stat().st_size,
        "seconds": {
            "trunk_cache": round(t_cache, 1),
            "train": round(t_train, 1),
            "total": round(time.monotonic() - t0, 1),
        },
        "history": history,
    }
    log(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=1), quiet)
    return report
