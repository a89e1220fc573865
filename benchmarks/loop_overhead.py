"""The training loop's own host cost per step, apart from the model: what a fast accelerator
waits for when the compiled step is shorter than the Python around it.

  python benchmarks/loop_overhead.py [--steps=2000] [--repeats=5] [--out=FILE]

On whatever device JAX picks (JAX_PLATFORMS=cpu / cuda), two measurements, each against a
peer in the same run:

* **Reading the metrics.** `--steps` calls of a jitted function that returns the loop's
  three metrics (loss, accuracy, gradient norm) as device scalars, as the loop holds them
  between two log lines; then the time to read them all to the host with `jax.device_get`
  (one round trip per scalar) and with `cnn_jax.train.loop.device_get_stacked` (stacked on
  the device first). Microseconds per step, the ratio, and whether the values are equal.
* **The loop around a null step.** `train_and_evaluate` with its compiled step replaced by
  one that only counts (`state.step + 1`, constant metrics), one step per call (the
  default), against a tight Python loop calling the same null step: microseconds per step
  of each (medians; the loop's runs interleaved) and the loop's extra host time per step.
  Once with the loop as it is, once with its metric reads done by `jax.device_get` (the
  loop before `device_get_stacked`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import train_speed

from cnn_jax.train import loop as loop_lib
from cnn_jax.train import parallel as parallel_lib

METRICS = ("loss", "accuracy", "grad_norm")


def _metrics(x: jax.Array) -> dict[str, jax.Array]:
  return {"loss": x.sum(), "accuracy": x.mean(), "grad_norm": x.max()}


def read_times(steps: int, repeats: int) -> dict[str, float]:
  """Microseconds per step to read `steps` steps' metrics, both ways (median of repeats)."""
  step = jax.jit(lambda x: (x + 1, _metrics(x)))
  x = jnp.ones(16)
  times = {"jax.device_get": [], "device_get_stacked": []}
  for rep in range(repeats + 1):  # the first compiles the stack
    pending = []
    for _ in range(steps):
      x, m = step(x)
      pending.append(m)
    jax.block_until_ready(pending)
    start = time.perf_counter()
    plain = jax.device_get(pending)
    middle = time.perf_counter()
    stacked = loop_lib.device_get_stacked(pending)
    end = time.perf_counter()
    equal = all(np.array_equal(p[k], s[k]) for p, s in zip(plain, stacked) for k in METRICS)
    if not equal:
      raise AssertionError("device_get_stacked read other values than jax.device_get")
    if rep:
      times["jax.device_get"].append((middle - start) / steps * 1e6)
      times["device_get_stacked"].append((end - middle) / steps * 1e6)
  return {label: statistics.median(t) for label, t in times.items()}


def null_step(state, images, labels, perm):
  """Counts the step and returns constant metrics: a compiled step with (almost) no work."""
  del images, labels, perm
  one = jnp.ones((), jnp.float32) + 0 * state.step.astype(jnp.float32)
  return state.replace(step=state.step + 1), {
      "loss": one, "accuracy": 0.5 * one, "grad_norm": 2 * one}


def tight_loop_us(w: train_speed.Workload, steps: int, repeats: int) -> float:
  s = train_speed.build(w, num_images=w.batch * 8)
  fn = jax.jit(null_step, donate_argnums=(0,))
  state, times = train_speed._copy(s.state), []
  for rep in range(repeats + 1):
    start = time.perf_counter()
    for _ in range(steps):
      state = fn(state, s.images, s.labels, s.perm)[0]
    jax.block_until_ready(state)
    if rep:
      times.append((time.perf_counter() - start) / steps * 1e6)
  return statistics.median(times)


def loop_us(w: train_speed.Workload, steps: int, *, stacked_reads: bool) -> float:
  """Microseconds per step of one `train_and_evaluate` run around the null step, over its
  second log interval of `steps` steps (the first holds the compilation)."""
  real_make, real_read = parallel_lib.make_parallel, loop_lib.device_get_stacked

  def make_parallel(mode, **kwargs):
    return dataclasses.replace(
        real_make(mode, **kwargs), train_step=jax.jit(null_step, donate_argnums=(0,)))

  loop_lib.make_parallel = make_parallel
  if not stacked_reads:
    loop_lib.device_get_stacked = jax.device_get
  try:
    return w.batch / train_speed.loop_throughput(w, 1, steps, 1) * 1e6
  finally:
    loop_lib.make_parallel, loop_lib.device_get_stacked = real_make, real_read


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=2000, help="steps between two reads / logs")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", help="also write the report to this file")
  args = parser.parse_args()
  # The loop trains on Fashion-MNIST's first images: 8 per step, so any --steps fits.
  w = train_speed.Workload("simple_cnn", 8, (28, 28, 1), model_kwargs=train_speed.TWO_CONV)
  if args.steps * 2 * w.batch > 60_000:
    parser.error(f"--steps={args.steps} needs more than Fashion-MNIST's 60,000 images; "
                 "ask for at most 3750.")
  device = jax.devices()[0]
  lines = [
      f"# python benchmarks/loop_overhead.py --steps={args.steps} --repeats={args.repeats}",
      (f"# {device.device_kind} ({device.platform}), jax {jax.__version__}, "
       f"load average {tuple(round(x, 2) for x in os.getloadavg())}"),
      "",
      f"Reading {args.steps} steps' metrics ({len(METRICS)} device scalars a step), us per step:",
  ]
  reads = read_times(args.steps, args.repeats)
  for label, us in reads.items():
    lines.append(f"  {label:<22} {us:8.2f}")
  ratio = reads["jax.device_get"] / reads["device_get_stacked"]
  lines.append(f"  ratio                  {ratio:8.2f}x  (values equal: True)")
  tight = tight_loop_us(w, args.steps, args.repeats)
  runs = {True: [], False: []}  # stacked reads: runs
  for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits both
    for stacked, times in runs.items():
      times.append(loop_us(w, args.steps, stacked_reads=stacked))
  now, before = statistics.median(runs[True]), statistics.median(runs[False])
  rows = {"train_and_evaluate": now, "train_and_evaluate, reads by device_get": before}
  lines += [
      "",
      "A null compiled step, one step per call, us per step:",
      f"  tight Python loop                          {tight:8.1f}",
      *(f"  {label:<42} {us:8.1f}   (+{us - tight:.1f}, {us / tight:.2f}x)"
        for label, us in rows.items()),
  ]
  report = "\n".join(lines)
  print(report)
  if args.out:
    with open(args.out, "w") as f:
      f.write(report + "\n")


if __name__ == "__main__":
  sys.exit(main())
