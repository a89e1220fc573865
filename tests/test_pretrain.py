"""Greedy layer-wise pre-training, fine-tuning from it, and the layerwise_pretraining suite."""

import json
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import REPO, built_once, subprocess_env
from pretrain_tiny import KILL_SUITE, SUITE, register

from cnn_jax import benchmark, data
from cnn_jax.benchmark import tables
from cnn_jax.errors import ConfigError
from cnn_jax.run import Run, flatten
from cnn_jax.train import loop, pretrain

register()


def _pretrain_experiment(arch: str):
  return benchmark.EXPERIMENTS.get(f"{arch}_pretrain").config("digits", 0)


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory) -> pathlib.Path:
  return built_once(tmp_path_factory, "pretrain_suite",
                    lambda workdir: benchmark.run_suite(SUITE, "digits", 1, workdir))


@pytest.mark.parametrize("arch", ["tmlp", "tconv"])
def test_every_layer_trains_and_its_reconstruction_loss_falls(suite_run, arch):
  root = suite_run / "runs" / f"{arch}_pretrain" / "seed_0"
  summary = json.loads((root / "summary.json").read_text())
  assert [s["layer"] for s in summary["layers"]] == (
      ["dense1", "dense2"] if arch == "tmlp" else ["block1/conv", "block2/conv"]
  )
  for i, layer in enumerate(summary["layers"]):
    metrics = Run(root / f"layer_{i + 1}").read_metrics()
    held = [m["loss"] for m in metrics if m["split"] == "held_out"]
    train = [m["loss"] for m in metrics if m["split"] == "train"]
    assert len(held) == 4 and len(train) == 3  # before training, then after each epoch
    assert held[-1] < 0.8 * held[0], layer
    assert train[-1] < train[0], layer
    assert layer["held_out_loss_after"] == held[-1]


@pytest.mark.parametrize("arch", ["tmlp", "tconv"])
def test_stacked_network_holds_each_layers_encoder_and_fine_tuning_starts_from_it(suite_run, arch):
  config = _pretrain_experiment(arch)
  root = suite_run / "runs" / f"{arch}_pretrain" / "seed_0"
  stacked = Run(root / "train").restore_variables()["params"]
  layers = pretrain.pretrainable_layers(config.train.model)
  for i, layer in enumerate(layers):
    encoder = pretrain._restore_layer(  # the layer's own autoencoder checkpoint
        *_layer_template(config, layers, i), root / f"layer_{i + 1}"
    )["encoder"]
    node = stacked
    for part in layer.path:
      node = node[part]
    for name in ("kernel", "bias"):
      np.testing.assert_array_equal(node[name], encoder[name])

  # The fine-tuning run's initial parameters: the pre-trained layers by value, the head
  # exactly the random-init run's (same seed), not some other initialisation.
  fine = benchmark.EXPERIMENTS.get(f"{arch}_finetuned_400").config("digits", 0).train
  scratch = benchmark.EXPERIMENTS.get(f"{arch}_scratch_400").config("digits", 0).train
  fine.init_from = str(root / "train")
  start = flatten(jax.tree.map(np.asarray, loop.setup(fine).state.params))
  fresh = flatten(jax.tree.map(np.asarray, loop.setup(scratch).state.params))
  pre = flatten(jax.tree.map(np.asarray, stacked))
  for key in start:
    if key.startswith("output."):
      np.testing.assert_array_equal(start[key], fresh[key])
    else:
      np.testing.assert_array_equal(start[key], pre[key])
      assert not np.array_equal(start[key], fresh[key]) or key.endswith("bias"), key
  # ... and the fine-tuned result differs from the random-init one.
  rows = {r["experiment"]: r for r in benchmark.load_table(suite_run)["rows"]}
  assert rows[f"{arch}_finetuned_400"]["test_accuracy_mean"] != rows[f"{arch}_scratch_400"]["test_accuracy_mean"]


