"""Max pooling, forward + backward: XLA's reduce-window against the tiled formulation.

  python benchmarks/pool_speed.py [--repeats=7] [--out=FILE]

On whatever device JAX picks (JAX_PLATFORMS=cpu / cuda), for the pools the recipes use
(2x2, stride 2, after a ReLU): `flax.linen.max_pool` (reduce-window forward,
select-and-scatter backward) against `cnn_jax.layers.tiled_max_pool` (an element-wise max of
the windows' strided views with a first-maximum custom JVP), in float32 and bfloat16. For
each: milliseconds per jitted forward + backward call (median of repeats), the ratio, and
whether values and gradients are bit-identical on inputs full of ties. `layers.Pool('max')`
takes the tiled path on the CPU only; this is the measurement that decides it elsewhere.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.layers import tiled_max_pool

SHAPES = ((128, 28, 28, 32), (128, 14, 14, 64), (512, 28, 28, 64), (256, 56, 56, 64))


def forward_backward(pool):
  def f(x, dy):
    y, vjp = jax.vjp(lambda x: pool(nn.relu(x)), x)
    return y, vjp(dy)[0]

  return jax.jit(f)


def ms_per_call(f, args, repeats: int) -> float:
  jax.block_until_ready(f(*args))
  n, times = 1, []
  while True:  # calls per repeat: at least 0.05 s
    start = time.perf_counter()
    for _ in range(n):
      out = f(*args)
    jax.block_until_ready(out)
    if time.perf_counter() - start > 0.05:
      break
    n *= 2
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(n):
      out = f(*args)
    jax.block_until_ready(out)
    times.append((time.perf_counter() - start) / n * 1e3)
  return statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--out", default=None, help="also write the table here")
  args = parser.parse_args()
  pools = {"reduce-window": lambda x: nn.max_pool(x, (2, 2), (2, 2)),
           "tiled": lambda x: tiled_max_pool(x, (2, 2))}
  lines = [f"# python benchmarks/pool_speed.py --repeats={args.repeats}",
           f"# {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
           f"load average {tuple(round(v, 2) for v in os.getloadavg())}",
           f"{'input [B, H, W, C]':<22}{'dtype':<10}{'reduce-window ms':>17}{'tiled ms':>10}"
           f"{'speed-up':>10}  bit-identical"]
  rng = np.random.default_rng(0)
  for shape in SHAPES:
    for dtype in (jnp.float32, jnp.bfloat16):
      # Halves: many equal values, so ties decide where gradients go.
      x = jnp.asarray(np.round(rng.standard_normal(shape) * 2) / 2, dtype)
      dy = jnp.asarray(rng.standard_normal((shape[0], shape[1] // 2, shape[2] // 2, shape[3])), dtype)
      fns = {name: forward_backward(pool) for name, pool in pools.items()}
      outs = {name: f(x, dy) for name, f in fns.items()}
      same = all(np.array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
                 for a, b in zip(outs["reduce-window"], outs["tiled"]))
      ms = {name: ms_per_call(f, (x, dy), args.repeats) for name, f in fns.items()}
      lines.append(f"{str(list(shape)):<22}{jnp.dtype(dtype).name:<10}{ms['reduce-window']:>17.2f}"
                   f"{ms['tiled']:>10.2f}{ms['reduce-window'] / ms['tiled']:>9.1f}x  {same}")
      print(lines[-1], flush=True)
  if args.out:
    with open(args.out, "w") as f:
      f.write("\n".join(lines) + "\n")
  else:
    print("\n".join(lines[:3]))


if __name__ == "__main__":
  main()
