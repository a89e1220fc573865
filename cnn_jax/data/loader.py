"""Any data set by name, as arrays: `load_split("fashion_mnist", "train")`.

Registered data sets with a `load` function (`cnn_jax.data.datasets`: digits,
Fashion-MNIST) are prepared offline by `cnn_jax.data.builders`; every other name
goes to TFDS's registry. Either way the split is read through
`tfds.data_source` (array_record files, no TensorFlow needed to read).
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

from cnn_jax.data import builders, datasets
from cnn_jax.data.idx import DataError
from cnn_jax.errors import ConfigError


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
    name: a registered data set (`cnn_jax.data.DATASETS`) or any TFDS name.
    data_dir: where raw files are looked for (Fashion-MNIST's IDX files).
    tfds_dir: the TFDS data dir holding prepared data sets.
    download: let TFDS download and prepare a registered data set that is not
      prepared yet (needs network, and TensorFlow for image data sets).
  """
  root = tfds_data_dir(tfds_dir)
  info = datasets.DATASETS.get(name) if name in datasets.DATASETS else None
  if info and info.offline:
    if info.tfds_name and (root / info.tfds_name).is_dir():  # TFDS's own copy, if prepared
      official = tfds.builder(info.tfds_name, data_dir=str(root))
      if official.is_prepared() and official.info.file_format.value == "array_record":
        return official
    make = functools.partial(
        builders.builder_class(info), data_dir=str(root), file_format="array_record",
        raw_dir=data_dir,
    )
    builder = make()
    try:
      if not builder.is_prepared():
        with _file_lock(root / f".{builder.name}.lock"):
          builder = make()  # another process may have prepared it while we waited
          if not builder.is_prepared():
            builder.download_and_prepare()
      return builder
    except DataError:
      if not (download and info.tfds_name):
        raise
      # No raw files here, but the user lets TFDS download its own copy: below.
  tfds_name = info.tfds_name if info and info.tfds_name else name
  try:
    builder = tfds.builder(tfds_name, data_dir=str(root))
  except tfds.core.registered.DatasetNotFoundError:
    offline = [n for n in datasets.DATASETS.names() if datasets.get(n).offline]
    raise UnknownDatasetError(
        f"Unknown data set {name!r}. Offline data sets: {', '.join(offline)}; "
        "any other name must be a TFDS data set (see https://www.tensorflow.org/datasets/catalog)."
    ) from None
  if not builder.is_prepared() and not download:
    raise DataError(
        f"TFDS data set {tfds_name!r} is not prepared in {root}. On a machine with network access "
        f"run `tfds build {tfds_name} --file_format=array_record --data_dir={root}` (image data "
        "sets need `pip install tensorflow` to prepare), or let TFDS download it: "
        "--config.data.download=True (experiments.main) or --download (experiments.benchmark, "
        "experiments.probe)."
    )
  if download:
    builder.download_and_prepare(file_format="array_record")
  return builder


@dataclasses.dataclass(frozen=True)
class SplitInfo:
  """What a prepared split holds, read from its TFDS metadata (no example is read)."""

  image_key: str
  label_key: str
  image_shape: tuple[int | None, ...]  # (H, W, C); None where the size varies
  num_examples: int
  num_classes: int
  class_names: tuple[str, ...] | None


def split_builder_info(builder: tfds.core.DatasetBuilder, name: str, split: str) -> SplitInfo:
  """The keys, shapes and sizes of `split`; a ConfigError if the data set has no such split."""
  image_key, label_key = builder.info.supervised_keys
  known = list(builder.info.splits.keys()) if builder.info.splits else []
  if known and split not in known:
    raise ConfigError(f"Data set {name!r} has no split {split!r}; its splits are {known}.")
  shape = tuple(builder.info.features[image_key].shape)
  label_feature = builder.info.features[label_key]
  names = getattr(label_feature, "names", None)
  return SplitInfo(
      image_key=image_key,
      label_key=label_key,
      image_shape=shape if len(shape) == 3 else (*shape, 1),
      num_examples=int(builder.info.splits[split].num_examples) if known else 0,
      num_classes=int(label_feature.num_classes),
      class_names=tuple(names) if names and not names[0].isdigit() else None,
  )


def load_split(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    tfds_dir: str | None = None,
    download: bool = False,
    max_bytes: int | None = None,
    too_big: str | None = None,
) -> Split:
  """Reads a whole split into host memory as uint8 images and int32 labels.

  With `max_bytes`, a split whose images take more is refused before it is read (a
  ConfigError naming the streaming source, `cnn_jax.data.stream`, or saying `too_big`).
  """
  builder = dataset_builder(name, data_dir=data_dir, tfds_dir=tfds_dir, download=download)
  info = split_builder_info(builder, name, split)
  if max_bytes is not None:
    from cnn_jax.data import stream  # it imports this module

    stream.check_fits_device(name, split, info.num_examples, info.image_shape, max_bytes,
                             too_big or stream.STREAM_FIX)
  source = builder.as_data_source(split=split)
  try:
    records = source.__getitems__(range(len(source)))
  except TypeError:  # some sources (e.g. tfds.testing's mock) only index one at a time
    records = [source[i] for i in range(len(source))]
  images = np.stack([np.asarray(r[info.image_key]) for r in records])
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype != np.uint8:
    raise DataError(f"{name}: expected uint8 images, got {images.dtype}.")
  labels = np.asarray([r[info.label_key] for r in records], np.int32)
  return Split(
      name=name,
      split=split,
      images=images,
      labels=labels,
      num_classes=info.num_classes,
      class_names=info.class_names,
  )
