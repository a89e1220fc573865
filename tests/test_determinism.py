"""config.deterministic sets XLA's deterministic-ops flag before the backend starts (issue 17)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

from cnn_jax.train import determinism


@pytest.mark.parametrize("flags, expected", [
    ("", False),
    ("--xla_gpu_deterministic_ops", True),
    ("--xla_gpu_deterministic_ops=true --foo=1", True),
    ("--xla_gpu_deterministic_ops=true --xla_gpu_deterministic_ops=false", False),
    ("--xla_force_host_platform_device_count=8", False),
])
def test_flag_value_reads_xla_flags_as_xla_does(flags, expected):
  assert determinism.flag_value(flags) is expected


def test_with_flag_replaces_every_occurrence_and_keeps_other_flags():
  out = determinism.with_flag(
      "--a=1 --xla_gpu_deterministic_ops=false --b --xla_gpu_deterministic_ops", True
  )
  assert out.split() == ["--a=1", "--b", "--xla_gpu_deterministic_ops=true"]
  assert determinism.flag_value(out) is True
  assert determinism.flag_value(determinism.with_flag(out, False)) is False


# A fresh process: the flag must be in XLA_FLAGS before its backend starts, and the
# summary says what the backend started with.
SCRIPT = """
import json, os, sys
from configs import lenet5_digits
from cnn_jax.train import train_and_evaluate
c = lenet5_digits.get_config()
c.num_epochs = 1
c.tensorboard = False
c.deterministic = sys.argv[2] == "on"
summary = train_and_evaluate(c, sys.argv[1])
import jax
print(json.dumps({"summary": summary["xla_deterministic_ops"],
                  "env": os.environ.get("XLA_FLAGS", ""), "backend": jax.default_backend()}))
"""


@pytest.mark.parametrize("setting", ["on", "off"])
def test_config_sets_the_flag_before_the_backend_starts(tmp_path, setting):
  env = {**os.environ, "XLA_FLAGS": "--xla_gpu_deterministic_ops=false --xla_cpu_enable_fast_math=false"}
  if setting == "off":
    env["XLA_FLAGS"] = "--xla_gpu_deterministic_ops=true"
  out = subprocess.run(
      [sys.executable, "-c", SCRIPT, str(tmp_path / "w"), setting], cwd=REPO, env=env,
      capture_output=True, text=True, timeout=300, check=True,
  )
  got = json.loads(out.stdout.strip().splitlines()[-1])
  assert got["summary"] is (setting == "on")
  assert determinism.flag_value(got["env"]) is (setting == "on")
  if setting == "on":  # the user's other flags survive
    assert "--xla_cpu_enable_fast_math=false" in got["env"]
  summary = json.loads((tmp_path / "w" / "summary.json").read_text())
  assert summary["xla_deterministic_ops"] is (setting == "on")


def test_after_the_backend_started_the_answer_is_what_it_started_with(monkeypatch):
  import jax

  jax.numpy.zeros(1).block_until_ready()  # the backend has started
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
  assert determinism.apply(True) is False  # too late: says so, changes nothing
  assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=1"
