"""One TFDS builder for every offline data set (a `DatasetInfo` with a `load` function).

It writes array_record files with `Tensor` features, so preparing and reading
needs no TensorFlow; the prepared data are then read back through
`tfds.data_source` like any other TFDS data set. TFDS stores the examples in
the order of their hashed keys: the keys are the positions in the arrays that
`load` returns, or the ids it returns as a third array (digits keeps its
original indices, so its stored order never changes).
"""

from __future__ import annotations

import functools
import types

import numpy as np
import tensorflow_datasets as tfds

from cnn_jax.data.datasets import DatasetInfo, builder_name


class OfflineBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Prepares `self.dataset` (a DatasetInfo) from its `load` function."""

  dataset: DatasetInfo

  def __init__(self, *, raw_dir: str | None = None, **kwargs):
    self._raw_dir = raw_dir
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    d = self.dataset
    names = d.class_names
    label = (
        tfds.features.ClassLabel(names=list(names))
        if names
        else tfds.features.ClassLabel(num_classes=d.num_classes)
    )
    return tfds.core.DatasetInfo(
        builder=self,
        description=f"{d.name} (cnn_jax offline data set)",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=tuple(d.image_shape), dtype=np.uint8),
            "label": label,
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    return {split: self._generate_examples(split) for split in self.dataset.splits}

  def _generate_examples(self, split: str):
    arrays = self.dataset.load(split, self._raw_dir)
    images, labels = np.asarray(arrays[0]), np.asarray(arrays[1])
    keys = arrays[2] if len(arrays) > 2 else range(len(labels))
    if images.ndim == 3:
      images = images[..., None]
    for key, image, label in zip(keys, images, labels):
      yield int(key), {"image": image, "label": int(label)}


@functools.cache
def builder_class(info: DatasetInfo) -> type[OfflineBuilder]:
  """A TFDS builder class for `info` (one per data set: TFDS keys builders by class)."""
  def body(ns):
    ns.update(name=builder_name(info), VERSION=tfds.core.Version(info.version), dataset=info,
              __module__=__name__)

  return types.new_class(
      f"Offline_{info.name}", (OfflineBuilder,), {"skip_registration": True}, body
  )
