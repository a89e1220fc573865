"""Streaming input: batches read from a data set's array_record files while training runs.

For data sets that do not fit in memory (`config.data.source = "stream"`). The examples
stay in the TFDS data dir (array_record files, prepared once, readable by every host) and
each step's batch is read, by grain worker threads, a few steps ahead of the step that
consumes it. The order is the device-resident source's (`cnn_jax.data.pipeline`): the
batch of global step `t` is the records `perm_e[i*B:(i+1)*B]`, `e, i = divmod(t,
steps_per_epoch)`, `perm_e = epoch_permutation(data_key, e, n)`, so both sources train on
the same batches in the same order, and the reader's whole state is the step: a resumed
run restarts the stream at its checkpoint's step and reads what an uninterrupted run reads.

Multi-host: every process computes the same permutation and reads only the rows of each
global batch that its own devices hold (a contiguous block under the 1-D data mesh); the
global batch is assembled with `jax.make_array_from_process_local_data`. Over an epoch the
processes read disjoint sets of records whose union is the epoch's.

Augmentation is not done here: the train step augments the global batch on the device with
per-example keys (`cnn_jax.data.augment`), exactly as for the device-resident source.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from cnn_jax.data.idx import DataError
from cnn_jax.data.loader import dataset_builder, split_builder_info
from cnn_jax.data.pipeline import Normalization, epoch_permutation
from cnn_jax.errors import ConfigError

if TYPE_CHECKING:
  import grain

SOURCES = ("device", "stream")
# Batches read ahead by the grain threads, and batches placed on the device ahead of the step.
HOST_PREFETCH = 8
DEVICE_PREFETCH = 2
# Records per read when computing pixel statistics (bounded memory: ~chunk x image bytes).
STATS_CHUNK = 2048


@dataclasses.dataclass(frozen=True, eq=False)
class StreamingSplit:
  """A split read on demand: `read(rows)` -> (images uint8 `[b, H, W, C]`, labels int32 `[b]`).

  `records` maps the split's positions to stored record ids (all of them, or the labelled
  subset of `data.num_train`); position `i` of an epoch's permutation reads record
  `records[i]`, as the device-resident source gathers row `i` of its (subset) split.
  """

  name: str
  split: str
  source: Any  # a random-access data source of dicts (tfds.data_source / grain)
  image_key: str
  label_key: str
  image_shape: tuple[int, int, int]
  num_classes: int
  records: np.ndarray
  class_names: tuple[str, ...] | None = None

  def __len__(self) -> int:
    return len(self.records)

  def subset(self, positions: np.ndarray) -> StreamingSplit:
    """The examples at `positions` (as `pipeline.subset` keeps them for the device source)."""
    if len(positions) == len(self):
      return self
    return dataclasses.replace(self, records=self.records[positions])

  def read_records(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The stored records `ids` (not positions), in that order."""
    ids = [int(i) for i in ids]
    try:
      rows = self.source.__getitems__(ids)
    except (TypeError, AttributeError):  # sources that only index one record at a time
      rows = [self.source[i] for i in ids]
    images = np.stack([np.asarray(r[self.image_key]) for r in rows])
    if images.ndim == 3:
      images = images[..., None]
    return images, np.asarray([r[self.label_key] for r in rows], np.int32)

  def read(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return self.read_records(self.records[positions])


def open_split(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    tfds_dir: str | None = None,
    download: bool = False,
) -> StreamingSplit:
  """Opens a prepared split for streaming (prepares an offline data set once if needed)."""
  builder = dataset_builder(name, data_dir=data_dir, tfds_dir=tfds_dir, download=download)
  info = split_builder_info(builder, name, split)
  if None in info.image_shape:
    raise DataError(
        f"{name}: images of varying size ({info.image_shape}) cannot be batched; prepare the "
        "data set at a fixed size."
    )
  source = builder.as_data_source(split=split)
  return StreamingSplit(
      name=name, split=split, source=source, image_key=info.image_key,
      label_key=info.label_key, image_shape=info.image_shape, num_classes=info.num_classes,
      records=np.arange(len(source)), class_names=info.class_names,
  )


def streamed_normalization(split: StreamingSplit, image_size: int | None = None) -> Normalization:
  """Mean and std of every pixel of the whole split, read in chunks (memory: one chunk).

  Sums of the uint8 values and of their squares are exact integers, so this equals
  `Normalization.from_images` of the whole split to float rounding.
  """
  total = total_sq = count = 0
  for start in range(0, len(split), STATS_CHUNK):
    images, _ = split.read(np.arange(start, min(start + STATS_CHUNK, len(split))))
    x = images.astype(np.int64)
    total += int(x.sum())
    total_sq += int((x * x).sum())
    count += x.size
  mean = total / count / 255.0
  var = max(total_sq / count / 255.0**2 - mean * mean, 0.0)
  return Normalization.from_stats(mean, float(np.sqrt(var)), image_size)


class EpochOrders:
  """The epoch permutations as host arrays, computed once per epoch (thread-safe).

  The same `epoch_permutation` the device-resident source runs, here on the host's CPU
  device: threefry bits and the stable sort behind `jax.random.permutation` do not depend
  on the backend, so both sources get the same order.
  """

  def __init__(self, data_key: jax.Array, n: int, keep: int = 2):
    self._key_data = np.asarray(jax.random.key_data(data_key))
    self._impl = jax.random.key_impl(data_key)
    self._n, self._keep = n, keep
    self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
    self._lock = threading.Lock()
    try:
      self._device = jax.local_devices(backend="cpu")[0]
    except RuntimeError:  # no CPU backend: the default device computes the same bits
      self._device = None

  def __call__(self, epoch: int) -> np.ndarray:
    with self._lock:
      if epoch not in self._cache:
        key = jax.random.wrap_key_data(jax.device_put(self._key_data, self._device),
                                       impl=self._impl)
        self._cache[epoch] = np.asarray(_permutation(key, epoch, self._n))
        while len(self._cache) > self._keep:
          self._cache.popitem(last=False)
      return self._cache[epoch]


_permutation = jax.jit(epoch_permutation, static_argnums=2)


def process_rows(sharding: jax.sharding.Sharding, batch_size: int) -> slice:
  """The rows of a `[batch_size, ...]` global batch that this process's devices hold."""
  spans = {
      (idx[0].start or 0, batch_size if idx[0].stop is None else idx[0].stop)
      for idx in sharding.addressable_devices_indices_map((batch_size,)).values()
  }
  start, stop = min(s for s, _ in spans), max(e for _, e in spans)
  if sum(e - s for s, e in spans) != stop - start:
    raise ConfigError(
        "This process's devices hold rows of the global batch that are not one block; the "
        "streaming source needs a 1-D data mesh over devices ordered by process."
    )
  return slice(start, stop)


@dataclasses.dataclass(frozen=True)
class BatchOrder:
  """Which records the process reads at each global step (a pure function of the step)."""

  split: StreamingSplit
  orders: EpochOrders
  batch_size: int
  steps_per_epoch: int
  rows: slice  # this process's rows of every global batch

  def positions(self, step: int) -> np.ndarray:
    """Positions in the split of this process's rows of global step `step`'s batch."""
    epoch, index = divmod(int(step), self.steps_per_epoch)
    start = index * self.batch_size
    return self.orders(epoch)[start + self.rows.start : start + self.rows.stop]

  def records(self, step: int) -> np.ndarray:
    """The stored record ids of this process's rows of step `step` (for checks and tests)."""
    return self.split.records[self.positions(step)]

  def read(self, step: int) -> tuple[np.ndarray, np.ndarray]:
    return self.split.read(self.positions(step))


def stream_batches(order: BatchOrder, start_step: int, stop_step: int, *,
                   num_threads: int) -> grain.IterDataset:
  """A grain data set of this process's batches (images, labels) of steps start..stop-1,
  read by `num_threads` threads up to `HOST_PREFETCH` steps ahead."""
  import grain  # only when streaming: it costs a device-resident start half a second

  return (
      grain.MapDataset.range(start_step, stop_step)
      .map(order.read)
      .to_iter_dataset(grain.ReadOptions(num_threads=max(num_threads, 1),
                                         prefetch_buffer_size=HOST_PREFETCH))
  )


def to_global(local: tuple[np.ndarray, np.ndarray], sharding: jax.sharding.Sharding,
              batch_size: int) -> tuple[jax.Array, jax.Array]:
  """This process's rows -> the global batch, sharded along the data axis (across hosts)."""
  return tuple(
      jax.make_array_from_process_local_data(sharding, x, (batch_size, *x.shape[1:]))
      for x in local
  )


def prefetch_to_device(batches: Iterator[Any], sharding: jax.sharding.Sharding,
                       batch_size: int, size: int = DEVICE_PREFETCH) -> Iterator[Any]:
  """Global device batches, `size` transfers in flight ahead of the consumer."""
  queue: collections.deque = collections.deque()
  batches = iter(batches)
  for local in batches:
    queue.append(to_global(local, sharding, batch_size))
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def default_threads() -> int:
  return min(16, max(2, (os.cpu_count() or 2)))


def device_batches(
    split: StreamingSplit,
    data_key: jax.Array,
    sharding: jax.sharding.NamedSharding,
    *,
    batch_size: int,
    steps_per_epoch: int,
    start_step: int,
    stop_step: int,
    num_threads: int = 0,
) -> Iterator[tuple[jax.Array, jax.Array]]:
  """The global batches of steps `start_step..stop_step-1`, on the devices with `sharding`.

  The training loop's whole use of this module: restarting at a checkpoint's step gives
  the batches an uninterrupted run reads from that step on.
  """
  order = BatchOrder(split, EpochOrders(data_key, len(split)), batch_size, steps_per_epoch,
                     process_rows(sharding, batch_size))
  host = stream_batches(order, start_step, stop_step, num_threads=num_threads or default_threads())
  return prefetch_to_device(iter(host), sharding, batch_size)


@functools.cache
def _available_bytes() -> int | None:
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


# The device-resident source holds a whole split in host memory (twice while reading it)
# and on every device; above this it is refused in favour of streaming.
DEVICE_RESIDENT_MAX_BYTES = 1 << 30


def device_resident_limit() -> int:
  """Bytes a split may take to be device-resident: 1 GiB, less where host memory is short."""
  available = _available_bytes()
  return min(DEVICE_RESIDENT_MAX_BYTES, available // 4) if available else DEVICE_RESIDENT_MAX_BYTES


STREAM_FIX = "Stream it from its array_record files instead: --config.data.source=stream."


def check_fits_device(name: str, split: str, num_examples: int, image_shape: tuple[int, ...],
                      limit: int | None = None, fix: str = STREAM_FIX) -> None:
  """Refuses (ConfigError) a split too big for the device-resident source, saying `fix`."""
  if None in image_shape:
    return
  needed = int(num_examples) * int(np.prod(image_shape))
  limit = device_resident_limit() if limit is None else limit
  if needed > limit:
    raise ConfigError(
        f"Data set {name!r} split {split!r} is {needed / 2**30:.2f} GiB of images "
        f"({num_examples:,} x {'x'.join(map(str, image_shape))} uint8), more than the "
        f"device-resident source holds ({limit / 2**30:.2f} GiB: it reads the split whole into "
        f"host memory and onto every device). {fix}"
    )
