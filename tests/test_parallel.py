"""Data parallelism on one CPU split into 8 devices: same numbers as one device.

Each run is a subprocess because the device count is fixed when JAX starts.
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, built_once

from cnn_jax.errors import ConfigError
from cnn_jax.train.parallel import check_batch_size

# SimpleCNN with BatchNorm on digits: 22 steps of a global batch of 64.
ARGS = [
    "--config=configs/simple_cnn_fashion_mnist.py", "--config.data.name=digits",
    "--config.model.batch_norm=True", "--config.model.conv_features=(8,16)",
    "--config.model.dense_features=(32,)", "--config.num_epochs=1", "--config.batch_size=64",
    "--config.log_every_steps=1", "--config.checkpoint_every_steps=10",
    "--config.keep_checkpoints=10", "--config.optimizer.learning_rate=0.01",
]


def run(workdir: pathlib.Path, devices: int, *extra: str, process: tuple[int, int] | None = None,
        port: int = 0, background: bool = False):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  args = [sys.executable, "-m", "experiments.main", f"--workdir={workdir}", *ARGS, *extra]
  if process is not None:
    args += [f"--config.distributed.coordinator_address=127.0.0.1:{port}",
             f"--config.distributed.num_processes={process[1]}",
             f"--config.distributed.process_id={process[0]}"]
  if background:
    return subprocess.Popen(args, cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
  r = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  return r


def losses(workdir: pathlib.Path) -> np.ndarray:
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  return np.array([r["loss"] for r in records if r["split"] == "train"])


@pytest.fixture(scope="module")
def one_device(tmp_path_factory) -> pathlib.Path:
  return built_once(tmp_path_factory, "one_device", lambda workdir: run(workdir, 1))


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory) -> pathlib.Path:
  return built_once(tmp_path_factory, "eight_devices", lambda workdir: run(workdir, 8))


def test_sharded_jit_and_pmap_match_one_device(one_device, eight_devices, tmp_path):
  run(tmp_path / "pmap", 8, "--config.parallelism=pmap")
  reference = losses(one_device)
  assert len(reference) == 22 and reference[-1] < reference[0]
  summary = json.loads((eight_devices / "summary.json").read_text())
  assert summary["num_devices"] == 8 and summary["parallelism"] == "jit"
  np.testing.assert_allclose(losses(eight_devices), reference, rtol=1e-5)
  np.testing.assert_allclose(losses(tmp_path / "pmap"), reference, rtol=1e-5)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one_process_with_eight_devices(eight_devices, tmp_path):
  workdir, port = tmp_path / "multihost", _free_port()
  procs = [run(workdir, 4, process=(i, 2), port=port, background=True) for i in (1, 0)]
  for p in procs:
    _, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr[-3000:]
  assert "Process 0 of 2; 4 local / 8 global devices" in stderr
  np.testing.assert_allclose(losses(workdir), losses(eight_devices), rtol=1e-5)
  assert json.loads((workdir / "summary.json").read_text())["num_devices"] == 8


@pytest.mark.parametrize("first, then", [(8, 1), (1, 8)])
def test_checkpoint_moves_between_device_counts(one_device, eight_devices, tmp_path, first, then):
  source = {1: one_device, 8: eight_devices}[first]
  workdir = tmp_path / "moved"
  shutil.copytree(source, workdir)
  for step in ("20", "22"):  # keep the step-10 checkpoint only
    shutil.rmtree(workdir / "checkpoints" / step)
  (workdir / "summary.json").unlink()
  r = run(workdir, then)
  assert "Resuming from checkpoint" in r.stderr and "checkpoints/10" in r.stderr
  resumed = losses(workdir)
  np.testing.assert_array_equal(resumed[:10], losses(source)[:10])  # kept as written
  np.testing.assert_allclose(resumed, losses({1: one_device, 8: eight_devices}[then]), rtol=1e-5)


def test_batch_size_must_divide_device_count():
  check_batch_size(64, 8)
  with pytest.raises(ConfigError, match="batch_size=100 does not divide by the 8 devices.*96 or 104"):
    check_batch_size(100, 8)


def _launch(module: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=120)


def test_slurm_dry_run_two_nodes_of_eight_gpus(tmp_path):
  r = _launch("experiments.launch.slurm", "--config=configs/simple_cnn_fashion_mnist.py",
              "--workdir=/shared/runs/cnn", "--nodes=2", "--gpus_per_node=8",
              "--config.batch_size=256", "--partition=gpu", "--dry_run")
  assert r.returncode == 0, r.stderr
  out = r.stdout
  for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
               "#SBATCH --partition=gpu", "# 2 nodes x 8 GPUs = 16 devices",
               "sbatch /shared/runs/cnn/launch/job.sbatch"):
    assert line in out.splitlines(), line
  srun = [ln for ln in out.splitlines() if ln.startswith("srun ")]
  assert srun == [
      "srun --kill-on-bad-exit=1 python -m experiments.main "
      "--config=configs/simple_cnn_fashion_mnist.py --workdir=/shared/runs/cnn "
      "--config.batch_size=256 --config.distributed.mode=always"
  ]
  assert not pathlib.Path("/shared/runs/cnn").exists()  # a dry run writes nothing
  bad = _launch("experiments.launch.slurm", "--config=configs/simple_cnn_fashion_mnist.py",
                "--workdir=/x", "--nodes=3", "--gpus_per_node=8", "--dry_run")
  assert bad.returncode == 2 and "batch_size=128 does not divide by the 24 devices" in bad.stderr


def test_tpu_vm_dry_run_v4_32():
  r = _launch("experiments.launch.tpu_vm", "--config=configs/simple_cnn_fashion_mnist.py",
              "--workdir=/mnt/shared/cnn", "--tpu=pod", "--zone=us-central2-b",
              "--accelerator_type=v4-32", "--repo_url=https://example.org/cnn_jax.git",
              "--create", "--dry_run")
  assert r.returncode == 0, r.stderr
  lines = r.stdout.splitlines()
  assert lines[0] == "# v4-32: 4 hosts, 16 devices"
  assert lines[1] == ("gcloud compute tpus tpu-vm create pod --zone=us-central2-b "
                      "--accelerator-type=v4-32 --version=tpu-ubuntu2204-base")
  assert lines[2].startswith("gcloud compute tpus tpu-vm ssh pod --zone=us-central2-b --worker=all "
                             "--command='(git clone https://example.org/cnn_jax.git")
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
  assert f" && git checkout --detach {head.stdout.strip()} && " in lines[2]  # the exact commit
  assert lines[3] == (
      "gcloud compute tpus tpu-vm ssh pod --zone=us-central2-b --worker=all --command='cd cnn_jax"
      " && .venv/bin/python -m experiments.main --config=configs/simple_cnn_fashion_mnist.py "
      "--workdir=/mnt/shared/cnn --config.distributed.mode=always'"
  )


@pytest.mark.parametrize("url", ["/work/main", "../cnn_jax", "file:///srv/cnn_jax.git"])
def test_tpu_vm_refuses_a_local_repo_path(url):
  r = _launch("experiments.launch.tpu_vm", "--config=configs/simple_cnn_fashion_mnist.py",
              "--workdir=/mnt/shared/cnn", "--tpu=pod", f"--repo_url={url}", "--dry_run")
  assert r.returncode == 2 and r.stdout == ""
  assert r.stderr == (f"error: --repo_url is a local path ({url}), which the TPU hosts cannot "
                      "clone; pass --repo_url=URL they can reach (e.g. "
                      "https://github.com/you/cnn_jax.git) and push this commit there.\n")


def test_tpu_vm_pins_the_commit_and_refuses_a_dirty_checkout(tmp_path, capsys):
  from experiments.launch import tpu_vm

  for url in ("https://github.com/a/b.git", "git@github.com:a/b.git", "ssh://host/b"):
    assert not tpu_vm.is_local_path(url)
  git = lambda *a: subprocess.run(["git", "-C", str(tmp_path), *a], check=True,  # noqa: E731
                                  capture_output=True, text=True).stdout.strip()
  git("init", "-q")
  (tmp_path / "f.py").write_text("x = 1\n")
  git("add", "f.py")
  git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
  head = git("rev-parse", "HEAD")
  assert tpu_vm.pinned_commit(tmp_path, dry_run=False) == head
  (tmp_path / "f.py").write_text("x = 2\n")
  assert tpu_vm.pinned_commit(tmp_path, dry_run=True) == head  # a dry run warns
  assert "warning: the checkout has uncommitted changes in 1 file;" in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    tpu_vm.pinned_commit(tmp_path, dry_run=False)
  assert e.value.code == 2
  assert f"TPU hosts would run commit {head[:12]} without them" in capsys.readouterr().err


def test_every_batch_norm_model_accepts_the_pmap_axis():
  import inspect as std_inspect

  import jax
  import jax.numpy as jnp

  from cnn_jax import layers
  from cnn_jax.models import MODELS, create_model

  for name in MODELS.names():
    model = create_model(name, num_classes=10)
    size = 32 if name == "lenet5" else 64  # LeNet-5 takes at most 32x32
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
    if "batch_stats" in variables:  # a model with BatchNorm must let pmap average its statistics
      assert "axis_name" in std_inspect.signature(MODELS.get(name)).parameters, name
  assert "axis_name" in std_inspect.signature(layers.BatchNorm).parameters
