"""Where a training step of the 2-conv CNN spends its time, piece by piece, JAX against PyTorch.

  JAX_PLATFORMS=cpu python benchmarks/cpu_step_pieces.py [--batch=128] [--repeats=5]

The network of benchmarks/train_speed.py's `simple_cnn_b*` workloads (28x28x1 -> conv 32@5x5
SAME -> relu -> max pool 2 -> conv 64@5x5 SAME -> relu -> max pool 2 -> dense 1024 -> relu ->
dense 10), fp32, NHWC in JAX and NCHW in PyTorch. Each piece is one jitted function in JAX and
the matching aten call in PyTorch (`aten.convolution_backward` with one output asked for):
conv forward, input gradient and kernel gradient of both convs, the dense layers forward and
backward, pooling and relu forward and backward, and the Adam update. Then whole steps: the
Flax step, and the same step with the 5x5 convs written as an explicit patch matmul (im2col:
shifted slices concatenated, one `[B*H*W, 25*C] @ [25*C, F]` product), which computes the
same sums in another order. Prints milliseconds per call (median of repeats) and ratios,
and each JAX piece once more compiled as `config.cpu_convolutions='eigen'` compiles the steps
(XLA's own Eigen convolutions instead of its YNNPACK library fusions; column `eigen ms`).
"""

from __future__ import annotations

import argparse
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from cnn_jax.layers import Conv2D, Dense, Flatten, Pool, tiled_max_pool
from cnn_jax.train.parallel import CPU_CONVOLUTIONS

DN = ("NHWC", "HWIO", "NHWC")


def ms_per_call(fn, repeats: int, min_seconds: float = 0.3) -> float:
  """Median milliseconds of one call of `fn()` (which blocks until its result is ready)."""
  fn()
  fn()
  n, start = 1, time.perf_counter()
  fn()
  one = time.perf_counter() - start
  n = max(1, int(min_seconds / max(one, 1e-6)))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(n):
      fn()
    times.append((time.perf_counter() - start) / n)
  return 1e3 * statistics.median(times)


def conv(x, k):
  return lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=DN)


def im2col_conv(x, k):
  """`conv(x, k)` for odd square kernels, SAME padding, stride 1, as one patch matmul.

  Patches are the kh*kw shifted views of the padded input concatenated on the channel axis
  (order kh, kw, C: the kernel's own layout), so the product with `k.reshape(-1, F)` is the
  correlation; its gradients are slices/pads and two matmuls, no convolution at all.
  """
  kh, kw, c, f = k.shape
  b, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
  patches = jnp.concatenate(
      [xp[:, i:i + h, j:j + w, :] for i in range(kh) for j in range(kw)], axis=-1
  )
  return (patches.reshape(b * h * w, kh * kw * c) @ k.reshape(kh * kw * c, f)).reshape(b, h, w, f)


