"""A tiny synthetic data set, registered the way a user adds one: one `register` call.

Ten classes of 28x28 images: class c is a bright horizontal bar at row 2 + 2c plus
noise, so every representation can learn it. Import this module to register it.
"""

import numpy as np

from cnn_jax import data

NAME = "tiny_bars"


def _load(split: str, data_dir: str | None):
  del data_dir
  n = {"train": 256, "test": 64}[split]
  rng = np.random.default_rng({"train": 0, "test": 1}[split])
  labels = np.arange(n) % 10
  images = rng.integers(0, 60, (n, 28, 28, 1))
  for i, c in enumerate(labels):
    images[i, 2 + 2 * c : 4 + 2 * c, 4:24] = 255
  return images.astype(np.uint8), labels


if NAME not in data.DATASETS:
  data.register(data.DatasetInfo(
      name=NAME, image_shape=(28, 28, 1), num_classes=10, splits={"train": 256, "test": 64},
      load=_load, feature_params={"hog": dict(pixels_per_cell=4, cells_per_block=2)},
      note="A synthetic test data set.",
  ))
