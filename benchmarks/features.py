"""HOG / LBP throughput: this JAX implementation vs scikit-image, same images, one run.

  python benchmarks/features.py [--extractor=hog|lbp] [--n=10000] [--batch_size=250]
                                [--cpu_devices=0]

`hog`: HOG features (`skimage.feature.hog`); `lbp`: LBP codes with P=16, R=2, uniform
(`skimage.feature.local_binary_pattern`). Prints the time and images/s of both, the
speed-up ratio, and how far the outputs differ (LBP: the number of differing codes). JAX
time is steady state (compiled once before timing, outputs copied to one host array);
scikit-image runs image by image, as users call it. A benchmark, not a test.

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
from skimage.feature import hog, local_binary_pattern

from cnn_jax.data import load_split
from cnn_jax.features import apply_in_batches, lbp_codes, make_extractor

PARAMS = dict(orientations=9, pixels_per_cell=(4, 4), cells_per_block=(2, 2), block_norm="L2-Hys")
LBP_PARAMS = dict(points=16, radius=2, method="uniform")


def _lbp_codes(images):
  """`[B, H, W, 1]` uint8 -> `[B, H W]` codes (float32 holds them exactly)."""
  codes = lbp_codes(images[..., 0], LBP_PARAMS["method"], LBP_PARAMS["points"],
                    LBP_PARAMS["radius"])
  return codes.reshape(codes.shape[0], -1).astype(np.float32)


def _extractor(name: str, images: np.ndarray):
  """(jax fn, scikit-image fn of one 2-D image, what is timed, scikit-image's name)."""
  if name == "hog":
    fn = make_extractor({"name": "hog", **PARAMS}, image_shape=images.shape[1:])
    return fn, lambda im: hog(im, **PARAMS), "HOG", "skimage.feature.hog"
  p, r, m = LBP_PARAMS["points"], LBP_PARAMS["radius"], LBP_PARAMS["method"]
  return (_lbp_codes, lambda im: local_binary_pattern(im, p, r, m).ravel(), "LBP codes",
          "skimage.feature.local_binary_pattern")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--extractor", choices=("hog", "lbp"), default="hog")
  parser.add_argument("--n", type=int, default=10_000)
  parser.add_argument("--batch_size", type=int, default=250)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--cpu_devices", type=int, default=0, help="0: one per core")
  args = parser.parse_args()
  jax.config.update("jax_num_cpu_devices", args.cpu_devices or os.cpu_count())
  images = load_split("fashion_mnist", "test").images[: args.n]
  fn, reference, what, sk_name = _extractor(args.extractor, images)
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
  ref = np.stack([reference(im[..., 0]) for im in images])
  sk_s = time.perf_counter() - start

  n = len(images)
  params = PARAMS if args.extractor == "hog" else LBP_PARAMS
  print(f"{what} on {n} Fashion-MNIST test images (28x28), {params}")
  print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}")
  print(f"  cnn_jax, 1 device (jit, batch {args.batch_size}, best of {args.repeats}): "
        f"{one_s:8.3f} s  {n / one_s:12,.0f} img/s  ({sk_s / one_s:.1f}x)")
  print(f"  cnn_jax, {len(devices)} devices (jit, batch {args.batch_size}, best of {args.repeats}): "
        f"{jax_s:8.3f} s  {n / jax_s:12,.0f} img/s")
  print(f"  {sk_name} (one image at a time): {sk_s:8.3f} s  {n / sk_s:12,.0f} img/s  "
        f"({1e3 * sk_s / n:.3f} ms/image)")
  print(f"  speed-up ({len(devices)} devices vs scikit-image): {sk_s / jax_s:.1f}x")
  if args.extractor == "lbp":
    print(f"  codes differing from scikit-image's: {int(np.sum(ours != ref))} of {ours.size:,}")
  else:
    print(f"  max |difference| over {ours.size:,} elements: {np.abs(ours - ref).max():.3g}")


if __name__ == "__main__":
  main()
