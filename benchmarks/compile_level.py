"""The train step at XLA:CPU's LLVM optimisation levels: compile time, step time, bits.

  python benchmarks/compile_level.py [--configs=simple_cnn_fashion_mnist,...] [--repeats=7]

For each config, builds the run as `experiments.main` does (`loop.setup`, real data),
lowers its train step and compiles it `--compiles` times at each level of `--levels`
(XLA's default first; rounds A B C A B C; in-memory caches cleared before each; the minimum
counts), with the persistent compilation cache off. Then:

* bits: the same 3 steps from the same state with each executable; the parameters,
  optimiser state and metrics must be equal bit for bit, else the level is unusable
  (the tables must reproduce);
* speed: `--repeats` rounds, each timing `--steps` steps with every executable in turn
  (A B C A B C ...), so drifts in the machine's speed hit all levels alike; prints the
  median per level and its ratio to the default.

Level 3 is XLA's default. A cold start compiles the train step once, so a level that
compiles faster and runs as fast and gives the same bits shortens every first run.

Beside them, at the default level: a plain Flax step of the same model and optimiser
(`train_speed.plain_flax_update`: `value_and_grad` of `model.apply`, `tx.update`, on a
ready float batch), compiled in the same rounds, so the compile time the project's step
adds to the model's own (gather, preprocessing, metrics, shardings) is printed too.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cnn_jax import data as data_lib  # noqa: E402
from cnn_jax.train import loop  # noqa: E402
from train_speed import plain_flax_update  # noqa: E402  (benchmarks/, beside this file)


def digest(tree) -> str:
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    h.update(np.asarray(leaf).tobytes())
  return h.hexdigest()[:12]


def options(level: int | None) -> dict[str, int] | None:
  return None if level is None else {"xla_backend_optimization_level": level}


def measure(name: str, levels: list[int | None], *, repeats: int, steps: int, compiles: int,
            batch: int | None) -> None:
  config = importlib.import_module(f"configs.{name}").get_config()
  if batch:
    config.batch_size = batch
  s = loop.setup(config)
  images, labels = jax.device_put(s.train.images), jax.device_put(s.train.labels)
  perm = jax.jit(data_lib.epoch_permutation, static_argnums=2)(s.data_key, 0, len(s.train))
  copy = lambda: jax.tree.map(lambda x: x.copy(), s.state)  # noqa: E731 - steps donate it
  x, y = data_lib.batch_from_permutation(images, labels, perm, 0, config.batch_size)
  x = s.normalize(x, dtype=jax.numpy.dtype(config.dtype))
  variables = {"params": s.state.params}
  if s.state.batch_stats:
    variables["batch_stats"] = s.state.batch_stats
  plain = jax.jit(plain_flax_update(s.model, s.state.tx))
  compiled, compile_s, bits = {}, {level: [] for level in levels}, {}
  plain_s = []
  for _ in range(compiles):  # the first compilation in a process also warms XLA up
    for level in levels:
      jax.clear_caches()  # else the second compilation of a program is a lookup
      lowered = s.parallel.train_step.lower(s.state, images, labels, perm)
      start = time.perf_counter()
      compiled[level] = lowered.compile(compiler_options=options(level))
      compile_s[level].append(time.perf_counter() - start)
    if config.model.get("dropout", 0.0):  # the plain step passes no dropout key
      continue
    jax.clear_caches()
    lowered = plain.lower(variables, s.state.opt_state, x, y)
    start = time.perf_counter()
    lowered.compile()
    plain_s.append(time.perf_counter() - start)
  compile_s = {level: min(t) for level, t in compile_s.items()}
  for level in levels:
    state, metrics = copy(), []
    for _ in range(3):
      state, m = compiled[level](state, images, labels, perm)
      metrics.append(m)
    bits[level] = digest((state, metrics))
  states = {level: copy() for level in levels}
  for level in levels:  # warm-up
    states[level], _ = compiled[level](states[level], images, labels, perm)
  times = {level: [] for level in levels}
  for _ in range(repeats):
    for level in levels:
      state = states[level]
      jax.block_until_ready(state)
      start = time.perf_counter()
      for _ in range(steps):
        state, _ = compiled[level](state, images, labels, perm)
      jax.block_until_ready(state)
      times[level].append((time.perf_counter() - start) / steps)
      states[level] = state
  base = levels[0]
  print(f"{name} (batch {config.batch_size}, {config.dtype}): {repeats} rounds of {steps} steps, "
        f"compile time the min of {compiles}")
  print(f"  {'level':<12}{'compile s':>10}{'step ms':>10}{'/default':>10}  bits")
  for level in levels:
    med = statistics.median(times[level])
    ratio = med / statistics.median(times[base])
    same = "same" if bits[level] == bits[base] else f"DIFFERENT ({bits[level]})"
    label = "default (3)" if level is None else str(level)
    print(f"  {label:<12}{compile_s[level]:>10.2f}{med * 1e3:>10.1f}{ratio:>10.3f}  {same}")
  if plain_s:
    print(f"  {'plain Flax':<12}{min(plain_s):>10.2f}  (its step at the default level: the model "
          "and optimiser alone)")
  else:
    print(f"  {'plain Flax':<12}{'-':>10}  (not compiled: the model has dropout)")
  sys.stdout.flush()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--configs", default="simple_cnn_fashion_mnist,lenet5_fashion_mnist")
  parser.add_argument("--levels", default="2,1", help="levels to compare with the default")
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--compiles", type=int, default=3, help="compilations per level (min)")
  parser.add_argument("--batch", type=int, default=None, help="override the configs' batch")
  args = parser.parse_args()
  jax.config.update("jax_enable_compilation_cache", False)
  levels = [None] + [int(x) for x in args.levels.split(",")]
  print(f"# {jax.devices()[0].device_kind}, jax {jax.__version__}, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
  for name in args.configs.split(","):
    measure(name, levels, repeats=args.repeats, steps=args.steps, compiles=args.compiles,
            batch=args.batch)
  print(f"# load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
  main()
