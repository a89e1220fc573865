"""HOG throughput: this JAX implementation vs `skimage.feature.hog`, same images, one run.

  python benchmarks/features.py [--n=10000] [--batch_size=500]

Prints images/s of both, the speed-up ratio, and the maximum element-wise
difference between the two outputs. JAX time is steady state (compiled once
before timing, result on the host); scikit-image runs image by image, as users
call it. A benchmark, not a test.
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
  parser.add_argument("--batch_size", type=int, default=500)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  images = load_split("fashion_mnist", "test").images[: args.n]
  fn = make_extractor({"name": "hog", **PARAMS}, image_shape=images.shape[1:])

  apply_in_batches(fn, images[: args.batch_size], args.batch_size)  # compile
  jax_times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    ours = apply_in_batches(fn, images, args.batch_size)
    jax_times.append(time.perf_counter() - start)
  jax_s = min(jax_times)

  start = time.perf_counter()
  ref = np.stack([hog(im[..., 0], **PARAMS) for im in images])
  sk_s = time.perf_counter() - start

  n = len(images)
  print(f"HOG on {n} Fashion-MNIST test images (28x28), {PARAMS}")
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}")
  print(f"  cnn_jax (jit, batch {args.batch_size}, best of {args.repeats}): {jax_s:8.3f} s  "
        f"{n / jax_s:12,.0f} img/s")
  print(f"  skimage.feature.hog (one image at a time): {sk_s:8.3f} s  {n / sk_s:12,.0f} img/s  "
        f"({1e3 * sk_s / n:.3f} ms/image)")
  print(f"  speed-up: {sk_s / jax_s:.1f}x")
  print(f"  max |difference| over {ours.size:,} elements: {np.abs(ours - ref).max():.3g}")


if __name__ == "__main__":
  main()
