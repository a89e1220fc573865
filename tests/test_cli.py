"""The command-line tools as a user runs them: real subprocesses, exit codes and output."""

import json
import os
import subprocess
import sys

import pytest
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


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=300)


def assert_one_line_error(r: subprocess.CompletedProcess, *expected: str) -> None:
  assert r.returncode == 2, r.stderr[-2000:]
  assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr[-2000:]
  for text in expected:
    assert text in r.stderr, r.stderr


CLIS = ["experiments.main", "experiments.benchmark", "experiments.probe", "experiments.inspect",
        "experiments.import_weights", "experiments.launch.slurm", "experiments.launch.tpu_vm"]


@pytest.mark.parametrize("module", CLIS)
def test_help_exits_0_and_prints_the_usage(module):
  r = run_module(module, "--help")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "python -m " + module in r.stdout and "--helpfull" in r.stdout
  assert "Traceback" not in r.stderr


@pytest.mark.parametrize("module", ["experiments.main", "experiments.launch.slurm",
                                    "experiments.launch.tpu_vm"])
def test_missing_config_file_is_one_line(module, tmp_path):
  r = run_module(module, "--config=configs/nope.py", f"--workdir={tmp_path / 'run'}", "--tpu=t",
                 "--config.num_epochs=2", "--dry_run")
  assert_one_line_error(r, "cannot load --config=configs/nope.py: no such file")
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("module", ["experiments.launch.slurm", "experiments.launch.tpu_vm"])
def test_launcher_misspelt_override_is_one_line(module):
  r = run_module(module, "--config=configs/lenet5_digits.py", "--workdir=/x", "--tpu=t",
                 "--config.optimizer.learnig_rate=0.1", "--dry_run")
  assert_one_line_error(r, "'learnig_rate' Did you mean \"learning_rate\"")


def test_missing_workdir_says_only_what_is_missing():
  r = run_main("--config=configs/lenet5_digits.py", "--config.num_epochs=2")
  assert_one_line_error(r, "missing --workdir (", "Pass --workdir=")
  assert "overrides" not in r.stderr and "bad flag" not in r.stderr
  r = run_main("--workdir=/x", "--config.num_epochs=2")  # an override needs its config file
  assert_one_line_error(r, "missing --config (")


@pytest.mark.parametrize("args", [
    ("experiments.main", "--config=configs/lenet5_digits.py", "--workdir=/x", "extra"),
    ("experiments.inspect",),
    ("experiments.inspect", "--model=lenet5", "--inputsize=3"),
    ("experiments.probe", "--config.hog.pixels_per_cel=4"),
    ("experiments.main", "--config=configs/lenet5_digits.py", "--workdir=/x",
     "--config.num_epochs=two"),
])
def test_other_flag_mistakes_are_one_line(args):
  assert_one_line_error(run_module(*args))


def test_first_run_on_a_fresh_tfds_dir_shows_no_noise(tmp_path):
  env = {**os.environ, "TFDS_DATA_DIR": str(tmp_path / "tfds")}  # digits are prepared here first
  r = subprocess.run(
      [sys.executable, "-m", "experiments.main", "--config=configs/lenet5_digits.py",
       f"--workdir={tmp_path / 'run'}", "--config.num_epochs=1"],
      cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
  )
  assert r.returncode == 0, r.stderr[-2000:]
  console = r.stdout + r.stderr
  for noise in ("Downloading and preparing", "Unknown size", "downloaded and prepared",
                "has no dataset_info.json", "Unable to initialize backend", "libtpu",
                "Generating splits", "\x1b["):
    assert noise not in console, noise
  assert "Preparing data set digits in " in r.stderr  # one line instead
  assert r.stdout == "" and len(r.stderr.splitlines()) <= 8, r.stderr


def test_console_filter_keeps_warnings_and_our_progress():
  import logging

  from cnn_jax import console

  def record(level, path, msg="something"):
    return logging.LogRecord("x", level, path, 1, msg, None, None)

  only = "/cnn_jax/"
  ours = f"{console.PACKAGE_DIR}/train/loop.py"
  jax_file = "/home/u/cnn_jax/.venv/lib/python3.11/site-packages/jax/_src/xla_bridge.py"
  assert console._shown(only, record(logging.INFO, ours))
  assert not console._shown(only, record(logging.INFO, jax_file))  # even below a cnn_jax folder
  assert console._shown(only, record(logging.WARNING, jax_file))  # real warnings stay
  assert console._shown(only, record(logging.ERROR, jax_file))
  assert not console._shown(only, record(logging.WARNING, jax_file, "Variant folder %s has no %s"))
  assert not console._shown("/cnn_jax/benchmark/", record(logging.INFO, ours))
