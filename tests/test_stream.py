"""The streaming input source (cnn_jax/data/stream.py): the device-resident source's batches,
read from array_record files per host, resumable bit for bit."""

import json
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
import tiny_dataset
from conftest import REPO, needs_fashion_mnist, subprocess_env
from test_checkpoint import assert_trees_identical, cli_args, final_state, wait_for_step
from test_parallel import _free_port

from cnn_jax import data
from cnn_jax.data import stream
from cnn_jax.errors import ConfigError
from cnn_jax.run import Run
from cnn_jax.train import train_and_evaluate
from cnn_jax.train.config import load_config

AUGMENT = ("random_crop(pad=4)", "flip_lr")


def _config(source: str, dataset: str = tiny_dataset.NAME, **overrides):
  # 192 labelled examples: 2 epochs of 3 steps, augmented.
  return load_config("configs/simple_cnn_fashion_mnist.py", {
      "data.name": dataset, "data.source": source, "data.num_train": 192,
      "data.augment": AUGMENT, "num_epochs": 2, "batch_size": 64, "log_every_steps": 1,
      "checkpoint_every_steps": 0, "model.conv_features": (8, 16),
      "model.dense_features": (32,), "tensorboard": False, **overrides})


# Fashion-MNIST (the acceptance test) reads 70,000 images three times: slow on 2 cores.
DATASETS = [tiny_dataset.NAME, pytest.param("fashion_mnist", marks=[needs_fashion_mnist,
                                                                    pytest.mark.slow])]


