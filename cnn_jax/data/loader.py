"""Any data set by name, as arrays: `load_split("fashion_mnist", "train")`.

Registered data sets with a `load` function (`cnn_jax.data.datasets`: digits,
Fashion-MNIST) are prepared offline by `cnn_jax.data.builders`; every other name
goes to TFDS's registry. Either way the split is read through
`tfds.data_source` (array_record files, no TensorFlow needed to read).

Decoding a split record by record takes seconds (Fashion-MNIST's 70,000 images: about
4 s on a 2-core CPU), so the decoded arrays are also kept as `.npy` files, with the
training split's pixel statistics, in `<TFDS data dir>/.cnn_jax_arrays/` (`ArrayCache`).
A run that finds them imports no TFDS and reads two files. They are byte for byte the
arrays TFDS returned, and are used only while the prepared files they came from are
unchanged (preparing again, or preparing TFDS's own copy, makes them stale).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import pathlib
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
from absl import logging

from cnn_jax.data import datasets
from cnn_jax.data.idx import DataError
from cnn_jax.errors import ConfigError

if TYPE_CHECKING:
  import tensorflow_datasets as tfds


def _tfds():
  """TFDS, imported when a split is not in the array cache (it takes 0.3 s or more)."""
  import tensorflow_datasets as tfds

  from cnn_jax import console

  console.tfds_imported()
  return tfds


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
  # (mean, std) of all pixels as `pixel_statistics` computes them, when known (the array
  # cache keeps them); None for a subset, whose statistics are not those of the split.
  pixel_stats: tuple[float, float] | None = dataclasses.field(default=None, compare=False)

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
  from cnn_jax.data import builders

  tfds = _tfds()
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

  From the array cache when it holds the split (see the module's docstring), else
  through TFDS, then stored in the cache. With `max_bytes`, a split whose images take
  more is refused before it is read (a ConfigError naming the streaming source,
  `cnn_jax.data.stream`, or saying `too_big`).
  """
  cache = ArrayCache(name, split, tfds_data_dir(tfds_dir))
  shape = cache.images_shape()
  if shape is not None and max_bytes is not None:
    _check_fits(name, split, shape[0], shape[1:], max_bytes, too_big)
  cached = cache.read() if shape is not None else None
  if cached is not None:
    return cached
  loaded = _load_split_tfds(
      name, split, data_dir=data_dir, tfds_dir=tfds_dir, download=download,
      max_bytes=max_bytes, too_big=too_big,
  )
  return cache.write(loaded)


def _check_fits(name, split, num_examples, image_shape, max_bytes, too_big) -> None:
  from cnn_jax.data import stream  # it imports this module

  stream.check_fits_device(name, split, num_examples, tuple(image_shape), max_bytes,
                           too_big or stream.STREAM_FIX)


def _load_split_tfds(
    name: str, split: str, *, data_dir: str | None, tfds_dir: str | None, download: bool,
    max_bytes: int | None = None, too_big: str | None = None,
) -> Split:
  builder = dataset_builder(name, data_dir=data_dir, tfds_dir=tfds_dir, download=download)
  info = split_builder_info(builder, name, split)
  if max_bytes is not None:
    _check_fits(name, split, info.num_examples, info.image_shape, max_bytes, too_big)
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


def pixel_statistics(images: np.ndarray) -> tuple[float, float]:
  """Mean and standard deviation of all pixels of uint8 `images`, scaled to [0, 1]."""
  x = np.asarray(images).astype(np.float64) / 255.0
  return float(x.mean()), float(x.std())


class ArrayCache:
  """One decoded split as files: `<root>/.cnn_jax_arrays/<name>/<split>/`.

  `images.npy`, `labels.npy` and `info.json` (labels' class count and names, the pixel
  statistics, and the fingerprint of the prepared data: every file under the data set's
  prepared folders with its size and modification time). `read` returns None unless the
  fingerprint still matches; `write` never fails a run (a read-only data dir just means
  no cache).
  """

  VERSION = 1  # bump when `load_split` changes what it returns

  def __init__(self, name: str, split: str, root: pathlib.Path):
    self.name, self.split, self.root = name, split, root
    self.directory = root / ".cnn_jax_arrays" / name / split

  def _prepared_dirs(self) -> list[pathlib.Path]:
    """The folders `dataset_builder` may read this data set from."""
    info = datasets.DATASETS.get(self.name) if self.name in datasets.DATASETS else None
    if info is None:
      return [self.root / self.name]
    names = [info.tfds_name] if info.tfds_name else []
    if info.offline:
      names.append(datasets.builder_name(info))
    return [self.root / n for n in names]

  def fingerprint(self) -> list[Any]:
    """The prepared files (path, size, mtime in ns), sorted; empty when nothing is prepared."""
    files = []
    for top in self._prepared_dirs():
      for folder, _, names in os.walk(top):
        for n in names:
          path = pathlib.Path(folder, n)
          stat = path.stat()
          files.append([str(path.relative_to(self.root)), stat.st_size, stat.st_mtime_ns])
    return sorted(files)

  def images_shape(self) -> tuple[int, ...] | None:
    """The cached images' shape, from the .npy header alone (None: nothing usable cached)."""
    try:
      return tuple(np.load(self.directory / "images.npy", mmap_mode="r").shape)
    except (OSError, ValueError):
      return None

  def read(self) -> Split | None:
    try:
      info = json.loads((self.directory / "info.json").read_text())
      if info.get("version") != self.VERSION or info["source"] != self.fingerprint():
        return None
      images = np.load(self.directory / "images.npy", allow_pickle=False)
      labels = np.load(self.directory / "labels.npy", allow_pickle=False)
    except (OSError, ValueError, KeyError) as e:  # absent, half-written or foreign files
      if not isinstance(e, FileNotFoundError):
        logging.debug("Array cache %s unreadable (%s); reading through TFDS.", self.directory, e)
      return None
    if images.dtype != np.uint8 or labels.dtype != np.int32 or len(images) != len(labels):
      return None
    names = info["class_names"]
    return Split(
        name=self.name, split=self.split, images=images, labels=labels,
        num_classes=int(info["num_classes"]), class_names=tuple(names) if names else None,
        pixel_stats=tuple(info["pixel_stats"]),
    )

  def write(self, split: Split) -> Split:
    """Stores `split` (with its pixel statistics) and returns it with them."""
    split = dataclasses.replace(split, pixel_stats=pixel_statistics(split.images))
    source = self.fingerprint()
    if not source:  # nothing prepared (e.g. TFDS's mock data): nothing to key the cache on
      return split
    info = {
        "version": self.VERSION, "source": source, "num_classes": split.num_classes,
        "class_names": list(split.class_names) if split.class_names else None,
        "pixel_stats": list(split.pixel_stats),
    }
    try:
      self.directory.mkdir(parents=True, exist_ok=True)
      for file, array in (("images.npy", split.images), ("labels.npy", split.labels)):
        self._replace(file, lambda f, a=array: np.save(f, a, allow_pickle=False))
      self._replace("info.json", lambda f: f.write(json.dumps(info).encode()))  # last
    except OSError as e:
      logging.debug("Could not write the array cache %s: %s", self.directory, e)
    return split

  def _replace(self, file: str, write) -> None:
    """Writes `file` through a temporary file and a rename (a reader never sees half)."""
    tmp = self.directory / f".{file}.{uuid.uuid4().hex[:12]}.tmp"
    try:
      with open(tmp, "wb") as f:
        write(f)
      os.replace(tmp, self.directory / file)
    finally:
      tmp.unlink(missing_ok=True)
