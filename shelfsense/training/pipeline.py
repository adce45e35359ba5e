"""The whole rebuild: both backbones from the shared TFLites, cached trunk activations, fine-tuning of each
branch, one fused INT8 export."""

from __future__ import annotations

import functools
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from shelfsense.errors import MissingTrainExtraError, ShelfSenseError

from . import branches, export, features, fit
from .config import TrainConfig
from .data import GroceryData, holdout_mask, load_grocery

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
    data_dir: Path, backbones: dict[str, Path], cache_dir: Path, cfg: TrainConfig, quiet: bool
) -> tuple[GroceryData, list[branches.Branch]]:
    """Data listing and, for each branch, its frozen trunk and the cached activations of every train view."""
    data = load_grocery(data_dir)
    if cfg.max_images:
        step = max(1, len(data.train) // cfg.max_images)
        data = replace(data, train=data.train[::step][: cfg.max_images])
    for name in cfg.branches:
        if name not in branches.NAMES:
            raise ShelfSenseError(f"unknown branch {name!r}: choose from {', '.join(branches.NAMES)}")
        if not backbones[name].is_file():
            raise ShelfSenseError(f"backbone model {backbones[name]} not found")
    tf, keras = import_tf(cfg.threads)
    # Rendered only if a branch's activation cache is missing, and then once for all branches (same seed).
    views = functools.cache(
        lambda: features.render_views([p for p, _ in data.train], cfg.seed, cfg.views, cfg.size, cfg.threads, quiet)
    )
    out = []
    for name in cfg.branches:
        keras.utils.set_random_seed(cfg.seed)
        t0 = time.monotonic()
        make = branches.prepare_v1 if name == "v1" else branches.prepare_v2
        branch = make(keras, data, backbones[name], cache_dir, cfg, quiet, views)
        log(f"{name}: trunk activations {branch.feats.shape} float16 ready in {time.monotonic() - t0:.0f} s", quiet)
        out.append(branch)
    return data, out


def holdout_scores(pairs: list[tuple[Any, np.ndarray]], labels: np.ndarray, idx: np.ndarray) -> dict[str, float]:
    """Float top-1 of held-out train images, whole photo (view 0) and their shelf-slot views (1..K-1), of the
    average of the given (top, activations) pairs' logits."""
    if len(idx) == 0:
        return {}
    clean = sum(fit.predict_logits(top, feats[idx, 0]) for top, feats in pairs)
    shelf = sum(fit.predict_logits(top, feats[idx, 1:].reshape(-1, *feats.shape[2:])) for top, feats in pairs)
    views = pairs[0][1].shape[1]
    return {
        "holdout_photo_top1": float((clean.argmax(1) == labels[idx]).mean()),
        "holdout_shelf_top1": float((shelf.argmax(1) == np.repeat(labels[idx], views - 1)).mean()),
    }


def train_branch(
    keras: Any, branch: branches.Branch, cfg: TrainConfig, data: GroceryData, cache_dir: Path, quiet: bool
) -> tuple[Any, list[dict], float]:
    """The branch's fine-tuned top (trained now, or loaded when this recipe's top is in the cache), its
    training history and the seconds spent."""
    t0 = time.monotonic()
    keras.utils.set_random_seed(cfg.seed)
    top = branch.new_top()
    path = branches.top_path(branch, cfg, cache_dir)
    if path.is_file() and not cfg.retrain:
        top.load_weights(path)
        log(f"{branch.name}: fine-tuned top loaded from {path}", quiet)
        return top, [], 0.0
    held = holdout_mask(branch.labels, cfg.holdout_every)
    train_idx, held_idx = np.flatnonzero(~held), np.flatnonzero(held)

    def on_epoch(epoch: int, row: dict) -> None:
        if len(held_idx) and (epoch % 5 == 0 or epoch == cfg.epochs):
            row.update(holdout_scores([(top, branch.feats)], branch.labels, held_idx))
        msg = ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "epoch")
        log(f"{branch.name} epoch {epoch}/{cfg.epochs}: {msg}", quiet)

    verbose = 0 if quiet else (1 if sys.stderr.isatty() else 2)
    coarse_names = sorted(set(data.coarse_of_fine))
    coarse_of = np.array([coarse_names.index(c) for c in data.coarse_of_fine])
    fit_cfg = cfg.fit_config()
    history = fit.fit_top(
        keras,
        top,
        branch.feats,
        branch.labels,
        train_idx,
        fit_cfg,
        coarse_of=coarse_of,
        on_epoch=on_epoch,
        verbose=verbose,
    )
    # Kept outside the repository, so that the export step can be re-run or the float model inspected.
    top.save_weights(path)
    return top, history, time.monotonic() - t0


def train_and_export(
    data_dir: Path, backbones: dict[str, Path], out_dir: Path, cache_dir: Path, cfg: TrainConfig, *, quiet: bool = False
) -> dict[str, Any]:
    """Whole pipeline; each branch's exported top is its last epoch's (no selection on val)."""
    t0 = time.monotonic()
    data, parts = prepare(data_dir, backbones, cache_dir, cfg, quiet)
    t_cache = time.monotonic() - t0
    tf, keras = import_tf(cfg.threads)
    tops, histories, seconds = [], {}, {}
    for branch in parts:
        top, histories[branch.name], seconds[branch.name] = train_branch(keras, branch, cfg, data, cache_dir, quiet)
        tops.append(top)
    labels = parts[0].labels
    held = holdout_mask(labels, cfg.holdout_every)
    held_idx, train_idx = np.flatnonzero(held), np.flatnonzero(~held)
    held_final = {b.name: holdout_scores([(t, b.feats)], labels, held_idx) for b, t in zip(parts, tops, strict=True)}
    held_final["fused"] = holdout_scores([(t, b.feats) for b, t in zip(parts, tops, strict=True)], labels, held_idx)

    model = export.assemble(keras, [(b.trunk, t) for b, t in zip(parts, tops, strict=True)])
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
            "trunk_caches": round(t_cache, 1),
            **{f"train_{k}": round(v, 1) for k, v in seconds.items()},
            "total": round(time.monotonic() - t0, 1),
        },
        "history": histories,
    }
    log(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=1), quiet)
    return report
