"""Train-step speed of parameter sharing vs none, on this machine, in one run.

  python benchmarks/locally_connected.py [--batch=128] [--steps=30]

Three first layers on 28x28x1 images, each followed by ReLU, flatten and a dense
10-way output, trained with SGD: a conv (32 kernels 5x5, shared), a locally connected
layer of the same geometry (a kernel per position), and a dense layer with about the
locally connected layer's parameter count. Prints parameters, images/s and ratios.
"""

from __future__ import annotations

import argparse
import platform
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from cnn_jax.layers import Conv2D, Dense, Flatten, LocallyConnected2D


class Net(nn.Module):
  first: nn.Module

  @nn.compact
  def __call__(self, x):
    return Dense(10)(Flatten()(nn.relu(self.first(x))))


class FlatDense(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x):
    return Dense(self.features)(Flatten()(x))


def measure(model: nn.Module, batch: int, steps: int) -> tuple[int, float]:
  x = jax.random.normal(jax.random.key(0), (batch, 28, 28, 1))
  y = jax.random.randint(jax.random.key(1), (batch,), 0, 10)
  params = model.init(jax.random.key(2), x)
  tx = optax.sgd(0.01)
  opt = tx.init(params)

  @jax.jit
  def step(params, opt):
    loss, g = jax.value_and_grad(
        lambda p: optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()
    )(params)
    updates, opt = tx.update(g, opt)
    return optax.apply_updates(params, updates), opt, loss

  params, opt, loss = step(params, opt)  # compile
  loss.block_until_ready()
  best = float("inf")
  for _ in range(3):
    start = time.perf_counter()
    for _ in range(steps):
      params, opt, loss = step(params, opt)
    loss.block_until_ready()
    best = min(best, time.perf_counter() - start)
  first = sum(a.size for k, a in jax.tree_util.tree_leaves_with_path(params)
              if "first" in jax.tree_util.keystr(k))
  return first, batch * steps / best


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--steps", type=int, default=30)
  args = parser.parse_args()
  lc_params = 24 * 24 * (5 * 5 * 32 + 32)
  dense_units = round(lc_params / (28 * 28 + 1))
  models = {
      "conv 32@5x5 (shared)": Net(Conv2D(32, 5, name="first")),
      "locally connected 32@5x5": Net(LocallyConnected2D(32, 5, name="first")),
      f"dense {dense_units} (same params as LC)": Net(FlatDense(dense_units, name="first")),
  }
  print(f"# {platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, "
        f"jax {jax.__version__}; batch {args.batch}, best of 3 x {args.steps} SGD steps")
  rates = {}
  for name, model in models.items():
    n, rate = measure(model, args.batch, args.steps)
    rates[name] = rate
    print(f"{name:<36} first-layer params {n:>9,}  {rate:>10,.0f} img/s")
  conv = next(iter(rates.values()))
  for name, rate in rates.items():
    print(f"{name:<36} {rate / conv:.2f}x the conv's speed")


if __name__ == "__main__":
  main()
