"""End-to-end training on tiny settings: determinism, metrics files, bad input."""

import json
import os
import shutil

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from configs import simple_cnn_fashion_mnist

from cnn_jax.errors import ConfigError
from cnn_jax.models import create_model
from cnn_jax.train import steps
from cnn_jax.run import Run
from cnn_jax.train import create_optimizer, default_optimizer_config, train_and_evaluate
from cnn_jax.train.config import load_config


def tiny_digits_config(**overrides):
  return load_config(
      "configs/lenet5_digits.py",
      {"num_epochs": 2, "batch_size": 64, "log_every_steps": 10, **overrides},
  )


def test_train_writes_config_metrics_and_summary(tmp_path):
  summary = train_and_evaluate(tiny_digits_config(), str(tmp_path))
  files = sorted(p.name for p in tmp_path.iterdir())
  assert files == ["checkpoints", "config.json", "metrics.jsonl", "summary.json", "tensorboard"]
  metrics = Run(tmp_path).read_metrics()
  train = [m for m in metrics if m["split"] == "train"]
  test = [m for m in metrics if m["split"] == "test"]
  assert [m["epoch"] for m in test] == [1, 2]
  assert train[-1]["step"] == summary["steps"] == 2 * (1438 // 64)
  assert train[-1]["loss"] < train[0]["loss"]  # it learns
  assert summary["num_params"] == 61_706 and summary["test_accuracy"] == test[-1]["accuracy"]
  assert json.loads((tmp_path / "config.json").read_text())["model"]["name"] == "lenet5"
  umask = os.umask(0)
  os.umask(umask)
  modes = {f: (tmp_path / f).stat().st_mode & 0o777 for f in ("config.json", "summary.json",
                                                             "metrics.jsonl")}
  assert modes == dict.fromkeys(modes, 0o666 & ~umask)  # no 0600 files among 0644 ones


def test_simple_cnn_with_batch_norm_and_dropout_trains(tmp_path):
  config = simple_cnn_fashion_mnist.get_config()
  config.data.name = "digits"
  config.model.conv_features = (8, 16)
  config.model.dense_features = (16,)
  config.model.batch_norm = True
  config.model.dropout = 0.1
  config.num_epochs = 2
  config.optimizer.learning_rate = 1e-2
  config.batch_size = 32
  config.log_every_steps = 20
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary["test_accuracy"] > 0.6  # 90 steps on digits (0.80 seen): far above chance


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("model.name", "lenet7", "Unknown model 'lenet7'. Known models: .*lenet5, .*simple_cnn"),
        ("data.name", "fashon_mnist", "Unknown data set 'fashon_mnist'"),
        ("optimizer.name", "adagradd", "Unknown optimizer 'adagradd'. Known optimizers: adam, adamw, sgd"),
        ("optimizer.schedule", "cosin", "Unknown learning-rate schedule 'cosin'"),
        ("model.num_classes", 12, "num_classes=12 but data set 'digits' has 10 classes"),
        ("batch_size", 5000, "batch_size=5000 must be between 1 and the 1438"),
        ("aux_loss_weight", 0.3, "sows no auxiliary logits.*aux_logits=True"),
        ("aux_loss_weight", -1.0, "aux_loss_weight must be >= 0"),
    ],
)
def test_bad_config_is_a_clear_error_and_leaves_no_workdir(tmp_path, field, value, message):
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError, match=message):
    train_and_evaluate(tiny_digits_config(**{field: value}), str(workdir))
  assert not workdir.exists()


def test_workdir_of_another_config_is_refused_untouched(tmp_path):
  train_and_evaluate(tiny_digits_config(num_epochs=1), str(tmp_path))
  tree = lambda: {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}  # noqa: E731
  before = tree()
  with pytest.raises(ConfigError, match="different config \\(optimizer.learning_rate: 0.002 -> 0.01, "
                     "seed: 0 -> 5\\)"):
    train_and_evaluate(
        tiny_digits_config(num_epochs=1, seed=5, **{"optimizer.learning_rate": 0.01}),
        str(tmp_path),
    )
  assert tree() == before
  # The check comes before data and model are built: a bad data set name is not reached.
  with pytest.raises(ConfigError, match=r"different config \(data.name: 'digits' -> 'nope'\)"):
    train_and_evaluate(tiny_digits_config(num_epochs=1, **{"data.name": "nope"}), str(tmp_path))


