"""Checkpoints, resume and fault tolerance: nothing lost, bit-identical results."""

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import REPO, subprocess_env
from configs import lenet5_digits, simple_cnn_fashion_mnist

from cnn_jax.errors import ConfigError
from cnn_jax.run import Run
from cnn_jax.train import train_and_evaluate

# 2 epochs x 44 steps of LeNet-5 on digits, a checkpoint every 5 steps.
OVERRIDES = {
    "num_epochs": 2, "checkpoint_every_steps": 5, "keep_checkpoints": 3, "log_every_steps": 1,
}
TOTAL_STEPS = 88


def config(**overrides):
  c = lenet5_digits.get_config()
  for k, v in {**OVERRIDES, **overrides}.items():
    target = c
    *path, last = k.split(".")
    for p in path:
      target = target[p]
    target[last] = v
  return c


def cli_args(workdir: pathlib.Path, **overrides) -> list[str]:
  flags = [f"--config.{k}={v}" for k, v in {**OVERRIDES, **overrides}.items()]
  return [sys.executable, "-m", "experiments.main", "--config=configs/lenet5_digits.py",
          f"--workdir={workdir}", *flags]


def final_state(workdir: pathlib.Path) -> dict:
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  return ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(steps[-1]) / "state")


def assert_trees_identical(a, b):
  import jax

  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb) > 0
  for x, y in zip(la, lb):
    x, y = np.asarray(x), np.asarray(y)
    assert x.dtype == y.dtype and x.shape == y.shape
    assert x.tobytes() == y.tobytes()  # bit for bit