@pytest.mark.parametrize("dataset", DATASETS)
def test_stream_reads_the_device_sources_batches_in_its_order(dataset):
  split = stream.open_split(dataset, "train")
  whole = data.load_split(dataset, "train")
  positions = data.labelled_indices(len(whole), 192, seed=0)
  labelled, streamed = data.subset(whole, positions), split.subset(positions)
  key = jax.random.key(7)
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  batches = stream.device_batches(streamed, key, sharding, batch_size=64, steps_per_epoch=3,
                                  start_step=2, stop_step=8, num_threads=2)
  for step, (x, y) in zip(range(2, 8), batches, strict=True):
    perm = data.epoch_permutation(key, step // 3, 192)
    want_x, want_y = data.batch_from_permutation(
        labelled.images, labelled.labels, perm, step % 3, 64)
    np.testing.assert_array_equal(np.asarray(x), want_x)
    np.testing.assert_array_equal(np.asarray(y), want_y)
  assert stream.streamed_normalization(split) == pytest.approx(data.Normalization.from_split(whole))


@pytest.mark.parametrize("dataset", DATASETS)
def test_stream_and_device_sources_train_alike(tmp_path, dataset):
  results = {}
  for source in ("device", "stream"):
    summary = train_and_evaluate(_config(source, dataset), str(tmp_path / source))
    run = Run(tmp_path / source)
    results[source] = (summary, run.read_metrics(), run.restore_variables())
  (d_summary, d_metrics, d_vars), (s_summary, s_metrics, s_vars) = results.values()
  assert [m["step"] for m in s_metrics] == [m["step"] for m in d_metrics]
  assert len(d_metrics) == 8 and d_metrics[-1]["loss"] < d_metrics[0]["loss"]
  np.testing.assert_allclose([m["loss"] for m in s_metrics], [m["loss"] for m in d_metrics],
                             rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               s_vars, d_vars)
  assert s_summary["test_accuracy"] == pytest.approx(d_summary["test_accuracy"], abs=2e-3)


def test_device_source_refuses_a_split_too_big_and_names_the_streaming_source():
  stream.check_fits_device("big", "train", 1000, (32, 32, 3), limit=4_000_000)
  with pytest.raises(ConfigError, match=r"2\.86 GiB .*--config\.data\.source=stream"):
    stream.check_fits_device("big", "train", 250_000, (64, 64, 3), limit=1 << 30)


@pytest.mark.parametrize("overrides, message", [
    ({"steps_per_call": 4}, "runs one step per call"),
    ({"parallelism": "pmap"}, "set --config.parallelism=jit"),
    ({"data.source": "disk"}, "Unknown data.source 'disk'; choose one of device, stream"),
])
def test_streaming_refuses_what_it_does_not_run(tmp_path, overrides, message):
  config = _config("stream", **overrides)
  with pytest.raises(ConfigError, match=message):
    train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run" / "config.json").exists()


def test_sigkill_and_resume_with_streaming_is_bit_identical(tmp_path):
  stream_args = {"data.source": "stream", "data.stream_threads": 2}
  whole = subprocess.run(cli_args(tmp_path / "whole", **stream_args), cwd=REPO,
                         capture_output=True, text=True, timeout=300)
  assert whole.returncode == 0, whole.stderr[-2000:]
  workdir = tmp_path / "killed"
  proc = subprocess.Popen(cli_args(workdir, **stream_args), cwd=REPO, stderr=subprocess.PIPE,
                          text=True)
  wait_for_step(proc, workdir, 53)  # past a checkpoint in the second epoch (every 5 steps)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  r = subprocess.run(cli_args(workdir, **stream_args), cwd=REPO, capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "Resuming from checkpoint" in r.stderr
  resumed = Run(workdir).read_summary()["resumed_from_step"]
  assert 44 < resumed < 88, resumed  # mid-epoch: the reader restarts mid-way
  assert_trees_identical(final_state(workdir), final_state(tmp_path / "whole"))
  assert (workdir / "metrics.jsonl").read_bytes() == (tmp_path / "whole" / "metrics.jsonl").read_bytes()


def test_two_processes_read_disjoint_shards_that_cover_the_split(tmp_path):
  data.load_split(tiny_dataset.NAME, "train")  # prepared once, before two processes race
  env = subprocess_env(REPO, REPO / "tests", JAX_PLATFORMS="cpu",
                       XLA_FLAGS="--xla_force_host_platform_device_count=4")
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, str(REPO / "tests" / "stream_shards.py"), str(i),
                             str(port), str(tmp_path / f"{i}.json")], cwd=REPO, env=env,
                            stderr=subprocess.PIPE, text=True) for i in (0, 1)]
  for p in procs:
    _, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr[-3000:]
  shards = [json.loads((tmp_path / f"{i}.json").read_text()) for i in (0, 1)]
  assert [s["rows"] for s in shards] == [[0, 32], [32, 64]]  # each its 4 devices' rows
  assert all(s["local_devices"] == 4 for s in shards)
  read = [np.concatenate(s["records"]) for s in shards]
  assert len(read[0]) == len(read[1]) == 128
  assert not set(read[0]) & set(read[1])
  assert sorted(np.concatenate(read)) == list(range(256))  # the whole split, each record once


@pytest.mark.slow  # writes 2.1 GB of array_record files (minutes), then streams them
def test_streaming_2gb_keeps_peak_memory_under_1_5_gb_and_device_source_refuses_it(tmp_path):
  script = [sys.executable, str(REPO / "tests" / "stream_big.py")]
  env = subprocess_env(REPO, REPO / "tests")
  tfds_dir = tmp_path / "tfds"
  w = subprocess.run([*script, "write", str(tfds_dir), str(tmp_path)], cwd=REPO, env=env,
                     capture_output=True, text=True, timeout=3600)
  assert w.returncode == 0, w.stderr[-3000:]
  for raw in tmp_path.glob("*.u8"):
    raw.unlink()  # the generator's scratch copy: only the array_record files remain
  r = subprocess.run([*script, "read", str(tfds_dir)], cwd=REPO, env=env, capture_output=True,
                     text=True, timeout=3600)
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.loads(r.stdout.strip().splitlines()[-1])
  assert out["file_bytes"] >= 2e9
  assert out["examples"] == 170_000 and out["label_sum"] == 17_000 * 45  # every record once
  assert out["peak_rss_bytes"] < 1.5e9, out
  assert "more than the device-resident source holds" in out["refused"]
  assert "--config.data.source=stream" in out["refused"]