def test_a_resumed_run_may_change_how_often_it_saves_and_ends_bit_identical(tmp_path):
  whole = train_and_evaluate(tiny_digits_config(num_epochs=1), str(tmp_path / "whole"))
  cut = tmp_path / "cut"
  train_and_evaluate(
      tiny_digits_config(num_epochs=1, checkpoint_every_steps=5, keep_checkpoints=100), str(cut)
  )
  # As a kill after step 10 leaves it: the saves up to step 10, no summary.
  for p in (cut / "checkpoints").iterdir():
    if int(p.name) > 10:
      shutil.rmtree(p)
  (cut / "summary.json").unlink()
  resumed = train_and_evaluate(
      tiny_digits_config(num_epochs=1, checkpoint_every_steps=7, keep_checkpoints=2), str(cut)
  )
  assert sorted(int(p.name) for p in (cut / "checkpoints").iterdir()) == [21, 22]
  assert resumed["resumed_from_step"] == 10
  for key in ("steps", "test_accuracy", "test_loss"):
    assert resumed[key] == whole[key], key
  a, b = Run(tmp_path / "whole").restore_variables(), Run(cut).restore_variables()
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
  assert json.loads((cut / "config.json").read_text())["checkpoint_every_steps"] == 7


def test_a_run_from_before_a_new_config_field_resumes_if_it_holds_its_default(tmp_path):
  train_and_evaluate(tiny_digits_config(num_epochs=1), str(tmp_path))
  path = tmp_path / "config.json"
  old = json.loads(path.read_text())
  del old["aux_loss_weight"], old["seed"]  # as if written before these fields existed
  path.write_text(json.dumps(old))
  summary = train_and_evaluate(tiny_digits_config(num_epochs=1), str(tmp_path))
  assert summary["steps"] == 1438 // 64
  with pytest.raises(ConfigError, match=r"\(seed: 0 -> 5\)"):  # absent, and not the default
    train_and_evaluate(tiny_digits_config(num_epochs=1, seed=5), str(tmp_path))


def test_googlenet_auxiliary_losses_are_weighted_and_train_the_heads():
  model = create_model("googlenet", num_classes=10, stem="cifar", aux_logits=True)
  state = steps.create_train_state(model, optax.sgd(0.1), jax.random.key(0), (28, 28, 1))
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (4, 28, 28, 1), np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, 4), jnp.int32)
  preprocess = lambda x: x.astype(jnp.float32) / 255.0  # noqa: E731

  def step(weight):
    fn = functools.partial(steps.train_step, batch_size=4, preprocess=preprocess,
                           aux_loss_weight=weight)
    return jax.jit(fn)(state, images, labels, jnp.arange(4), jnp.int32(0))

  # Float32 throughout: on a GPU, XLA's default TF32 convolutions would round the step's
  # forward pass and this one (another program, other kernels) differently, about 1e-3.
  with jax.default_matmul_precision("highest"):
    with_aux, m = step(0.3)
    main_only, m0 = step(0.0)
    # The expected terms, from the same forward pass (same dropout key) outside the step
    # (jitted: eagerly, each of GoogLeNet's operations would be a compilation of its own).
    logits, upd = jax.jit(functools.partial(
        model.apply, train=True, mutable=["batch_stats", "intermediates"]))(
        {"params": state.params, "batch_stats": state.batch_stats}, preprocess(images),
        rngs={"dropout": jax.random.fold_in(state.dropout_key, state.step)})
  aux = [upd["intermediates"][k][0] for k in ("aux1_logits", "aux2_logits")]
  ce = lambda z: float(steps.cross_entropy_loss(z, labels))  # noqa: E731
  np.testing.assert_allclose(float(m["aux_loss"]), 0.3 * (ce(aux[0]) + ce(aux[1])), rtol=1e-5)
  np.testing.assert_allclose(float(m["loss"]), ce(logits), rtol=1e-5)
  assert "aux_loss" not in m0
  changed = lambda a, b: not np.array_equal(np.asarray(a), np.asarray(b))  # noqa: E731
  for head in ("aux1", "aux2"):  # heads learn only from their own loss
    assert not any(map(changed, jax.tree.leaves(main_only.params[head]),
                       jax.tree.leaves(state.params[head])))
    assert all(map(changed, jax.tree.leaves(with_aux.params[head]),
                   jax.tree.leaves(state.params[head])))
  # ... and their gradients reach the trunk below them.
  assert changed(with_aux.params["conv1"]["conv"]["kernel"],
                 main_only.params["conv1"]["conv"]["kernel"])




