"""Cached inputs of the fine-tuned part: frozen-trunk activations of K views of every training image.

View 0 of an image is the whole photo resized as the runtime resizes a crop; views 1..K-1 are shelf-slot
views (augment.shelf_view). The trunk is frozen, so its activations (float16) are computed once per view and
kept in a file outside the repository, keyed by everything that determines them.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .augment import shelf_view
from .data import GroceryData, read_rgb, to_input

CACHE_VERSION = 1


def _views_job(job: tuple[str, str, int, int, int, int]) -> np.ndarray:
    path, neighbour_path, seed, index, views, size = job
    rng = np.random.default_rng([seed, index])  # per-image stream: independent of scheduling
    img = read_rgb(Path(path))
    neighbour = read_rgb(Path(neighbour_path))
    out = np.empty((views, size, size, 3), np.uint8)
    out[0] = to_input(img, size)
    for v in range(1, views):
        out[v] = shelf_view(img, rng, neighbour, size)
    return out


def render_views(paths: list[Path], seed: int, views: int, size: int, workers: int, quiet: bool) -> np.ndarray:
    """uint8 [N, views, size, size, 3]; a neighbour product for off-centre views is another random image."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    neighbours = rng.permutation(len(paths))
    jobs = [(str(p), str(paths[neighbours[i]]), seed, i, views, size) for i, p in enumerate(paths)]
    out = np.empty((len(paths), views, size, size, 3), np.uint8)
    # spawn, not fork: the parent may already hold TensorFlow's threads.
    with mp.get_context("spawn").Pool(max(1, workers)) as pool:
        for i, v in enumerate(tqdm(pool.imap(_views_job, jobs, chunksize=8), total=len(jobs), disable=quiet or None)):
            out[i] = v
    return out


def cache_key(**parts: Any) -> str:
    return hashlib.sha256(json.dumps({**parts, "version": CACHE_VERSION}, sort_keys=True).encode()).hexdigest()[:16]


def trunk_features(
    trunk: Any,
    data: GroceryData,
    cache_dir: Path,
    *,
    seed: int,
    views: int,
    workers: int,
    key: str,
    quiet: bool,
    rendered: Callable[[], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(float16 activations [N, views, h, w, c] of train, int32 labels [N]), from the cache when present.
    `rendered`, when given, returns the views (render_views of the same arguments), so that several trunks
    can share one rendering."""
    size = trunk.input.shape[1]
    shape = (len(data.train), views, *trunk.output.shape[1:])
    path = cache_dir / f"trunk-{key}.f16"
    labels = np.array([y for _, y in data.train], np.int32)
    if path.is_file() and path.stat().st_size == int(np.prod(shape)) * 2:
        return np.fromfile(path, np.float16).reshape(shape), labels
    cache_dir.mkdir(parents=True, exist_ok=True)
    if rendered is not None:
        images = rendered()
    else:
        images = render_views([p for p, _ in data.train], seed, views, size, workers, quiet)
    feats = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), "w+", np.float16, shape)
    flat_in = images.reshape(-1, size, size, 3)
    flat_out = feats.reshape(-1, *shape[2:])
    from tqdm import tqdm

    step = 64
    for i in tqdm(range(0, len(flat_in), step), desc="trunk", disable=quiet or None):
        flat_out[i : i + step] = trunk(flat_in[i : i + step].astype(np.float32), training=False).numpy()
    feats.flush()
    out = np.array(feats)
    del feats
    path.with_suffix(".tmp.npy").unlink()
    out.tofile(path)
    return out, labels


def clean_features(trunk: Any, paths: list[Path]) -> np.ndarray:
    """Trunk activations of whole photos (val), float16."""
    size = trunk.input.shape[1]
    out = []
    for i in range(0, len(paths), 64):
        batch = np.stack([to_input(read_rgb(p), size) for p in paths[i : i + 64]]).astype(np.float32)
        out.append(trunk(batch, training=False).numpy().astype(np.float16))
    return np.concatenate(out)


def render_calibration(data: GroceryData, idx: np.ndarray, size: int, seed: int) -> np.ndarray:
    """INT8 calibration inputs: for each chosen train image, alternately its whole photo or one shelf view."""
    rng = np.random.default_rng([seed, 1])
    out = []
    for n, i in enumerate(idx):
        img = read_rgb(data.train[i][0])
        if n % 2 == 0:
            out.append(to_input(img, size))
        else:
            neighbour = read_rgb(data.train[int(rng.integers(len(data.train)))][0])
            out.append(shelf_view(img, rng, neighbour, size))
    return np.stack(out)
