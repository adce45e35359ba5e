"""Fine-tuning of the top blocks and the new head on cached trunk activations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# The head's logits are multiplied by this during training, so that under Adam (whose step does not depend on
# the gradient's scale) the head learns HEAD_LR_MULT times faster than the pretrained blocks. It is folded into
# the Dense weights for export.
HEAD_LR_MULT = 10.0


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    epochs: int
    batch: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    label_smoothing: float
    views_per_epoch: int  # views of each image drawn per epoch
    seed: int
    coarse_weight: float = 0.0  # weight of the coarse-class cross-entropy (fine probabilities summed per coarse)


def hierarchical_loss(keras: Any, cfg: FitConfig, coarse_of: np.ndarray | None) -> Any:
    """Fine cross-entropy (label smoothing) plus coarse_weight x the cross-entropy of the coarse class, whose
    probability is the sum of its fine classes' (as `shelfsense model eval` scores coarse accuracy)."""
    fine = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=cfg.label_smoothing)
    if not cfg.coarse_weight or coarse_of is None:
        return fine
    ops = keras.ops
    member = np.eye(int(coarse_of.max()) + 1, dtype=np.float32)[coarse_of]  # [fine, coarse] 0/1

    def loss(y_true: Any, logits: Any) -> Any:
        p_coarse = ops.matmul(ops.softmax(logits, axis=-1), member)
        y_coarse = ops.matmul(y_true, member)
        coarse = -ops.sum(y_coarse * ops.log(p_coarse + 1e-7), axis=-1)
        return fine(y_true, logits) + cfg.coarse_weight * ops.mean(coarse)

    return loss


def batches_cls(keras: Any) -> type:
    class ViewBatches(keras.utils.PyDataset):
        """Each epoch: every training image `per_epoch` times, each time as one of its cached views at random."""

        def __init__(self, feats: np.ndarray, labels: np.ndarray, idx: np.ndarray, cfg: FitConfig, n_classes: int):
            super().__init__()
            self.feats, self.labels, self.idx, self.cfg, self.n_classes = feats, labels, idx, cfg, n_classes
            self.rng = np.random.default_rng(cfg.seed)
            self.on_epoch_end()

        def on_epoch_end(self) -> None:
            items = np.repeat(self.idx, self.cfg.views_per_epoch)
            self.order = self.rng.permutation(items)
            self.view = self.rng.integers(0, self.feats.shape[1], len(self.order))

        def __len__(self) -> int:
            return -(-len(self.order) // self.cfg.batch)

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            sl = slice(i * self.cfg.batch, (i + 1) * self.cfg.batch)
            idx, view = self.order[sl], self.view[sl]
            y = np.eye(self.n_classes, dtype=np.float32)[self.labels[idx]]
            return self.feats[idx, view].astype(np.float32), y

    return ViewBatches


def training_model(keras: Any, top: Any) -> Any:
    """The top with its logits scaled by HEAD_LR_MULT; the head kernel starts at zero (so the pretrained blocks
    get no gradient until the head has learnt something)."""
    dense = top.get_layer("logits")
    dense.set_weights([np.zeros_like(w) for w in dense.get_weights()])
    out = keras.layers.Rescaling(HEAD_LR_MULT, name="head_lr")(top.output)
    return keras.Model(top.input, out)


def fold_head(top: Any) -> None:
    dense = top.get_layer("logits")
    dense.set_weights([w * HEAD_LR_MULT for w in dense.get_weights()])


def fit_top(
    keras: Any,
    top: Any,
    feats: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    cfg: FitConfig,
    *,
    coarse_of: np.ndarray | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    verbose: int = 0,
) -> list[dict]:
    """Trains `top` in place for a fixed number of epochs (no selection), then folds the head scale in."""
    batches = batches_cls(keras)(feats, labels, train_idx, cfg, top.output.shape[-1])
    steps = len(batches) * cfg.epochs
    warm = min(len(batches) * cfg.warmup_epochs, steps // 2)
    schedule = keras.optimizers.schedules.CosineDecay(
        cfg.lr * 0.05, max(1, steps - warm), warmup_target=cfg.lr, warmup_steps=warm, alpha=0.01
    )
    model = training_model(keras, top)
    model.compile(
        keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay), hierarchical_loss(keras, cfg, coarse_of)
    )
    history: list[dict] = []

    class Log(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
            if on_epoch is not None:
                on_epoch(epoch + 1, row)
            history.append(row)

    model.fit(batches, epochs=cfg.epochs, verbose=verbose, callbacks=[Log()])
    fold_head(top)
    return history


def predict_logits(top: Any, feats: np.ndarray, batch: int = 128) -> np.ndarray:
    out = [top(feats[i : i + batch].astype(np.float32), training=False).numpy() for i in range(0, len(feats), batch)]
    return np.concatenate(out)
