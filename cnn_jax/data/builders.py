"""TFDS builders for the two data sets that work offline.

Both write array_record files with `Tensor` features, so preparing and reading
them needs no TensorFlow. They are prepared once into the TFDS data dir and
read back through `tfds.data_source` like any other TFDS data set.

* `digits`: scikit-learn's 1,797 8x8 handwritten digits (UCI optdigits test
  set), pixel values 0..16 stored as uint8 `round(v * 255 / 16)` (injective, so
  nothing is lost). Split: a fixed stratified 80/20 split - for each class, the
  indices of that class are permuted by `numpy.random.default_rng(0)` (classes in
  order 0..9, one generator) and the first `round(0.2 * n_class)` go to `test`.
  That gives 1,438 train / 359 test images. The split never depends on the
  experiment's seed.
* `fashion_mnist_idx`: the real Fashion-MNIST, 60,000 train / 10,000 test
  28x28 images, from the four verified IDX files (`cnn_jax.data.idx`).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from cnn_jax.data import idx

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


def digits_split() -> dict[str, np.ndarray]:
  """The fixed, stratified 80/20 split of scikit-learn's digits: split -> indices."""
  from sklearn.datasets import load_digits

  labels = load_digits().target
  rng = np.random.default_rng(DIGITS_SPLIT_SEED)
  train, test = [], []
  for c in range(10):
    members = rng.permutation(np.flatnonzero(labels == c))
    n_test = int(round(DIGITS_TEST_FRACTION * len(members)))
    test.append(members[:n_test])
    train.append(members[n_test:])
  return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


def _image_features(shape: tuple[int, int, int], num_classes: int, names=None):
  label = (
      tfds.features.ClassLabel(names=list(names))
      if names
      else tfds.features.ClassLabel(num_classes=num_classes)
  )
  return tfds.features.FeaturesDict(
      {"image": tfds.features.Tensor(shape=shape, dtype=np.uint8), "label": label}
  )


class Digits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """scikit-learn's 8x8 digits with a fixed stratified 80/20 split."""

  name = "digits"
  VERSION = tfds.core.Version("1.0.0")

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=_image_features((8, 8, 1), 10),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in ("train", "test")}

  def _generate_examples(self, split: str):
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)[..., None]
    for i in digits_split()[split]:
      yield int(i), {"image": images[i], "label": int(digits.target[i])}


class FashionMnistIdx(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Fashion-MNIST built from its four verified IDX files (no download)."""

  name = "fashion_mnist_idx"
  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = []

  def __init__(self, *, idx_dir: str | None = None, **kwargs):
    self._idx_dir = idx_dir
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=_image_features((28, 28, 1), 10, FASHION_MNIST_CLASSES),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    arrays = idx.load_fashion_mnist_idx(self._idx_dir)
    return {split: self._generate_examples(*arrays[split]) for split in ("train", "test")}

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
    for i in range(len(labels)):
      yield i, {"image": images[i], "label": int(labels[i])}