def _layer_template(config, layers, i):
  """(layer i's autoencoder, an input of its shape): what `_restore_layer` builds on."""
  s = loop.setup(config.train)
  shape = s.train.images.shape[1:]
  if layers[0].kind == "dense":
    width = int(np.prod(shape)) if i == 0 else layers[i - 1].features
    return pretrain.Autoencoder(layers[i], width), np.zeros((1, width), np.float32)
  channels = shape[-1] if i == 0 else layers[i - 1].features
  size = shape[0] // (2 ** i)
  x = np.zeros((1, size, size, channels), np.float32)
  return pretrain.Autoencoder(layers[i], channels), x


def test_suite_table_plot_and_labelled_subsets(suite_run):
  table = benchmark.load_table(suite_run)
  sizes, groups = tables.by_labels(table)
  assert sizes == [100, 400] and len(groups) == 6
  assert sorted(groups["tmlp: random init"]) == [100, 400]
  assert [p["experiment"] for p in table["pretraining"]] == ["tmlp_pretrain", "tconv_pretrain"]
  md = (suite_run / "table.md").read_text()
  assert "## Test accuracy against the number of labelled training examples" in md
  assert "| tmlp_pretrain | dense1 | 3 |" in md
  assert (suite_run / "accuracy_vs_labels.png").read_bytes()[:4] == b"\x89PNG"
  # Every row of one seed saw the same labelled examples.
  train = data.load_split("digits", "train")
  a = data.labelled_indices(len(train), 100, 0)
  assert len(a) == 100 and len(set(a)) == 100
  np.testing.assert_array_equal(a, data.labelled_indices(len(train), 100, 0))
  assert not np.array_equal(a, data.labelled_indices(len(train), 100, 1))
  records = [json.loads(line) for line in (suite_run / "results.jsonl").read_text().splitlines()]
  fine = next(r for r in records if r["experiment"] == "tmlp_finetuned_100")
  assert fine["needs_hash"] == next(
      r["config_hash"] for r in records if r["experiment"] == "tmlp_pretrain"
  )
  metrics = Run(suite_run / "runs" / "tmlp_scratch_100" / "seed_0" / "train").read_metrics()
  assert [m["epoch"] for m in metrics if m["split"] == "test"] == [32, 64]  # eval_every_epochs


def _content(table: dict) -> dict:
  """A table's rows and pre-training losses without wall-clock times."""
  drop = lambda row: {k: v for k, v in row.items() if k != "time_s"}  # noqa: E731
  return {
      "rows": {r["experiment"]: drop(r) for r in table["rows"]},
      "pretraining": {p["experiment"]: drop(p) for p in table.get("pretraining", [])},
  }


