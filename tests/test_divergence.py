"""A diverging run says so: one line and exit 2 for nan, a warning for an exploding loss."""

import subprocess
import sys

from conftest import REPO


def run_main(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "experiments.main", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300)


def test_nan_is_one_line_exit_2_and_true_to_the_workdir(tmp_path):
  r = run_main("--config=configs/simple_cnn_digits.py", f"--workdir={tmp_path / 'w'}",
               "--config.optimizer.learning_rate=1e9", "--config.num_epochs=1")
  assert r.returncode == 2, r.stderr[-2000:]
  assert "Traceback" not in r.stderr
  errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "loss is nan or inf at step" in errors[0]
  assert "No checkpoint was saved before it" in errors[0]  # none was: the message says so
  assert not any((tmp_path / "w" / "checkpoints").glob("[0-9]*"))


def test_an_exploding_finite_loss_is_reported(tmp_path):
  r = run_main("--config=configs/lenet5_digits.py", f"--workdir={tmp_path / 'w'}",
               "--config.optimizer.learning_rate=1000.0", "--config.optimizer.name=adam",
               "--config.optimizer.weight_decay=0.0", "--config.num_epochs=1")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "over 100 times that of a uniform guess (ln 10 = 2.30): the run is diverging" in r.stderr
  assert "The training loss diverged during this run" in r.stderr


def test_a_healthy_run_gives_no_divergence_warning(tmp_path):
  r = run_main("--config=configs/lenet5_digits.py", f"--workdir={tmp_path / 'w'}",
               "--config.num_epochs=1")
  assert r.returncode == 0 and "diverg" not in r.stderr
