"""Input throughput: the streaming source vs the device-resident one vs a plain NumPy loop.

  python benchmarks/input_pipeline.py [--examples=20000] [--batch=256] [--threads=0]

One generated data set of 32x32x3 noise images (CIFAR's shape), prepared once as
array_record files in a temporary TFDS dir; each pipeline delivers one epoch of augmented
batches (random_crop(pad=4), then flip_lr) in the same order:
  stream   grain threads read the files (cnn_jax.data.stream), batches go to the device,
           augmentation runs there (the train step's `augment`, jitted on its own here)
  device   the whole split on the device, each batch gathered and augmented there
  numpy    one thread reads the same files batch by batch and crops and flips on the host
No model runs: this is the rate at which each can feed a train step. The first steps
(compilation) are not timed. Prints images/s and ratios to the NumPy loop.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from cnn_jax import data
from cnn_jax.data import augment, stream

NAME = "bench_stream32"
AUGMENT = ("random_crop(pad=4)", "flip_lr")
SIZE: dict[str, int] = {}


def _load(split: str, data_dir: str | None):
  del data_dir
  n = SIZE[split]
  rng = np.random.default_rng({"train": 0, "test": 1}[split])
  return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10


def numpy_crop_flip(images: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
  """random_crop(pad) then flip_lr on the host, one example at a time."""
  n, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  out = np.empty_like(images)
  dy, dx = rng.integers(0, 2 * pad + 1, (2, n))
  flip = rng.random(n) < 0.5
  for i in range(n):
    crop = padded[i, dy[i] : dy[i] + h, dx[i] : dx[i] + w]
    out[i] = crop[:, ::-1] if flip[i] else crop
  return out


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--examples", type=int, default=20_000)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--threads", type=int, default=0, help="stream reader threads; 0 = auto")
  args = parser.parse_args()
  SIZE.update(train=args.examples, test=args.batch)
  data.register(data.DatasetInfo(name=NAME, image_shape=(32, 32, 3), num_classes=10,
                                 splits=dict(SIZE), load=_load))
  tfds_dir = tempfile.mkdtemp(prefix="input_pipeline_")
  split = stream.open_split(NAME, "train", tfds_dir=tfds_dir)  # prepares the files once
  b, steps, key = args.batch, args.examples // args.batch, jax.random.key(0)
  sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec("data"))
  aug = augment.build(AUGMENT)
  aug_step = jax.jit(lambda x, t: aug(x, jax.random.fold_in(key, t)))
  warm = 3

  def timed(batches) -> float:
    start = None
    for t, x in enumerate(batches):
      if t == warm:
        jax.block_until_ready(x)
        start = time.perf_counter()
    jax.block_until_ready(x)
    return (steps - warm) * b / (time.perf_counter() - start)

  rates = {}
  threads = args.threads or stream.default_threads()
  batches = stream.device_batches(split, key, sharding, batch_size=b, steps_per_epoch=steps,
                                  start_step=0, stop_step=steps, num_threads=threads)
  rates[f"stream ({threads} threads)"] = timed(aug_step(x, t) for t, (x, _) in enumerate(batches))

  whole = data.load_split(NAME, "train", tfds_dir=tfds_dir)
  images = jax.device_put(whole.images, NamedSharding(sharding.mesh, PartitionSpec()))
  labels = jax.device_put(whole.labels, NamedSharding(sharding.mesh, PartitionSpec()))
  perm = data.epoch_permutation(key, 0, len(whole))

  @jax.jit
  def gather_augment(images, labels, t):
    x, _ = data.batch_from_permutation(images, labels, perm, t, b)
    return aug(x, jax.random.fold_in(key, t))

  rates["device-resident"] = timed(gather_augment(images, labels, np.int32(t))
                                   for t in range(steps))

  order = np.asarray(perm)
  rng = np.random.default_rng(0)

  def numpy_loop():
    for t in range(steps):
      x, _ = split.read(order[t * b : (t + 1) * b])
      yield numpy_crop_flip(x, rng)

  rates["numpy loop (1 thread)"] = timed(numpy_loop())
  print(f"# {platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, "
        f"jax {jax.__version__}; {args.examples:,} images 32x32x3, batch {b}, "
        f"{' + '.join(AUGMENT)}; one epoch after {warm} untimed batches")
  base = rates["numpy loop (1 thread)"]
  for name, rate in rates.items():
    print(f"{name:<24} {rate:>10,.0f} img/s  {rate / base:6.2f}x the NumPy loop")


if __name__ == "__main__":
  main()
