"""Training configuration of the default grocery model; every default here is what the shipped model used."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .fit import FitConfig


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    size: int = 192  # model input side, pixels
    split: int = 10  # v1: blocks 1..split frozen (cached), split+1..13 fine-tuned with the new head
    # v2: blocks up to v2_split frozen (cached, 12x12x96 at 192), v2_split+1..v2_last fine-tuned with the head.
    # v2_last 16 drops the backbone's last 1x1 conv to 1280 channels (block 17): with it the fused file is 6.4 MB.
    v2_split: int = 12
    v2_last: int = 16
    branches: tuple[str, ...] = ("v1", "v2")  # the exported model averages these branches' logits
    retrain: bool = False  # train every branch's top even when the cache holds one of the same recipe
    views: int = 8  # cached views per training image: the whole photo + views-1 shelf-slot views
    epochs: int = 20
    views_per_epoch: int = 2  # each image is seen this many times an epoch, each time as a random cached view
    batch: int = 64
    lr: float = 3e-4  # peak AdamW learning rate (the head learns fit.HEAD_LR_MULT times faster)
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    label_smoothing: float = 0.1
    coarse_weight: float = 0.5  # weight of the coarse-class loss term (fit.hierarchical_loss)
    dropout: float = 0.2
    holdout_every: int = 0  # 0: train on all of train; k: hold out every k-th image per class for choices
    seed: int = 0
    threads: int = 2
    max_images: int | None = None  # smoke runs train on a few images only
    calib_images: int = 300  # representative dataset size for INT8 calibration

    def fit_config(self) -> FitConfig:
        return FitConfig(
            epochs=self.epochs,
            batch=self.batch,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup_epochs=self.warmup_epochs,
            label_smoothing=self.label_smoothing,
            views_per_epoch=self.views_per_epoch,
            seed=self.seed,
            coarse_weight=self.coarse_weight,
        )


def smoke(cfg: TrainConfig) -> TrainConfig:
    """A run that exercises every step in well under a minute: tiny input, few images, one epoch."""
    return replace(cfg, size=32, views=2, epochs=1, batch=8, max_images=16, calib_images=8, holdout_every=4)