def wait_for_step(proc, workdir: pathlib.Path, step: int, timeout: float = 120) -> int:
  """Polls metrics.jsonl until a train record with `step` or later is written."""
  deadline = time.time() + timeout
  path = workdir / "metrics.jsonl"
  while time.time() < deadline:
    if proc.poll() is not None:
      raise AssertionError(f"training ended before step {step}: {proc.stderr.read()[-2000:]}")
    if path.exists():
      lines = [ln for ln in path.read_text().splitlines() if ln.endswith("}")]
      steps = [json.loads(ln)["step"] for ln in lines]
      if steps and max(steps) >= step:
        return max(steps)
    time.sleep(0.005)
  raise AssertionError(f"step {step} not reached in {timeout}s")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pathlib.Path:
  workdir = tmp_path_factory.mktemp("uninterrupted")
  r = subprocess.run(cli_args(workdir), cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  return workdir


def test_sigkill_at_random_steps_then_rerun_is_bit_identical(uninterrupted, tmp_path):
  workdir = tmp_path / "killed"
  kill_steps = sorted(random.Random(2024).sample(range(3, TOTAL_STEPS - 8), 3))
  reached = []
  for step in kill_steps:  # the same workdir is killed three times, resumed each time
    proc = subprocess.Popen(cli_args(workdir), cwd=REPO, stderr=subprocess.PIPE, text=True)
    reached.append(wait_for_step(proc, workdir, step))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
  assert len(set(reached)) == 3, reached
  r = subprocess.run(cli_args(workdir), cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "Resuming from checkpoint" in r.stderr
  assert_trees_identical(final_state(workdir), final_state(uninterrupted))
  assert (workdir / "metrics.jsonl").read_bytes() == (uninterrupted / "metrics.jsonl").read_bytes()


def test_sigterm_saves_a_checkpoint_at_the_current_step(tmp_path):
  workdir = tmp_path / "preempted"
  args = cli_args(workdir, checkpoint_every_steps=0, num_epochs=50)
  proc = subprocess.Popen(args, cwd=REPO, stderr=subprocess.PIPE, text=True)
  wait_for_step(proc, workdir, 10)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
  step = int(stderr.split("Stopped by signal 15 at step ")[1].split(";")[0])
  assert step >= 10
  saved = [int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]
  assert saved == [step]  # only the preemption checkpoint (periodic saving is off)
  assert Run(workdir).read_metrics()[-1]["step"] <= step


def _train_once(workdir: pathlib.Path, **overrides) -> dict:
  return train_and_evaluate(config(num_epochs=1, keep_checkpoints=20, **overrides), str(workdir))


def _steps(workdir: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.mark.parametrize("damage", ["truncated_file", "missing_directory"])
def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, caplog, damage):
  reference = _train_once(tmp_path / "reference")
  workdir = tmp_path / "run"
  _train_once(workdir)
  assert _steps(workdir)[-2:] == [40, 44]
  latest = workdir / "checkpoints" / "44"
  if damage == "truncated_file":
    biggest = max((p for p in (latest / "state").rglob("*") if p.is_file()), key=os.path.getsize)
    biggest.write_bytes(biggest.read_bytes()[: os.path.getsize(biggest) // 2])
  else:
    import shutil

    shutil.rmtree(latest / "state")
  good_before = {s: sorted(p.name for p in (workdir / "checkpoints" / str(s)).rglob("*"))
                 for s in _steps(workdir)[:-1]}
  (workdir / "summary.json").unlink()
  summary = _train_once(workdir)
  assert "checkpoints/44 is unreadable" in caplog.text
  assert summary["resumed_from_step"] == 40
  assert summary["test_accuracy"] == reference["test_accuracy"]
  # Timing covers the whole run (the first part up to checkpoint 40, then the rest) and,
  # separately, the last part.
  assert summary["train_time_s"] > summary["part_train_time_s"] > 0
  batch = json.loads((workdir / "config.json").read_text())["batch_size"]
  assert summary["images_per_s"] * summary["train_time_s"] == pytest.approx(44 * batch)
  assert summary["part_images_per_s"] * summary["part_train_time_s"] == pytest.approx(4 * batch)
  corrupt = list((workdir / "checkpoints_corrupt").iterdir())
  assert len(corrupt) == 1 and corrupt[0].name.startswith("44.")  # kept, not deleted
  for s, files in good_before.items():  # no good checkpoint was deleted or changed
    assert sorted(p.name for p in (workdir / "checkpoints" / str(s)).rglob("*")) == files
  assert_trees_identical(final_state(workdir), final_state(tmp_path / "reference"))


def test_unfinished_save_is_discarded_and_the_restart_says_so(tmp_path, caplog):
  # A kill during a save leaves `STEP.orbax-checkpoint-tmp` (orbax's name, seen by SIGKILL-ing a
  # run that checkpoints every step); orbax deletes it when the next run starts.
  workdir = tmp_path / "run"
  unfinished = workdir / "checkpoints" / "20.orbax-checkpoint-tmp"
  unfinished.mkdir(parents=True)
  summary = _train_once(workdir)
  assert ("Found an unfinished checkpoint save (step 20) in " in caplog.text
          and "no complete checkpoint is left, so the run starts from step 0." in caplog.text)
  assert summary["resumed_from_step"] == 0 and not unfinished.exists()
  caplog.clear()
  for step in (40, 44):  # the last two saves never finished: the run resumes from step 35
    import shutil

    shutil.rmtree(workdir / "checkpoints" / str(step))
  (workdir / "checkpoints" / "40.orbax-checkpoint-tmp" / "state").mkdir(parents=True)
  (workdir / "summary.json").unlink()
  summary = _train_once(workdir)
  assert ("Found an unfinished checkpoint save (step 40)" in caplog.text
          and "resuming from step 35, the latest complete checkpoint." in caplog.text)
  assert summary["resumed_from_step"] == 35
  assert _train_once(tmp_path / "again")["resumed_from_step"] == 0
  assert "unfinished" not in caplog.text.split("resuming from step 35")[1]  # only when found


def test_corrupt_checkpoint_recovery_is_one_console_line(tmp_path):
  workdir = tmp_path / "run"
  args = cli_args(workdir, checkpoint_every_steps=20, log_every_steps=10)
  r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  latest = workdir / "checkpoints" / str(max(_steps(workdir)))
  data = max((p for p in (latest / "state").rglob("*") if p.is_file()), key=os.path.getsize)
  data.write_bytes(data.read_bytes()[: os.path.getsize(data) // 2])
  (workdir / "summary.json").unlink()
  r = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  warning = [ln for ln in r.stderr.splitlines() if " is unreadable (" in ln]
  assert len(warning) == 1 and "; moved it to " in warning[0]
  assert "checkpoints_corrupt/" in warning[0] and "falling back to the previous one" in warning[0]
  assert "TensorStore" not in warning[0]
  for noise in ("Traceback", "Event loop is closed", "Task exception", "Exception ignored"):
    assert noise not in r.stderr, r.stderr[-3000:]
  assert len(r.stderr.splitlines()) <= 20, r.stderr[-3000:]


def test_leftovers_of_a_failed_orbax_read_go_to_the_debug_log(monkeypatch, caplog, capfd):
  """What orbax leaves after a failed read, made on purpose: the recovery test above sees it
  only when the garbage collector happens to run at the right time."""
  import asyncio
  import gc
  import logging

  from cnn_jax.train import checkpoint

  monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
  monkeypatch.setattr(logging.getLogger("asyncio"), "filters", [])
  monkeypatch.setattr(checkpoint._mute_failed_read_leftovers, "done", False, raising=False)
  seen = []
  monkeypatch.setattr(sys, "unraisablehook", seen.append)  # stands for Python's printing hook
  checkpoint._mute_failed_read_leftovers()
  code = compile(
      "class Pending:\n"
      "  def __await__(self):\n"
      "    yield\n"
      "async def read():\n"
      "  try:\n"
      "    await Pending()\n"
      "  except BaseException as e:\n"
      "    raise Exception('Encountered error while reading array index') from e\n"
      "async def fail():\n"
      "  raise ValueError('OUT_OF_RANGE: Error reading')\n",
      "/site-packages/orbax/checkpoint/_src/serialization/serialization.py", "exec",
  )
  fake_orbax = {}
  exec(code, fake_orbax)  # noqa: S102
  caplog.set_level(logging.DEBUG)
  pending = fake_orbax["read"]()
  pending.send(None)  # suspended at its await, as orbax leaves its other reads
  loop = asyncio.new_event_loop()
  task = loop.create_task(fake_orbax["fail"]())
  loop.run_until_complete(asyncio.sleep(0))  # the task fails; nobody retrieves its exception
  loop.close()
  del pending, task
  gc.collect()
  assert seen == [] and "Task exception was never retrieved" not in capfd.readouterr().err
  assert caplog.text.count("Left over from a failed checkpoint read") == 2
  sys.unraisablehook(type("U", (), {"exc_type": ValueError, "exc_value": ValueError("mine"),
                                    "exc_traceback": None, "object": None, "err_msg": None})())
  assert len(seen) == 1  # anything else still reaches the previous hook


def test_checkpoint_of_a_different_model_shape_is_refused(tmp_path):
  c = simple_cnn_fashion_mnist.get_config()
  c.data.name = "digits"
  c.model.conv_features = (4,)
  c.model.dense_features = ()
  c.num_epochs = 1
  c.checkpoint_every_steps = 20
  train_and_evaluate(c, str(tmp_path))
  before = _steps(tmp_path)
  (tmp_path / "config.json").unlink()  # as if the workdir were reused by hand
  c.model.conv_features = (6,)
  with pytest.raises(ConfigError, match=r"does not fit this config: \['params'\]\['block1'\]\['conv'\]\['bias'\] is \(4,\) float32 in the checkpoint but \(6,\) float32"):
    train_and_evaluate(c, str(tmp_path))
  assert _steps(tmp_path) == before


def test_nan_loss_stops_naming_the_step_and_keeps_good_checkpoints(tmp_path):
  workdir = tmp_path / "nan"
  overrides = {"optimizer.name": "sgd", "optimizer.learning_rate": 1e12, "batch_size": 64,
               "checkpoint_every_steps": 1, "log_every_steps": 10}
  with pytest.raises(FloatingPointError, match=r"loss is nan or inf at step (\d+)") as e:
    train_and_evaluate(config(**overrides), str(workdir))
  bad_step = int(str(e.value).split("at step ")[1].split(":")[0])
  steps = _steps(workdir)
  assert steps and max(steps) < bad_step  # nothing saved at or after the bad step
  assert f"The last good checkpoint, step {max(steps)} in {workdir / 'checkpoints'}, is kept" in str(e.value)
  state = final_state(workdir)
  import jax

  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state["params"]))
  assert not (workdir / "summary.json").exists()


def test_same_seed_same_parameters_different_seed_different(tmp_path):
  for name, seed in (("a", 0), ("b", 0), ("c", 1)):
    _train_once(tmp_path / name, seed=seed, checkpoint_every_steps=0)
  assert_trees_identical(final_state(tmp_path / "a")["params"], final_state(tmp_path / "b")["params"])
  assert (tmp_path / "a" / "metrics.jsonl").read_bytes() == (tmp_path / "b" / "metrics.jsonl").read_bytes()
  a = np.asarray(final_state(tmp_path / "a")["params"]["c1"]["conv"]["kernel"])
  c = np.asarray(final_state(tmp_path / "c")["params"]["c1"]["conv"]["kernel"])
  assert not np.array_equal(a, c)
  assert (tmp_path / "a" / "metrics.jsonl").read_bytes() != (tmp_path / "c" / "metrics.jsonl").read_bytes()


LAZY_ORBAX = """
import sys
import jax, jax.numpy as jnp, optax
from cnn_jax.run import Run
from cnn_jax.train.checkpoint import Checkpointer
from cnn_jax.train.steps import TrainState

run = Run(sys.argv[1])
ckpt = Checkpointer(run, every_steps=5, keep=3)
assert "orbax.checkpoint" not in sys.modules, "a new run started orbax before its first save"
assert ckpt.restore_latest(None) is None and ckpt.steps() == []
ckpt.wait()
state = TrainState.create(apply_fn=None, params={"w": jnp.arange(3.0)}, tx=optax.sgd(0.1),
                          batch_stats={}, dropout_key=jax.random.key(0)).replace(step=5)
ckpt.save(state, {"step": 5})
ckpt.close()
assert "orbax.checkpoint" in sys.modules
again = Checkpointer(Run(sys.argv[1]), every_steps=5, keep=3)  # folder not empty: starts orbax
print(again.steps(), again.restore_latest(state)[1])
"""


def test_a_new_run_loads_orbax_at_its_first_save_and_a_resume_finds_it(tmp_path):
  # Orbax's imports are start-up time (issue 17, item 4): a run with nothing to resume
  # starts without them, and what its first save writes is found by the next start.
  proc = subprocess.run(
      [sys.executable, "-c", LAZY_ORBAX, str(tmp_path / "work")], cwd=REPO, text=True,
      capture_output=True, check=False, env=subprocess_env(),
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip().splitlines()[-1] == "[5] {'step': 5}"
