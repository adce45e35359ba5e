"""The two backbones of the ensemble, each a frozen trunk (activations cached) and a fine-tuned top.

``v1``: MobileNetV1 from the shared embedding extractor (backbone.py), blocks 1..split frozen.
``v2``: MobileNetV2 from the shared ImageNet classifier (backbone_v2.py), blocks up to v2_split frozen,
v2_split+1..v2_last fine-tuned. Both read the same rendered views (same seed), so their caches line up.

A trained top is kept in the cache folder under a key of everything that determines it, and a later run with
the same key loads it instead of training again (`--retrain` ignores it).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shelfsense.errors import ShelfSenseError

from . import backbone, backbone_v2, features
from .config import TrainConfig
from .data import GroceryData, read_rgb, to_input

TOP_VERSION = 1
NAMES = ("v1", "v2")
Views = Callable[[], np.ndarray]  # the rendered train views, rendered on first call (shared by the branches)


@dataclass
class Branch:
    name: str
    trunk: Any  # frozen Keras model: image 0..255 -> activations
    new_top: Callable[[], Any]  # a fresh top (pretrained blocks + zero head), activations -> logits
    feats: np.ndarray  # float16 [N, views, h, w, c]
    labels: np.ndarray
    key: str  # cache key of the activations


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _probe(data: GroceryData) -> np.ndarray:
    return np.stack([to_input(read_rgb(p), 224) for p, _ in data.train[:: max(1, len(data.train) // 4)][:4]])


def _check(name: str, path: Path, agreement: float, quiet: bool) -> None:
    if agreement < 0.99:
        raise ShelfSenseError(f"the Keras rebuild of {path} disagrees with it (cosine {agreement:.4f})")
    _log(f"{name}: backbone rebuild agrees with the TFLite: lowest cosine {agreement:.4f}", quiet)


def _features(
    trunk: Any, data: GroceryData, path: Path, cache: Path, cfg: TrainConfig, quiet: bool, views: Views, **extra: Any
) -> tuple[np.ndarray, np.ndarray, str]:
    key_parts = {
        "backbone": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
        "train": [str(p.relative_to(data.root)) for p, _ in data.train],
        "size": cfg.size,
        "views": cfg.views,
        "seed": cfg.seed,
        **extra,
    }
    key = features.cache_key(**key_parts)
    feats, labels = features.trunk_features(
        trunk, data, cache, seed=cfg.seed, views=cfg.views, workers=cfg.threads, key=key, quiet=quiet, rendered=views
    )
    return feats, labels, key


def prepare_v1(
    keras: Any, data: GroceryData, path: Path, cache: Path, cfg: TrainConfig, quiet: bool, views: Views
) -> Branch:
    layers = backbone.read_layers(path)
    _check("v1", path, backbone.check_against_tflite(keras, layers, path, _probe(data)), quiet)
    trunk = backbone.build_trunk(keras, layers, cfg.size, cfg.split)
    # The key of the single-backbone recipe (v2 model), so that its activation cache stays valid.
    feats, labels, key = _features(trunk, data, path, cache, cfg, quiet, views, split=cfg.split)
    n = len(data.fine_names)

    def new_top() -> Any:
        return backbone.build_top(keras, layers, cfg.split, feats.shape[2:], n, cfg.dropout)

    return Branch("v1", trunk, new_top, feats, labels, key)


def prepare_v2(
    keras: Any, data: GroceryData, path: Path, cache: Path, cfg: TrainConfig, quiet: bool, views: Views
) -> Branch:
    ops, input_index = backbone_v2.read_ops(path)
    _check("v2", path, backbone_v2.check_against_tflite(keras, ops, input_index, path, _probe(data)), quiet)
    trunk = backbone_v2.build_trunk(keras, ops, input_index, cfg.size, cfg.v2_split)
    feats, labels, key = _features(trunk, data, path, cache, cfg, quiet, views, arch="mobilenet_v2", split=cfg.v2_split)
    n = len(data.fine_names)

    def new_top() -> Any:
        return backbone_v2.build_top(keras, ops, cfg.v2_split, cfg.v2_last, feats.shape[2:], n, cfg.dropout)

    return Branch("v2", trunk, new_top, feats, labels, key)


def top_path(branch: Branch, cfg: TrainConfig, cache: Path) -> Path:
    """Where the trained top of this branch and recipe is kept."""
    recipe = asdict(cfg.fit_config()) | {
        "dropout": cfg.dropout,
        "holdout_every": cfg.holdout_every,
        "top_version": TOP_VERSION,
        "features": branch.key,
    }
    if branch.name == "v2":
        recipe["v2_last"] = cfg.v2_last
    key = features.cache_key(**recipe)
    return cache / f"top-{branch.name}-{key}.weights.h5"
