"""Any TFDS data set by name, as arrays: `load_split("fashion_mnist", "train")`.

`digits` and `fashion_mnist` have builders of their own that work offline
(`cnn_jax.data.builders`); every other name goes to TFDS's registry and is read
through `tfds.data_source` (array_record files, no TensorFlow needed to read).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from cnn_jax.data import builders
from cnn_jax.data.idx import DataError
from cnn_jax.errors import ConfigError

# Names served by this package's own offline builders.
LOCAL_DATASETS = {"digits": builders.Digits, "fashion_mnist": builders.FashionMnistIdx}


class UnknownDatasetError(ConfigError):
  """The config names a data set that neither this package nor TFDS knows."""


@dataclasses.dataclass(frozen=True)
class Split:
  """One split held in host memory: `images` uint8 `[N, H, W, C]`, `labels` int32 `[N]`."""

  name: str
  split: str
  images: np.ndarray
  labels: np.ndarray
  num_classes: int
  class_names: tuple[str, ...] | None = None

  def __len__(self) -> int:
    return len(self.labels)


def tfds_data_dir(tfds_dir: str | None = None) -> pathlib.Path:
  """Where prepared TFDS data lives: the argument, `$TFDS_DATA_DIR`, or `~/tensorflow_datasets`."""
  d = tfds_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
  return pathlib.Path(d).expanduser()


@contextlib.contextmanager
def _file_lock(path: pathlib.Path):
  """Serialises preparation when several processes (e.g. pytest-xdist workers) start at once."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def dataset_builder(
    name: str,
    *,
    data_dir: str | None = None,
    tfds_dir: str | None = None,
    download: bool = False,
) -> tfds.core.DatasetBuilder:
  """Returns a prepared TFDS builder for `name`.

  Args:
    name: `digits`, `fashion_mnist`, or any TFDS name (`mnist`, `cifar10`, ...).
    data_dir: where raw files are looked for (Fashion-MNIST's IDX files).
    tfds_dir: the TFDS data dir holding prepared data sets.
    download: let TFDS download and prepare a registered data set that is not
      prepared yet (needs network, and TensorFlow for image data sets).
  """
  root = tfds_data_dir(tfds_dir)
  if name == "fashion_mnist" and (root / "fashion_mnist").is_dir():
    official = tfds.builder("fashion_mnist", data_dir=str(root))
    if official.is_prepared() and official.info.file_format.value == "array_record":
      return official
  if name in LOCAL_DATASETS:
    kwargs = {"idx_dir": data_dir} if name == "fashion_mnist" else {}
    make = functools.partial(
        LOCAL_DATASETS[name], data_dir=str(root), file_format="array_record", **kwargs
    )
    builder = make()
    if not builder.is_prepared():
      with _file_lock(root / f".{builder.name}.lock"):
        builder = make()  # another process may have prepared it while we waited
        if not builder.is_prepared():
          builder.download_and_prepare()
    return builder
  try:
    builder = tfds.builder(name, data_dir=str(root))
  except tfds.core.registered.DatasetNotFoundError:
    raise UnknownDatasetError(
        f"Unknown data set {name!r}. Offline data sets: {', '.join(sorted(LOCAL_DATASETS))}; "
        "any other name must be a TFDS data set (see https://www.tensorflow.org/datasets/catalog)."
    ) from None
  if not builder.is_prepared() and not download:
    raise DataError(
        f"TFDS data set {name!r} is not prepared in {root}. On a machine with network access run "
        f"`tfds build {name} --file_format=array_record --data_dir={root}` (image data sets need "
        "`pip install tensorflow` to prepare), or pass --config.data.download=True."
    )
  if download:
    builder.download_and_prepare(file_format="array_record")
  return builder


def load_split(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    tfds_dir: str | None = None,
    download: bool = False,
) -> Split:
  """Reads a whole split into host memory as uint8 images and int32 labels."""
  builder = dataset_builder(name, data_dir=data_dir, tfds_dir=tfds_dir, download=download)
  image_key, label_key = builder.info.supervised_keys
  known = list(builder.info.splits.keys()) if builder.info.splits else []
  if known and split not in known:
    raise ConfigError(f"Data set {name!r} has no split {split!r}; its splits are {known}.")
  source = builder.as_data_source(split=split)
  try:
    records = source.__getitems__(range(len(source)))
  except TypeError:  # some sources (e.g. tfds.testing's mock) only index one at a time
    records = [source[i] for i in range(len(source))]
  images = np.stack([np.asarray(r[image_key]) for r in records])
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype != np.uint8:
    raise DataError(f"{name}: expected uint8 images, got {images.dtype}.")
  labels = np.asarray([r[label_key] for r in records], np.int32)
  label_feature = builder.info.features[label_key]
  names = getattr(label_feature, "names", None)
  return Split(
      name=name,
      split=split,
      images=images,
      labels=labels,
      num_classes=int(label_feature.num_classes),
      class_names=tuple(names) if names and not names[0].isdigit() else None,
  )
