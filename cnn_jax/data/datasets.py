"""Data set descriptions, registered by name: everything the code knows about a data set.

The loader, the benchmark, the anchors and the tables all read these entries;
adding a data set means adding one `register(DatasetInfo(...))` call, nothing else:

  register(DatasetInfo(
      name="my_data", image_shape=(28, 28, 1), num_classes=10,
      splits={"train": 5_000, "test": 1_000},
      load=lambda split, data_dir: (images_uint8_NHWC, labels_int),   # offline data
      feature_params={"hog": dict(pixels_per_cell=4, cells_per_block=2)},
  ))

A data set either has a `load` function (served offline: prepared once into the
TFDS data dir as array_record files by a generic builder, then read back with
`tfds.data_source`) or is a TFDS data set (`tfds_name`), which must be prepared
where the network allows. Names that are not registered still work in
`experiments.main` when TFDS knows them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from cnn_jax.data import idx
from cnn_jax.registry import Registry

# (images uint8 [N, H, W, C] or [N, H, W], labels int [N][, example ids [N]]) of one split;
# the ids fix the order TFDS stores the examples in (default: their positions).
Arrays = tuple[np.ndarray, ...]


@dataclasses.dataclass(frozen=True, eq=False)  # identity: entries are unique by name
class DatasetInfo:
  """One data set.

  Attributes:
    name: registry name (`--config.data.name`, `--dataset`).
    image_shape: `(H, W, C)` of the stored images (uint8).
    num_classes: number of labels.
    splits: split name -> number of examples.
    class_names: the label names, or None when the labels are the names (digits).
    load: offline data: `(split, data_dir) -> (images, labels)`. `data_dir` is
      `--config.data.data_dir` (None: the entry's own default place).
    version: version of the prepared files (bump it when `load` changes its output).
    tfds_name: a TFDS data set with these contents. With `load`, a prepared TFDS
      copy is preferred when one exists; without `load`, TFDS is the only source.
    anchors: published results on this data set, key -> (description, accuracy);
      the keys are method names shared across data sets (see `cnn_jax.anchors`).
    feature_params: extractor name -> suggested parameters for this image size
      (the benchmark uses them; `experiments.probe` defaults to them).
    note: a line printed under every table of this data set.
  """

  name: str
  image_shape: tuple[int, int, int]
  num_classes: int
  splits: Mapping[str, int]
  class_names: tuple[str, ...] | None = None
  load: Callable[[str, str | None], Arrays] | None = None
  version: str = "1.0.0"
  tfds_name: str | None = None
  anchors: Mapping[str, tuple[str, float]] = dataclasses.field(default_factory=dict)
  feature_params: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  note: str = ""

  @property
  def offline(self) -> bool:
    return self.load is not None

  def features(self, extractor: str) -> dict[str, Any]:
    """The suggested parameters of `extractor` on this data set (empty: its defaults)."""
    return dict(self.feature_params.get(extractor, {}))


DATASETS: Registry[DatasetInfo] = Registry("data set")


def builder_name(info: DatasetInfo) -> str:
  """The prepared folder's name: the data set's own, unless TFDS has one of that name."""
  return f"{info.name}_offline" if info.tfds_name == info.name else info.name


def register(info: DatasetInfo) -> DatasetInfo:
  DATASETS.register(info.name)(info)
  return info


def get(name: str) -> DatasetInfo:
  """The registered data set `name`; an unknown name is an error listing the known ones."""
  return DATASETS.get(name)


# ------------------------------------------------------------------------------- digits
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


def digits_split() -> dict[str, np.ndarray]:
  """The fixed, stratified 80/20 split of scikit-learn's digits: split -> indices.

  For each class (in order 0..9, one generator), the indices of that class are
  permuted by `numpy.random.default_rng(0)` and the first `round(0.2 * n_class)`
  go to `test`: 1,438 train / 359 test, never depending on an experiment's seed.
  """
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


def _load_digits(split: str, data_dir: str | None) -> Arrays:
  """Pixel values 0..16 stored as uint8 `round(v * 255 / 16)` (injective: nothing lost)."""
  del data_dir  # shipped inside scikit-learn
  from sklearn.datasets import load_digits

  digits = load_digits()
  images = np.round(digits.images * 255.0 / 16.0).astype(np.uint8)[..., None]
  rows = digits_split()[split]
  return images[rows], digits.target[rows], rows  # keys: the original indices


# Published results: the anchors our tables print beside their own numbers
# (../shared/ANCHORS.md). Keys name the method, so one experiment finds its anchor
# on every data set that has one.
register(DatasetInfo(
    name="digits",
    image_shape=(8, 8, 1),
    num_classes=10,
    splits={"train": 1_438, "test": 359},
    load=_load_digits,
    # scikit-learn's example: first half train, second half test.
    anchors={
        "svc_rbf_raw": ("SVC(gamma=0.001), raw pixels", 0.969),
        "linear_raw": ("scaler + LogisticRegression, raw pixels", 0.939),
        "linear_svc_raw": ("LinearSVC, raw pixels", 0.910),
    },
    feature_params={
        "hog": dict(orientations=9, pixels_per_cell=2, cells_per_block=2),
        "lbp": dict(pixels_per_cell=4),
        "gabor": dict(frequencies=(0.25, 0.35, 0.45), orientations=8, pool=4),
        "random_conv": dict(features=64, kernel_size=3, pool=2),
        "kmeans": dict(num_centroids=128, patch_size=3, num_patches=50_000, iterations=10),
    },
    note=(
        "Digits anchors use scikit-learn's half/half split; this table uses the fixed "
        "stratified 80/20 split (cnn_jax/data/datasets.py)."
    ),
))

# -------------------------------------------------------------------- 28x28 gray images
# Feature parameters shared by the 28x28 data sets (Fashion-MNIST, MNIST).
FEATURES_28 = {
    "hog": dict(orientations=9, pixels_per_cell=4, cells_per_block=2),
    "lbp": dict(pixels_per_cell=7),
    "gabor": dict(frequencies=(0.1, 0.2, 0.3, 0.4), orientations=8, pool=7),
    "random_conv": dict(features=64, kernel_size=5, pool=4),
    "kmeans": dict(num_centroids=400, patch_size=6, num_patches=100_000, iterations=10),
}


def _load_fashion_mnist(split: str, data_dir: str | None) -> Arrays:
  return idx.load_fashion_mnist_idx(data_dir)[split]


register(DatasetInfo(
    name="fashion_mnist",
    image_shape=(28, 28, 1),
    num_classes=10,
    splits={"train": 60_000, "test": 10_000},
    class_names=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    load=_load_fashion_mnist,
    tfds_name="fashion_mnist",
    # Xiao, Rasul & Vollgraf 2017 (arXiv:1708.07747) and the data set's README.
    anchors={
        "human": ("human (crowd-sourced, 1,000 images)", 0.835),
        "svc_linear_raw": ("SVC linear kernel, C=1, raw pixels", 0.839),
        "linear_raw": ("LogisticRegression, raw pixels", 0.842),
        "mlp_raw": ("MLP 100-10 ReLU, raw pixels", 0.870),
        "svc_rbf_raw": ("SVC RBF kernel, C=10, raw pixels", 0.897),
        "two_conv": ("2 conv + pooling (TensorFlow tutorial)", 0.916),
        "hog_svm": ("HOG + SVM", 0.926),
        "two_conv_bn_aug": ("2 conv + 3 FC, batch norm, augmentation", 0.934),
        "googlenet": ("GoogLeNet, cross-entropy", 0.937),
        "resnet18_aug": ("ResNet-18 with augmentation", 0.949),
        "wrn_40_4": ("WRN-40-4", 0.967),
    },
    feature_params=FEATURES_28,
))

register(DatasetInfo(
    name="mnist",
    image_shape=(28, 28, 1),
    num_classes=10,
    splits={"train": 60_000, "test": 10_000},
    tfds_name="mnist",
    # LeCun et al. 1998, the MNIST page, Khan 2017, Bruna & Mallat 2013.
    anchors={
        "linear_raw": ("linear classifier, raw pixels", 0.880),
        "svc_rbf_raw": ("RBF SVM, raw pixels", 0.986),
        "hog_svm": ("HOG + SVM", 0.9936),
        "lenet5": ("LeNet-5", 0.9905),
        "scattering_svm": ("scattering + SVM", 0.9957),
    },
    feature_params=FEATURES_28,
))

def _load_cifar10(split: str, data_dir: str | None) -> Arrays:
  from cnn_jax.data.cifar import load_cifar10  # reads the official python archive

  return load_cifar10(split, data_dir)


register(DatasetInfo(
    name="cifar10",
    image_shape=(32, 32, 3),
    num_classes=10,
    splits={"train": 50_000, "test": 10_000},
    class_names=(
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ),
    load=_load_cifar10,
    tfds_name="cifar10",
    anchors={
        "linear_raw": ("raw pixels + linear", 0.37),
        "scattering_linear": ("scattering 2nd order + linear", 0.705),
        "kmeans_triangle": ("single-layer k-means, triangle activation (Coates et al. 2011)", 0.796),
        "resnet20": ("ResNet-20 (He et al. 2016)", 0.9125),
    },
    feature_params={
        "hog": dict(orientations=9, pixels_per_cell=4, cells_per_block=2),
        "lbp": dict(pixels_per_cell=8),
        "gabor": dict(frequencies=(0.1, 0.2, 0.3, 0.4), orientations=8, pool=8),
        "random_conv": dict(features=64, kernel_size=5, pool=4),
        "kmeans": dict(num_centroids=1600, patch_size=6, num_patches=400_000, iterations=10),
    },
))
