"""benchmarks/train_speed.py compares like with like: the contestants compute the same update.

No timings are asserted; the figures live in benchmarks/results/train_speed_*.txt.
"""

import importlib.util
import json
import sys
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO

spec = importlib.util.spec_from_file_location("train_speed", REPO / "benchmarks" / "train_speed.py")
train_speed = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = train_speed  # dataclasses look their module up while it loads
spec.loader.exec_module(train_speed)

TINY = train_speed.Workload(
    "simple_cnn", 8, (8, 8, 1),
    model_kwargs=(("conv_features", (4, 8)), ("kernel_size", 3), ("dense_features", (16,))),
    loop_data="digits",
)


def _run(contestant, calls):
  step, carry, _ = contestant
  for i in range(calls):
    carry = step(carry, i)
  return carry


def _close(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, b)


def test_project_plain_flax_and_given_batch_steps_make_the_same_updates():
  s = train_speed.build(TINY, num_images=64)
  project = _run(train_speed.project_step(s), 2)  # batches 0 and 1 of the permutation
  variables, opt_state, tx = train_speed.plain_flax_init(s)
  update = jax.jit(train_speed.plain_flax_update(s.model, tx))
  for index in range(2):
    x, y = train_speed.data_lib.batch_from_permutation(s.images, s.labels, s.perm, index, 8)
    variables, opt_state, loss = update(variables, opt_state, s.preprocess(x), y)
    if index == 0:  # the project's loss metric of its first step, on the same batch
      _, metrics = jax.jit(
          lambda st: train_speed.steps.train_step(
              st, s.images, s.labels, s.perm, jnp.int32(0), batch_size=8,
              preprocess=s.preprocess)
      )(s.state)
      np.testing.assert_allclose(loss, metrics["loss"], rtol=1e-6)
  assert int(project.step) == 2
  _close(project.params, variables["params"])
  # The diagnostic rows train on batch 0 every call: one call each equals one project step.
  one = _run(train_speed.project_step(s, grad_norm=False, shardings=False), 1)
  for preprocessed in (False, True):
    given = _run(train_speed.project_step_given_batch(s, preprocessed=preprocessed), 1)
    _close(given.params, one.params)
  with pytest.raises(AssertionError):  # the comparison can fail: two steps differ from one
    _close(project.params, one.params)
  if jax.default_backend() == "cpu":  # XLA's own convolutions: the same update, other rounding
    _close(_run(train_speed.project_step(s, cpu_convolutions="eigen"), 2).params, project.params)


def test_torch_peers_have_the_flax_models_parameter_counts():
  pytest.importorskip("torch")
  for name in ("simple_cnn_b128", "lenet5_b128"):
    w = train_speed.WORKLOADS[name]
    model = train_speed.model_from_config(train_speed.workload_config(w))
    shapes = jax.eval_shape(
        lambda m=model, w=w: m.init(jax.random.key(0), jnp.zeros((1, *w.image)), train=False)
    )
    flax_count = sum(np.prod(x.shape) for x in jax.tree.leaves(shapes["params"]))
    torch_count = sum(p.numel() for p in train_speed.torch_model(w).parameters())
    assert flax_count == torch_count, name


@pytest.mark.slow  # eight compiles and two short training runs
def test_main_reports_every_row_and_writes_the_files(tmp_path):
  out = tmp_path / "speed.txt"
  with mock.patch.dict(train_speed.WORKLOADS, {"tiny": TINY}, clear=True):
    payload = train_speed.main([
        "--workloads=tiny", "--diagnose=tiny", "--loop-workloads=tiny", "--quick", "--no-torch", "--step-k=2", "--loop-steps-per-call=1,2",
        "--loop-interval=2", "--loop-intervals=1", f"--out={out}",
        f"--profile-loop={tmp_path / 'profile.txt'}",
    ])
  rows = payload["img_per_s"]["tiny"]
  cpu = jax.default_backend() == "cpu"  # two more rows there: step and loop, eigen convolutions
  assert len(rows) == 9 + 2 * cpu and all(rate > 0 for rate in rows.values())
  assert "loop, steps_per_call=2" in out.read_text()
  if cpu:
    assert train_speed.EIGEN_ROW in rows
    assert "loop, steps_per_call=1, cpu_convolutions='eigen'" in rows
  assert json.loads(out.with_suffix(".json").read_text())["machine"]["git_commit"]
  profile = (tmp_path / "profile.txt").read_text()  # each loop once more, under cProfile
  assert profile.count("# tiny, loop, steps_per_call=") == 2 and "loop.py" in profile


def test_loop_overhead_times_the_loop_around_its_null_step_and_restores_the_loop(monkeypatch):
  monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # it imports train_speed by name
  spec = importlib.util.spec_from_file_location(
      "loop_overhead", REPO / "benchmarks" / "loop_overhead.py")
  loop_overhead = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(loop_overhead)
  from cnn_jax.train import loop

  traced = []
  null_step = loop_overhead.null_step
  monkeypatch.setattr(loop_overhead, "null_step", lambda *a: traced.append(1) or null_step(*a))
  original = loop.make_parallel, loop.device_get_stacked
  for stacked in (True, False):
    us = loop_overhead.loop_us(TINY, 20, stacked_reads=stacked)
    assert 0 < us < 1e6
    assert (loop.make_parallel, loop.device_get_stacked) == original
  assert traced  # the loop ran the null step, not the model's
  s = train_speed.build(TINY, num_images=64)
  state, m = jax.jit(null_step)(s.state, s.images, s.labels, s.perm)
  assert int(state.step) == int(s.state.step) + 1
  jax.tree.map(np.testing.assert_array_equal, state.params, s.state.params)
  assert sorted(m) == sorted(loop_overhead.METRICS)