@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_optimizers_follow_schedule_and_weight_decay(name):
  cfg = default_optimizer_config()
  cfg.name, cfg.learning_rate, cfg.schedule, cfg.warmup_steps = name, 0.1, "cosine", 2
  cfg.weight_decay = 0.5
  tx, schedule = create_optimizer(cfg, total_steps=10)
  np.testing.assert_allclose([schedule(0), schedule(2), schedule(10)], [0.0, 0.1, 0.0], atol=1e-7)
  params = {"w": np.ones(3, np.float32)}
  state = tx.init(params)
  updates, _ = tx.update({"w": np.zeros(3, np.float32)}, state, params)
  # Step 0 has learning rate 0 under warm-up; the decay must still be wired in at step 1.
  updates, state2 = tx.update({"w": np.zeros(3, np.float32)}, state, params)
  updates, _ = tx.update({"w": np.zeros(3, np.float32)}, state2, params)
  assert np.all(np.asarray(updates["w"]) < 0)  # zero gradient: only weight decay moves w


def test_corrupt_fashion_mnist_stops_before_the_workdir(tmp_path, monkeypatch):
  import gzip

  from cnn_jax.data import DataError, idx

  monkeypatch.setattr(idx, "DEBIAN_DIR", str(tmp_path / "nowhere"))
  monkeypatch.delenv(idx.ENV_VAR, raising=False)
  raw = tmp_path / "raw"
  raw.mkdir()
  for name in idx.FASHION_MNIST_FILES:
    (raw / name).write_bytes(gzip.compress(b"not fashion-mnist"))
  config = simple_cnn_fashion_mnist.get_config()
  config.data.data_dir = str(raw)
  config.data.tfds_dir = str(tmp_path / "tfds")
  workdir = tmp_path / "run"
  with pytest.raises(DataError, match="train-images-idx3-ubyte.gz fails its MD5 check"):
    train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


def test_the_loop_lets_at_most_a_few_calls_run_ahead_of_the_device(monkeypatch):
  """A preemption signal is answered after the calls in flight: the window waits for the
  oldest call once more than `limit` are dispatched, so a loop that logs once an epoch does
  not queue the whole epoch before it can checkpoint."""
  from cnn_jax.train import loop

  waited = []
  monkeypatch.setattr(loop.jax, "block_until_ready", waited.append)
  window = loop.InFlight(3)
  for call in range(6):
    window.dispatched({"loss": call})
    assert len(window.calls) == min(call + 1, 3)
  assert waited == [{"loss": 0}, {"loss": 1}, {"loss": 2}]  # the oldest first, one per call
  assert loop.MAX_CALLS_IN_FLIGHT >= 2  # an accelerator's queue stays full


def test_the_loop_puts_every_call_through_the_window(tmp_path, monkeypatch):
  from cnn_jax.train import loop

  seen = []
  original = loop.InFlight.dispatched

  def spy(self, outputs):
    original(self, outputs)
    seen.append(len(self.calls))

  monkeypatch.setattr(loop.InFlight, "dispatched", spy)
  summary = train_and_evaluate(
      tiny_digits_config(num_epochs=1, log_every_steps=1000, tensorboard=False), str(tmp_path))
  assert len(seen) == summary["steps"] == 1438 // 64  # one call per step (steps_per_call=1)
  assert max(seen) == loop.MAX_CALLS_IN_FLIGHT  # the epoch was not queued whole