class PatchConv2D(Conv2D):
  """`cnn_jax.layers.Conv2D` (same parameters) computed by `im2col_conv` (SAME, stride 1)."""

  @nn.compact
  def __call__(self, x):
    kernel = self.param(
        "kernel", self.kernel_init, (self.kernel_size, self.kernel_size, x.shape[-1],
                                     self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
    return im2col_conv(x, kernel) + bias


class TwoConv(nn.Module):
  """The 2-conv CNN (`simple_cnn` 5x5, 32/64, dense 1024) with a choice of conv layer."""

  conv_layer: type = Conv2D

  @nn.compact
  def __call__(self, x):
    for i, f in enumerate((32, 64)):
      kwargs = {} if self.conv_layer is PatchConv2D else {"padding": "SAME"}
      x = Pool("max", 2)(nn.relu(self.conv_layer(f, 5, name=f"conv{i + 1}", **kwargs)(x)))
    x = nn.relu(Dense(1024, name="dense1")(Flatten()(x)))
    return Dense(10, name="output")(x)


def flax_step_fn(model, tx):
  def step(params, opt_state, x, y):
    loss, grads = jax.value_and_grad(
        lambda p: optax.softmax_cross_entropy_with_integer_labels(
            model.apply({"params": p}, x), y).mean()
    )(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1))


def jax_pieces(b: int) -> dict[str, tuple]:
  """name -> (jitted function, args) for each piece of the step."""
  r = np.random.default_rng(0)
  f32 = lambda *s: jnp.asarray(r.standard_normal(s, dtype=np.float32))
  x1, k1, dy1 = f32(b, 28, 28, 1), f32(5, 5, 1, 32), f32(b, 28, 28, 32)
  x2, k2, dy2 = f32(b, 14, 14, 32), f32(5, 5, 32, 64), f32(b, 14, 14, 64)
  xd, kd, dyd = f32(b, 3136), f32(3136, 1024), f32(b, 1024)
  pool_in = f32(b, 28, 28, 32)

  def input_grad(x, k, dy):
    return jax.vjp(lambda x: conv(x, k), x)[1](dy)[0]

  def kernel_grad(x, k, dy):
    return jax.vjp(lambda k: conv(x, k), k)[1](dy)[0]

  def relu_pool_fwd_bwd(pool):
    def fwd_bwd(x):
      y, vjp = jax.vjp(lambda x: pool(nn.relu(x), (2, 2)), x)
      return vjp(jnp.ones_like(y))[0]
    return fwd_bwd

  def dense_bwd(x, k, dy):
    return jax.vjp(lambda x, k: x @ k, x, k)[1](dy)

  params = {"a": kd, "b": f32(64 * 32 * 25)}
  tx = optax.adam(1e-3)
  opt = tx.init(params)

  def adam(params, opt, grads):
    u, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, u), opt

  return {
      "conv1 forward": (conv, (x1, k1)),
      "conv1 kernel gradient": (kernel_grad, (x1, k1, dy1)),
      "conv2 forward": (conv, (x2, k2)),
      "conv2 input gradient": (input_grad, (x2, k2, dy2)),
      "conv2 kernel gradient": (kernel_grad, (x2, k2, dy2)),
      "conv2 forward, im2col matmul": (im2col_conv, (x2, k2)),
      "conv2 input gradient, im2col": (
          lambda x, k, dy: jax.vjp(lambda x: im2col_conv(x, k), x)[1](dy)[0], (x2, k2, dy2)),
      "conv2 kernel gradient, im2col": (
          lambda x, k, dy: jax.vjp(lambda k: im2col_conv(x, k), k)[1](dy)[0], (x2, k2, dy2)),
      "dense1 forward": (jnp.matmul, (xd, kd)),
      "dense1 backward (input + kernel)": (dense_bwd, (xd, kd, dyd)),
      "relu + pool1 forward + backward": (
          relu_pool_fwd_bwd(lambda x, w: nn.max_pool(x, w, w)), (pool_in,)),
      # What the project's `Pool('max', 2)` runs on the CPU.
      "relu + pool1, tiled (layers.Pool)": (relu_pool_fwd_bwd(tiled_max_pool), (pool_in,)),
      "adam update (3.27M params)": (adam, (params, opt, params)),
  }


def torch_pieces(b: int) -> dict[str, tuple]:
  import torch
  import torch.nn.functional as F

  g = torch.Generator().manual_seed(0)
  t = lambda *s: torch.randn(*s, generator=g)
  x1, k1, dy1 = t(b, 1, 28, 28), t(32, 1, 5, 5), t(b, 32, 28, 28)
  x2, k2, dy2 = t(b, 32, 14, 14), t(64, 32, 5, 5), t(b, 64, 14, 14)
  xd, kd, dyd = t(b, 3136), t(1024, 3136), t(b, 1024)
  pool_in = t(b, 32, 28, 28).requires_grad_()

  def conv_bwd(mask):
    def fn(x, k, dy):
      return torch.ops.aten.convolution_backward(
          dy, x, k, [k.shape[0]], [1, 1], [2, 2], [1, 1], False, [0, 0], 1, mask)
    return fn

  def relu_pool_fwd_bwd(x):
    y = F.max_pool2d(F.relu(x), 2)
    return torch.autograd.grad(y, x, torch.ones_like(y))

  def dense_bwd(x, k, dy):
    return dy @ k, dy.t() @ x

  params = [torch.zeros(1024 * 3136 + 64 * 32 * 25)]
  params[0].grad = torch.ones_like(params[0])
  opt = torch.optim.Adam(params, lr=1e-3)
  return {
      "conv1 forward": (lambda x, k: F.conv2d(x, k, padding=2), (x1, k1)),
      "conv1 kernel gradient": (conv_bwd([False, True, False]), (x1, k1, dy1)),
      "conv2 forward": (lambda x, k: F.conv2d(x, k, padding=2), (x2, k2)),
      "conv2 input gradient": (conv_bwd([True, False, False]), (x2, k2, dy2)),
      "conv2 kernel gradient": (conv_bwd([False, True, False]), (x2, k2, dy2)),
      "dense1 forward": (lambda x, k: x @ k.t(), (xd, kd)),
      "dense1 backward (input + kernel)": (dense_bwd, (xd, kd, dyd)),
      "relu + pool1 forward + backward": (relu_pool_fwd_bwd, (pool_in,)),
      "adam update (3.27M params)": (lambda: opt.step(), ()),
  }


