"""`python -m experiments.main` as a user runs it."""

import json
import subprocess
import sys

from conftest import REPO


def run_main(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, "-m", "experiments.main", *args],
      cwd=REPO, capture_output=True, text=True, timeout=300,
  )


def test_cli_trains_with_overrides(tmp_path):
  workdir = tmp_path / "run"
  r = run_main(
      "--config=configs/lenet5_digits.py", f"--workdir={workdir}",
      "--config.num_epochs=1", "--config.optimizer.learning_rate=0.003",
  )
  assert r.returncode == 0, r.stderr[-2000:]
  config = json.loads((workdir / "config.json").read_text())
  assert config["num_epochs"] == 1 and config["optimizer"]["learning_rate"] == 0.003
  summary = json.loads((workdir / "summary.json").read_text())
  assert summary["epochs"] == 1 and 0.0 <= summary["test_accuracy"] <= 1.0
  assert "steps/s" in r.stderr and "ETA" in r.stderr  # readable progress


def test_misspelt_config_field_is_an_error(tmp_path):
  workdir = tmp_path / "run"
  r = run_main("--config=configs/lenet5_digits.py", f"--workdir={workdir}",
               "--config.optimizer.learnig_rate=0.1")
  assert r.returncode == 2
  assert "error: bad flag ('learnig_rate' Did you mean \"learning_rate\"" in r.stderr
  assert "Traceback" not in r.stderr
  assert not workdir.exists()


def test_unknown_model_is_one_clear_line(tmp_path):
  workdir = tmp_path / "run"
  r = run_main("--config=configs/lenet5_digits.py", f"--workdir={workdir}",
               "--config.model.name=alexnett")
  assert r.returncode == 2
  assert "error: Unknown model 'alexnett'. Known models: alexnet, " in r.stderr
  assert "Traceback" not in r.stderr
  assert not workdir.exists()
