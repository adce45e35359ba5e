"""Rebuilding the bundled grocery model (`shelfsense model train`); needs the `train` extra.

MobileNetV1 1.0 is rebuilt in Keras from the shared Apache-2.0 quantised embedding extractor (backbone), its
early blocks are frozen and their activations cached for shelf-slot views of every training photo (features,
augment), the last blocks and a new head are fine-tuned on them (fit), and the assembled network is exported as a
full-integer INT8 TFLite classifier (export). TensorFlow is imported only when training runs.
"""

from .cli import add_arguments, main, run
from .config import TrainConfig

__all__ = ["TrainConfig", "add_arguments", "main", "run"]