def step_rates(b: int, repeats: int) -> dict[str, float]:
  """ms per whole training step: Flax with lax convs, Flax with im2col convs, torch eager."""
  r = np.random.default_rng(1)
  x = jnp.asarray(r.standard_normal((b, 28, 28, 1), dtype=np.float32))
  y = jnp.asarray(r.integers(0, 10, b).astype(np.int32))
  out = {}
  results = {}
  for name, layer in (("Flax step (lax conv)", Conv2D), ("Flax step (im2col conv)", PatchConv2D)):
    model = TwoConv(layer)
    params = model.init(jax.random.key(0), x)["params"]
    tx = optax.adam(1e-3)
    step = flax_step_fn(model, tx)
    state = [params, tx.init(params)]
    # The same first update from the same parameters: the two formulations agree.
    p1, _, loss = flax_step_fn(model, tx)(jax.tree.map(jnp.copy, params), tx.init(params), x, y)
    results[name] = (p1, float(loss))

    def call(step=step, state=state):
      state[0], state[1], loss = step(state[0], state[1], x, y)
      loss.block_until_ready()

    out[name] = ms_per_call(call, repeats)
  (pa, la), (pb, lb) = results.values()
  diff = max(float(jnp.max(jnp.abs(a - c))) for a, c in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)))
  print(f"# lax vs im2col after one Adam step: loss {la:.7f} vs {lb:.7f}, "
        f"max |param difference| {diff:.2e}")
  try:
    import torch
  except ImportError:
    return out
  tnet = torch.nn.Sequential(
      torch.nn.Conv2d(1, 32, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
      torch.nn.Conv2d(32, 64, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
      torch.nn.Flatten(), torch.nn.Linear(3136, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10))
  opt = torch.optim.Adam(tnet.parameters(), lr=1e-3)
  tx_, ty = torch.randn(b, 1, 28, 28), torch.randint(0, 10, (b,))

  def tstep():
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(tnet(tx_), ty).backward()
    opt.step()

  out["torch eager step"] = ms_per_call(tstep, repeats)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  import os

  print(f"# {jax.devices()[0].device_kind}, jax {jax.__version__}, batch {args.batch}, "
        f"load average {os.getloadavg()}")
  jax_ms, eigen_ms = {}, {}
  for name, (fn, fargs) in jax_pieces(args.batch).items():
    jitted = jax.jit(fn)
    jax_ms[name] = ms_per_call(lambda f=jitted, a=fargs: jax.block_until_ready(f(*a)), args.repeats)
    # config.cpu_convolutions='eigen': XLA's own convolutions, not its YNNPACK library fusions
    jitted = jax.jit(fn, compiler_options=CPU_CONVOLUTIONS["eigen"])
    eigen_ms[name] = ms_per_call(lambda f=jitted, a=fargs: jax.block_until_ready(f(*a)),
                                 args.repeats)
  try:
    torch_ms = {}
    import torch

    with torch.no_grad():
      for name, (fn, fargs) in torch_pieces(args.batch).items():
        if name.startswith("relu"):
          with torch.enable_grad():
            torch_ms[name] = ms_per_call(lambda f=fn, a=fargs: f(*a), args.repeats)
        else:
          torch_ms[name] = ms_per_call(lambda f=fn, a=fargs: f(*a), args.repeats)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads")
  except ImportError:
    torch_ms = {}
  print(f"{'piece':<36}{'JAX ms':>9}{'torch ms':>10}{'JAX/torch':>11}{'eigen ms':>10}")
  for name, ms in jax_ms.items():
    t = torch_ms.get(name)
    print(f"{name:<36}{ms:>9.2f}" + (f"{t:>10.2f}{ms / t:>11.2f}" if t else f"{'-':>10}{'-':>11}")
          + f"{eigen_ms[name]:>10.2f}")
  steps = step_rates(args.batch, args.repeats)
  torch_step = steps.get("torch eager step")
  for name, ms in steps.items():
    ratio = f"  {torch_step / ms:.2f}x torch's speed" if torch_step else ""
    print(f"{name:<36}{ms:>9.2f} ms  {args.batch / ms * 1e3:>8,.0f} img/s{ratio}")
  print(f"# load average at end {os.getloadavg()}")


if __name__ == "__main__":
  main()
