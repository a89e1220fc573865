"""A generated data set of 170,000 64x64x3 images (2.09 GB of pixels) for the streaming
memory test (tests/test_stream.py), run as a script so that writing and reading are
separate processes and the reader's peak memory is its own:

  python tests/stream_big.py write TFDS_DIR RAW_DIR   # prepare the array_record files
  python tests/stream_big.py read TFDS_DIR            # stream one epoch; print a JSON line

The pixels are noise (incompressible); the writer draws them into a memory-mapped raw file
in RAW_DIR, so neither process holds the data set in memory.
"""

import json
import pathlib
import resource
import sys
import time

import numpy as np

from cnn_jax import data
from cnn_jax.errors import ConfigError

NAME = "stream_big"
SHAPE = (64, 64, 3)
SPLITS = {"train": 170_000, "test": 1_000}
BATCH = 500
_RAW: dict[str, str] = {}


def _load(split: str, data_dir: str | None):
  del data_dir
  n = SPLITS[split]
  path = pathlib.Path(_RAW["dir"]) / f"{split}.u8"
  images = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(n, *SHAPE))
  rng = np.random.default_rng(0)
  for start in range(0, n, 10_000):
    images[start : start + 10_000] = rng.integers(0, 256, (min(10_000, n - start), *SHAPE),
                                                  dtype=np.uint8)
  images.flush()
  return images, np.arange(n) % 10


def register() -> None:
  if NAME not in data.DATASETS:
    data.register(data.DatasetInfo(name=NAME, image_shape=SHAPE, num_classes=10, splits=SPLITS,
                                   load=_load))


def peak_rss_bytes() -> int:
  for line in pathlib.Path("/proc/self/status").read_text().splitlines():
    if line.startswith("VmHWM:"):
      return int(line.split()[1]) * 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write(tfds_dir: str, raw_dir: str) -> None:
  from tensorflow_datasets.core import shuffle

  # TFDS spills a split of over 1 GB to temporary files through tf.io.gfile, i.e. it needs
  # TensorFlow; this writer (not the process under test) keeps the split in memory instead.
  shuffle.MAX_MEM_BUFFER_SIZE = 1 << 40
  register()
  _RAW["dir"] = raw_dir
  data.dataset_builder(NAME, tfds_dir=tfds_dir)


def read(tfds_dir: str) -> None:
  import jax
  from jax.sharding import Mesh, NamedSharding, PartitionSpec

  from cnn_jax.data import stream
  from cnn_jax.train import loop
  from cnn_jax.train.config import load_config

  register()
  config = load_config("configs/simple_cnn_fashion_mnist.py", {
      "data.name": NAME, "data.tfds_dir": tfds_dir, "data.source": "device",
      "model.num_classes": 10})
  try:
    loop.setup(config)
    refused = ""
  except ConfigError as e:
    refused = str(e)
  split = stream.open_split(NAME, "train", tfds_dir=tfds_dir)
  start = time.perf_counter()
  stats = stream.streamed_normalization(split)
  stats_s = time.perf_counter() - start
  sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec("data"))
  steps = len(split) // BATCH
  start = time.perf_counter()
  seen, label_sum = 0, 0
  for x, y in stream.device_batches(split, jax.random.key(0), sharding, batch_size=BATCH,
                                    steps_per_epoch=steps, start_step=0, stop_step=steps):
    seen += x.shape[0]
    label_sum += int(y.sum())
  epoch_s = time.perf_counter() - start
  print(json.dumps({
      "examples": seen, "label_sum": label_sum, "epoch_s": epoch_s, "stats_s": stats_s,
      "mean": stats.mean, "peak_rss_bytes": peak_rss_bytes(), "refused": refused,
      "file_bytes": sum(p.stat().st_size for p in pathlib.Path(tfds_dir).rglob("*train*")),
  }))


if __name__ == "__main__":
  if sys.argv[1] == "write":
    write(sys.argv[2], sys.argv[3])
  else:
    read(sys.argv[2])
