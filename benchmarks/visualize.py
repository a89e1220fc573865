"""Top-patch pass speed: LeNet-5 over the 10,000 Fashion-MNIST test images.

  python benchmarks/visualize.py [--workdir=W] [--layers=C1,C3] [--top=9] [--batch_size=1000]

Times `cnn_jax.visualize.top_patches` (one jit-compiled `lax.scan` over batches,
a running per-channel top-k on the device): compiled once before timing, then
the best of `--repeats` runs, results copied to the host. The weights do not
change the time, so without `--workdir` LeNet-5 is randomly initialised (the
Fashion-MNIST config's max pooling and tanh). Prints the time and images/s.
A benchmark, not a test.
"""

import argparse
import datetime
import platform
import subprocess
import time

import jax
import jax.numpy as jnp

from cnn_jax import visualize
from cnn_jax.data import Normalization, load_split
from cnn_jax.models import create_model
from cnn_jax.run import Run


def cpu_name() -> str:
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                if line.startswith("Model name"))
  except (OSError, subprocess.CalledProcessError, StopIteration):
    return platform.processor() or "unknown"


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", default=None, help="a trained LeNet-5 run (default: random)")
  parser.add_argument("--layers", default="C1,C3")
  parser.add_argument("--top", type=int, default=9)
  parser.add_argument("--batch_size", type=int, default=1000)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  train, test = load_split("fashion_mnist", "train"), load_split("fashion_mnist", "test")
  normalize = Normalization.from_images(train.images)
  if args.workdir:
    model, variables, _ = Run(args.workdir).load_model()
  else:
    model = create_model("lenet5", pool="max", activation="tanh")
    variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
  layers = args.layers.split(",")

  def once():
    return visualize.top_patches(model, variables, test.images, normalize, layers, args.top,
                                 args.batch_size)

  start = time.perf_counter()
  once()
  first_s = time.perf_counter() - start
  times = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    once()
    times.append(time.perf_counter() - start)
  best = min(times)
  n = len(test.images)
  print(f"{datetime.date.today()}  {cpu_name()}  ({jax.devices()[0].platform}, "
        f"jax {jax.__version__})")
  print(f"LeNet-5 top-{args.top} patches of {', '.join(layers)} over the {n:,} Fashion-MNIST "
        f"test images, batch {args.batch_size}:")
  print(f"  first call (compile + run): {first_s:.2f} s")
  print(f"  steady state (best of {args.repeats}): {best:.2f} s = {n / best:,.0f} images/s")


if __name__ == "__main__":
  main()
