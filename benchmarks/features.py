"""HOG throughput: this JAX implementation vs `skimage.feature.hog`, same images, one run.

  python benchmarks/features.py [--n=10000] [--batch_size=250] [--cpu_devices=0]

Prints images/s of both, the speed-up ratio, and the maximum element-wise
difference between the two outputs. JAX time is steady state (compiled once
before timing, features copied to one host array); scikit-image runs image by
image, as users call it. A benchmark, not a test.

XLA runs this program on one core of a CPU device, so on a CPU the script
splits the host into `--cpu_devices` JAX devices (0 = one per core) and
`apply_in_batches` hands batches to them in turn; the one-device time is
printed too. On a GPU the flag changes nothing.
"""

import argparse
import os
import platform
import time

import jax
import numpy as np
from skimage.feature import hog

from cnn_jax.data import load_split
from cnn_jax.features import apply_in_batches, make_extractor

PARAMS = dict(orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2), block_norm="L2-Hys")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--n", type=int, default=10_000)
  parser.add_argument("--batch_size", type=int, default=250)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--cpu_devices", type=int, default=0, help="0: one per core")
  args = parser.parse_args()
  jax.config.update("jax_num_cpu_devices", args.cpu_devices or os.cpu_count())
  images = load_split("fashion_mnist", "test").images[: args.n]
  fn = make_extractor({"name": "hog", **PARAMS}, image_shape=images.shape[1:])
  devices = jax.local_devices()

  def best_time(devs):
    apply_in_batches(fn, images[: args.batch_size * len(devs)], args.batch_size, devs)  # compile
    times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      out = apply_in_batches(fn, images, args.batch_size, devs)
      times.append(time.perf_counter() - start)
    return min(times), out

  one_s, ours_one = best_time(devices[:1])
  jax_s, ours = best_time(devices)
  assert np.array_equal(ours, ours_one)

  start = time.perf_counter()
  ref = np.stack([hog(im[..., 0], **PARAMS) for im in images])
  sk_s = time.perf_counter() - start

  n = len(images)
  print(f"HOG on {n} Fashion-MNIST test images (28x28), {PARAMS}")
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}")
  print(f"  cnn_jax, 1 device (jit, batch {args.batch_size}, best of {args.repeats}): "
        f"{one_s:8.3f} s  {n / one_s:12,.0f} img/s  ({sk_s / one_s:.1f}x)")
  print(f"  cnn_jax, {len(devices)} devices (jit, batch {args.batch_size}, best of {args.repeats}): "
        f"{jax_s:8.3f} s  {n / jax_s:12,.0f} img/s")
  print(f"  skimage.feature.hog (one image at a time): {sk_s:8.3f} s  {n / sk_s:12,.0f} img/s  "
        f"({1e3 * sk_s / n:.3f} ms/image)")
  print(f"  speed-up ({len(devices)} devices vs scikit-image): {sk_s / jax_s:.1f}x")
  print(f"  max |difference| over {ours.size:,} elements: {np.abs(ours - ref).max():.3g}")


if __name__ == "__main__":
  main()