def test_killed_suite_resumes_mid_layer_and_gives_the_same_table(suite_run, tmp_path):
  workdir = tmp_path / "killed"
  script = [sys.executable, str(REPO / "tests" / "pretrain_tiny.py"), str(workdir), KILL_SUITE]
  env = subprocess_env(REPO, REPO / "tests")
  log = tmp_path / "first.log"
  with log.open("w") as err:
    proc = subprocess.Popen(script, cwd=REPO, env=env, stderr=err)
    layer = workdir / "runs" / "tmlp_pretrain" / "seed_0" / "layer_2" / "checkpoints"
    deadline = time.time() + 300
    while not layer.exists() or not any(p.name.isdigit() for p in layer.iterdir()):
      assert proc.poll() is None, log.read_text()[-2000:]
      assert time.time() < deadline
      time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # in the second layer, after one of its checkpoints
    proc.wait()
  assert not (workdir / "runs" / "tmlp_pretrain" / "seed_0" / "summary.json").exists()
  r = subprocess.run(script, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Resuming from checkpoint" in r.stderr and "layer_2/checkpoints" in r.stderr
  killed, whole = _content(benchmark.load_table(workdir)), _content(benchmark.load_table(suite_run))
  assert set(killed["rows"]) == {"tmlp_finetuned_100", "tmlp_frozen_100"}
  assert killed["rows"] == {k: whole["rows"][k] for k in killed["rows"]}
  assert killed["pretraining"] == {"tmlp_pretrain": whole["pretraining"]["tmlp_pretrain"]}
  a = Run(workdir / "runs" / "tmlp_pretrain" / "seed_0" / "train").restore_variables()
  b = Run(suite_run / "runs" / "tmlp_pretrain" / "seed_0" / "train").restore_variables()
  jax.tree.map(np.testing.assert_array_equal, a, b)  # bit-identical after the kill


def test_suite_refuses_a_data_set_with_fewer_images_than_its_labels(tmp_path):
  with pytest.raises(ConfigError, match="6,000 labelled .* digits has 1,438 .*--dataset=fashion_mnist"):
    benchmark.run_suite("layerwise_pretraining", "digits", 1, tmp_path / "w")
  assert not (tmp_path / "w").exists()


def test_pretraining_refuses_models_it_cannot_pretrain():
  config = benchmark.EXPERIMENTS.get("tconv_pretrain").config("digits", 0).train
  config.model.batch_norm = True
  with pytest.raises(ConfigError, match="batch_norm=False"):
    pretrain.pretrainable_layers(config.model)
  config.model.name = "lenet5"
  with pytest.raises(ConfigError, match="supports the models mlp and simple_cnn"):
    pretrain.pretrainable_layers(config.model)


def test_init_from_with_another_number_of_classes_reinitialises_exactly_the_head(suite_run):
  source = suite_run / "runs" / "tmlp_scratch_400" / "seed_0" / "train"
  config = benchmark.EXPERIMENTS.get("tmlp_scratch_400").config("digits", 1).train
  config.init_from = str(source)
  # Five of the ten digit classes' worth of head: build the model with num_classes=5 by
  # initialising directly (the data set has 10 classes, so the loop would refuse it).
  from cnn_jax.train import init_from as init_lib

  s = loop.setup(config)
  src = Run(source).restore_variables()
  target = jax.tree.map(np.asarray, s.state.params)
  target["output"] = {"kernel": np.zeros((24, 5), np.float32), "bias": np.zeros((5,), np.float32)}
  params, _, copied, fresh = init_lib.merge_variables(target, {}, src)
  assert sorted(fresh) == [
      "params/output/bias (shape (10,) there, (5,) here)",
      "params/output/kernel (shape (24, 10) there, (24, 5) here)",
  ]
  assert len(copied) == 4
  for layer in ("dense1", "dense2"):
    for name in ("kernel", "bias"):
      np.testing.assert_array_equal(params[layer][name], src["params"][layer][name])
  np.testing.assert_array_equal(params["output"]["kernel"], np.zeros((24, 5)))
  other = benchmark.EXPERIMENTS.get("tconv_scratch_400").config("digits", 0).train
  other.init_from = str(source)
  with pytest.raises(ConfigError, match="holds a 'mlp' model but this config trains 'simple_cnn'"):
    loop.setup(other)
  other = benchmark.EXPERIMENTS.get("tmlp_scratch_400").config("digits", 0).train
  other.model.hidden = (7,)
  other.model.num_classes = 10
  other.init_from = str(source)
  s = loop.setup(other)  # only the output bias (10,) fits: copied, the rest fresh
  np.testing.assert_array_equal(s.state.params["output"]["bias"], src["params"]["output"]["bias"])


def test_num_train_out_of_range_is_a_clear_error():
  config = benchmark.EXPERIMENTS.get("tmlp_scratch_100").config("digits", 0).train
  config.data.num_train = 5000
  with pytest.raises(ConfigError, match="data.num_train=5000 must be between 1 and the 1438"):
    loop.setup(config)


def test_pretrain_command_then_fine_tune_with_main(tmp_path):
  """The two commands a user runs: experiments.pretrain, then experiments.main --config.init_from."""
  common = ["--config=configs/mlp_fashion_mnist.py", "--config.data.name=digits",
            "--config.model.hidden=16"]
  r = subprocess.run(
      [sys.executable, "-m", "experiments.pretrain", *common, "--pretrain.epochs=1",
       f"--workdir={tmp_path / 'pre'}"], cwd=REPO, capture_output=True, text=True, timeout=300,
  )
  assert r.returncode == 0, r.stderr[-2000:]
  assert "dense1: held-out reconstruction loss" in r.stdout
  r = subprocess.run(
      [sys.executable, "-m", "experiments.main", *common, "--config.num_epochs=1",
       "--config.data.num_train=200", f"--config.init_from={tmp_path / 'pre' / 'train'}",
       f"--workdir={tmp_path / 'fine'}"], cwd=REPO, capture_output=True, text=True, timeout=300,
  )
  assert r.returncode == 0, r.stderr[-2000:]
  assert "Initialised 4 arrays from" in r.stderr and "0 keep their fresh initialisation" in r.stderr
  assert "200 train" in r.stderr
  # The frozen `cnn` extractor (experiments.probe --features=cnn) reads the same network.
  from cnn_jax.features.cnn import build_cnn

  train = data.load_split("digits", "train")
  kwargs = {"image_shape": train.images.shape[1:], "train_images": train.images, "layer": "fc1"}
  features = build_cnn(workdir=str(tmp_path / "pre" / "train"), **kwargs)
  assert features(train.images[:5]).shape == (5, 16)
  with pytest.raises(ConfigError, match="holds a layer-wise pre-training run .*name its network"):
    build_cnn(workdir=str(tmp_path / "pre"), **kwargs)


def _tiny_cnn(**overrides):
  """simple_cnn with BatchNorm on 320 digits: 5 steps an epoch."""
  from cnn_jax.train.config import load_config

  return load_config("configs/simple_cnn_digits.py", {
      "data.num_train": 320, "batch_size": 64, "num_epochs": 1, "log_every_steps": 5,
      "model.batch_norm": True, "model.conv_features": (4, 8), "model.dense_features": (16,),
      **overrides,
  })


def test_train_only_the_head_leaves_every_other_array_as_loaded(tmp_path, caplog):
  source = tmp_path / "source"
  loop.train_and_evaluate(_tiny_cnn(), str(source))
  # Weight decay and clipping would move a frozen array if it saw any update at all.
  config = _tiny_cnn(**{
      "init_from": str(source), "train_only": ("output",), "seed": 1, "num_epochs": 2,
      "optimizer.name": "adamw", "optimizer.weight_decay": 0.1, "optimizer.grad_clip_norm": 0.5,
  })
  with caplog.at_level("INFO"):
    loop.train_and_evaluate(config, str(tmp_path / "head"))
  assert ("train_only=('output',): 2 of 12 arrays train (170 of 2,594 parameters): "
          "output/bias, output/kernel; frozen: block1, block2, dense1.") in caplog.text
  before = flatten(jax.tree.map(np.asarray, Run(source).restore_variables()))
  after = flatten(jax.tree.map(np.asarray, Run(tmp_path / "head").restore_variables()))
  assert sorted(before) == sorted(after) and len(before) == 16  # BatchNorm statistics too
  for key in before:
    if key.startswith("params.output."):
      assert not np.array_equal(after[key], before[key]), key
    else:
      np.testing.assert_array_equal(after[key], before[key], err_msg=key)


def test_train_only_names_modules_or_paths_below_them(tmp_path):
  from cnn_jax.train import optim

  params = loop.setup(_tiny_cnn()).state.params
  trained, frozen = optim.check_train_only(params, ("block2/norm", "output"))
  assert trained == ["block2/norm/bn/bias", "block2/norm/bn/scale", "output/bias", "output/kernel"]
  assert len(frozen) == 8
  stats = {"block1": {"norm": {"bn": {"mean": 0.0}}}, "block2": {"norm": {"bn": {"mean": 0.0}}}}
  new = jax.tree.map(lambda x: x + 1.0, stats)
  kept = optim.keep_frozen_stats(("block2/norm",))(stats, new)
  assert kept == {"block1": {"norm": {"bn": {"mean": 0.0}}}, "block2": {"norm": {"bn": {"mean": 1.0}}}}
  with pytest.raises(ConfigError, match="train_only names 'head', which is no module of this "
                     "model; its top-level modules are block1, block2, dense1, output"):
    loop.train_and_evaluate(_tiny_cnn(train_only=("head",)), str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
