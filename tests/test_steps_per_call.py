"""Several training steps per dispatch give exactly the step-by-step run (CPU)."""

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, small_digits_cnn_run, subprocess_env

from cnn_jax.models import model_from_config
from cnn_jax.train import loop, parallel, steps
from cnn_jax.train.config import load_config
from cnn_jax.train.optim import create_optimizer

# Bit-identity across differently built programs is the CPU's guarantee: on an accelerator
# the K-step program does not isolate its steps (parallel.make_parallel), and its compiler
# fuses and rounds by its own rules.
cpu_only = pytest.mark.skipif(
    jax.default_backend() != "cpu", reason="K steps = K=1 bit for bit is promised on the CPU")


def _tiny(n: int, b: int, cpu_convolutions: str = "default", **model):
  """A digits CNN's initial state on `n` random 8x8 images, and its step and K-step call
  compiled for batches of `b` (preprocessing and `cpu_convolutions` as the loop's)."""
  config = load_config("configs/simple_cnn_digits.py", {f"model.{k}": v for k, v in model.items()})
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (n, 8, 8, 1), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
  perm = jnp.asarray(rng.permutation(n).astype(np.int32))
  tx, _ = create_optimizer(config.optimizer, n // b, n // b)
  state = steps.create_train_state(model_from_config(config), tx, jax.random.key(0), (8, 8, 1))
  kwargs = {"batch_size": b, "preprocess": lambda x: x.astype(jnp.float32) / 255}
  options = parallel.cpu_compiler_options(cpu_convolutions)
  one = jax.jit(functools.partial(steps.train_step, **kwargs), compiler_options=options)
  many = jax.jit(functools.partial(steps.train_steps, isolate_steps=True, **kwargs),
                 static_argnums=(5,), compiler_options=options)
  return state, (images, labels, perm), one, many


@cpu_only
@pytest.mark.parametrize("model", [{}, {"model.batch_norm": True}], ids=["plain", "batch_norm"])
def test_k_steps_per_call_equal_one_step_per_call_bit_for_bit(tmp_path, model, optimized):
  one_metrics, one_vars = small_digits_cnn_run(tmp_path / "k1", **model)
  # K=4 with logs every 7 steps, saves every 10 and 22 steps an epoch: calls of 4, 3, 2
  # and 1 steps (each length is a program of its own), cut short at every kind of boundary.
  metrics, variables = small_digits_cnn_run(tmp_path / "k4", steps_per_call=4, **model)
  assert metrics == one_metrics
  jax.tree.map(np.testing.assert_array_equal, variables, one_vars)


@cpu_only
@pytest.mark.parametrize(("model", "cpu_convolutions"), [
    ({"conv_features": (8, 16), "dense_features": (32,), "batch_norm": True}, "default"),
    ({"conv_features": (4, 8, 8), "dense_features": (16,), "batch_norm": True}, "default"),
    ({"conv_features": (), "dense_features": (32, 16)}, "default"),
    ({"conv_features": (8, 16), "dense_features": (32,), "batch_norm": True}, "eigen"),
], ids=["bn_cnn", "bn_cnn_3_blocks", "mlp", "bn_cnn_eigen_convolutions"])
def test_k_steps_in_one_program_equal_k_programs_bit_for_bit(model, cpu_convolutions, optimized):
  """The step-level guarantee behind the loop's: parameters, BatchNorm statistics,
  optimiser state and metrics of `train_steps` (as `parallel.make_parallel` compiles it on the
  CPU) equal K single steps to the bit. Both of its measures count here: with
  `lax.scan` the gradient convolutions compile differently (the first block's kernel
  gradient differs after one step), and without `isolate_steps` the BatchNorm running
  means and the BatchNorm scales' Adam moments do (after two steps)."""
  state, (images, labels, perm), one, many = _tiny(64, 16, cpu_convolutions, **model)
  k = 3  # the differences this guards against showed after one and after two steps
  stepped, metrics = state, []
  for _ in range(k):
    stepped, m = one(stepped, images, labels, perm)
    metrics.append(m)
  called, m = many(state, images, labels, perm, None, k)
  jax.tree.map(np.testing.assert_array_equal,
               (called.params, called.batch_stats, called.opt_state, called.step, m),
               (stepped.params, stepped.batch_stats, stepped.opt_state, stepped.step,
                jax.tree.map(lambda *xs: np.stack(xs), *metrics)))


def test_calls_end_where_the_loop_logs_evaluates_and_checkpoints():
  config = load_config("configs/simple_cnn_digits.py", {
      "steps_per_call": 16, "log_every_steps": 7, "checkpoint_every_steps": 10})
  spe, total = 22, 44
  step, calls = 0, []
  while step < total:
    k = loop.steps_this_call(step, total, spe, config, 10)
    calls.append(k)
    step += k
  ends = np.cumsum(calls)
  for boundary in (7, 10, 14, 20, 21, 22, 28, 30, 35, 40, 42, 44):
    assert boundary in ends
  assert max(calls) <= 16 and sum(calls) == total


def test_without_an_index_the_step_takes_its_batch_from_the_step_counter():
  """The loop passes no index (nothing from the host): batch `state.step % steps_per_epoch`."""
  state, (images, labels, perm), one, many = _tiny(  # 5 steps per epoch
      40, 8, conv_features=(4,), dense_features=(8,))
  state = state.replace(step=jnp.int32(13))  # epoch 2, batch 3

  def same(a, b):  # parameters, optimiser state and metrics, bit for bit
    (state_a, metrics_a), (state_b, metrics_b) = a, b
    jax.tree.map(np.testing.assert_array_equal, (state_a.params, state_a.opt_state, metrics_a),
                 (state_b.params, state_b.opt_state, metrics_b))

  implicit = one(state, images, labels, perm)
  same(implicit, one(state, images, labels, perm, jnp.int32(3)))
  with np.testing.assert_raises(AssertionError):  # another batch gives another step
    same(implicit, one(state, images, labels, perm, jnp.int32(0)))
  same(many(state, images, labels, perm, None, 2),
       many(state, images, labels, perm, jnp.int32(3), 2))


def test_metrics_are_read_in_few_transfers_and_unchanged(monkeypatch):
  calls = []
  stack = loop._stack
  monkeypatch.setattr(loop, "_stack", lambda *xs: calls.append(len(xs)) or stack(*xs))
  n = 2 * loop.FETCH_CHUNK + 3
  values = jax.random.normal(jax.random.key(0), (n,))
  pending = [  # as the loop holds them: scalars a step, [k] from a multi-step call, and
      # floats restored from a checkpoint; a second dtype makes a group of its own
      *({"loss": values[i], "accuracy": values[i] > 0} for i in range(n)),
      {"loss": values[:5], "accuracy": values[:5] > 0},
      {"loss": 0.25, "accuracy": 1.0},
  ]
  got = loop.device_get_stacked(pending)
  want = jax.device_get(pending)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    assert np.asarray(g).dtype == np.asarray(w).dtype
    np.testing.assert_array_equal(g, w)
  # n float scalars and n bool scalars: 3 stacks each (2 full, 1 padded), one shape
  assert calls == [loop.FETCH_CHUNK] * 6
  per_step = loop.per_step(pending)
  assert len(per_step) == n + 5 + 1
  assert [float(m["loss"]) for m in per_step[n:n + 5]] == [float(v) for v in values[:5]]


def test_pmap_metrics_keep_their_device_axis_until_read_and_read_the_same():
  """Under pmap the loop holds each metric's first-device copy with its device axis (no
  program a step) and `per_step(..., replica_axis=True)` drops the axis: the same values
  as taking replica 0 on the device, for single steps, multi-step calls and restored floats."""
  step = jax.pmap(lambda x: {"loss": x.sum(), "accuracy": x.mean()}, axis_name="d")
  many = jax.pmap(lambda x: {"loss": x[:3] * 2, "accuracy": x[:3] / 4}, axis_name="d")
  n = jax.local_device_count()
  x = jax.random.normal(jax.random.key(1), (n, 5))
  par = parallel.Parallel("pmap", None, None, None)
  held = [par.metrics(step(x)), par.metrics(many(x)), {"loss": 0.5, "accuracy": 0.25}]
  assert held[0]["loss"].shape == (1,) and held[1]["loss"].shape == (1, 3)
  on_device = [jax.tree.map(parallel._first_replica, step(x)),
               jax.tree.map(parallel._first_replica, many(x)), held[2]]
  got, want = loop.per_step(held, replica_axis=True), loop.per_step(on_device)
  assert len(got) == len(want) == 1 + 3 + 1
  for g, w in zip(got, want):
    assert g.keys() == w.keys()
    for key in g:
      assert g[key].shape == () and g[key].dtype == w[key].dtype
      np.testing.assert_array_equal(g[key], w[key])


def test_the_whole_run_check_compares_at_full_optimisation_and_reports_per_case():
  """`benchmarks/steps_per_call_check.py` (whose committed results back the README) runs a
  case at K and at 1 as a real run compiles, and prints whether both are equal."""
  out = subprocess.run(
      [sys.executable, str(REPO / "benchmarks" / "steps_per_call_check.py"), "--k=2",
       "--devices=2", "--cases=cnn"],
      env=subprocess_env(), capture_output=True, text=True, check=True).stdout
  assert "# jax " in out and "2 cpu devices" in out
  assert "cnn            K=2 vs K=1: metrics.jsonl equal True, variables equal True" in out
