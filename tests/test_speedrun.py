"""The speed-run recipe's pieces: compact_resnet, the linear one-cycle schedule, label
smoothing, and the config itself training on small shapes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax.models import create_model
from cnn_jax.run import Run
from cnn_jax.train import create_optimizer, default_optimizer_config, steps, train_and_evaluate
from cnn_jax.train.config import load_config


def test_compact_resnet_parameter_count_and_feature_shapes():
  c, s, (w1, w2), k = 3, 4, (8, 16), 5
  model = create_model("compact_resnet", num_classes=k, stem_width=s, widths=(w1, w2))
  x = jnp.zeros((2, 20, 20, c))
  v = model.init(jax.random.key(0), x)
  conv = lambda cin, cout: 9 * cin * cout
  bn = lambda ch: 2 * ch
  stage = lambda cin, w: conv(cin, w) + bn(w) + 2 * (conv(w, w) + bn(w))
  expected = conv(c, s) + bn(s) + stage(s, w1) + stage(w1, w2) + w2 * k + k
  assert sum(a.size for a in jax.tree.leaves(v["params"])) == expected == 7_545
  logits, state = model.apply(v, x, mutable=["intermediates"])
  assert logits.shape == (2, k)
  shapes = {name: t[0].shape for name, t in state["intermediates"].items()}
  assert shapes == {"stem": (2, 20, 20, s), "stage1": (2, 10, 10, w1),
                    "stage2": (2, 5, 5, w2), "pooled": (2, w2)}
  with pytest.raises(ValueError, match="needs at least 4x4 pixels, got 3x3"):
    model.init(jax.random.key(0), jnp.zeros((1, 3, 3, c)))


def test_linear_schedule_warms_up_then_decays_to_zero():
  cfg = default_optimizer_config()
  cfg.name, cfg.learning_rate, cfg.schedule, cfg.warmup_steps = "sgd", 0.4, "linear", 10
  _, schedule = create_optimizer(cfg, total_steps=50)
  np.testing.assert_allclose(
      [float(schedule(t)) for t in (0, 5, 10, 20, 30, 50)],
      [0.0, 0.2, 0.4, 0.3, 0.2, 0.0], atol=1e-7,
  )
  cfg.warmup_steps = 0
  _, schedule = create_optimizer(cfg, total_steps=40)
  np.testing.assert_allclose([float(schedule(t)) for t in (0, 10, 40)], [0.4, 0.3, 0.0],
                             atol=1e-7)


def test_label_smoothing_trains_on_smoothed_targets_and_logs_the_hard_label_loss():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  labels = jnp.asarray([0, 3, 1, 2, 2, 1])
  # By hand: the true class gets 1 - 0.2 + 0.2 / 4, every other class 0.2 / 4.
  targets = np.full((6, 4), 0.05) + 0.8 * np.eye(4)[np.asarray(labels)]
  log_p = np.asarray(jax.nn.log_softmax(logits))
  np.testing.assert_allclose(steps.smoothed_cross_entropy(logits, labels, 0.2),
                             -(targets * log_p).sum(-1).mean(), rtol=1e-6)

  # Inside the step: one plain SGD step (learning rate 1) moves the parameters by minus
  # the gradient of optax's smoothed cross-entropy, computed here outside the step.
  model = create_model("simple_cnn", conv_features=(4,), dense_features=())
  state = steps.create_train_state(model, optax.sgd(1.0), jax.random.key(0), (8, 8, 1))
  images = jnp.asarray(rng.integers(0, 256, (6, 8, 8, 1), np.uint8))
  preprocess = lambda x: x.astype(jnp.float32) / 255.0
  step = jax.jit(functools.partial(steps.train_step, batch_size=6, preprocess=preprocess,
                                   label_smoothing=0.2))
  new, metrics = step(state, images, labels, jnp.arange(6), jnp.int32(0))

  def smoothed(params):
    out = model.apply({"params": params}, preprocess(images))
    return optax.softmax_cross_entropy(
        out, optax.smooth_labels(jax.nn.one_hot(labels, 10), 0.2)).mean(), out

  (_, out), grads = jax.value_and_grad(smoothed, has_aux=True)(state.params)
  expected = jax.tree.map(lambda p, g: p - g, state.params, grads)
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  hard = optax.softmax_cross_entropy_with_integer_labels(out, labels).mean()
  np.testing.assert_allclose(metrics["loss"], hard, rtol=1e-6)


def test_speedrun_config_trains_on_small_shapes(tmp_path):
  """The recipe as written (bf16, crops + flips, one-cycle SGD, label smoothing, several
  steps per call) with a narrow network on the 8x8 digits: the loss falls."""
  config = load_config("configs/speedrun_fashion_mnist.py", {
      "data.name": "digits", "model.stem_width": 4, "model.widths": (8, 16), "batch_size": 64,
      "num_epochs": 3, "steps_per_call": 2, "optimizer.warmup_epochs": 1,
  })
  summary = train_and_evaluate(config, str(tmp_path))
  train = [m for m in Run(tmp_path).read_metrics() if m["split"] == "train"]
  assert [m["step"] for m in train] == [22, 44, 66]  # logged once per epoch, 1438 // 64 = 22
  assert train[-1]["loss"] < 0.85 * train[0]["loss"]
  assert summary["test_accuracy"] > 0.3  # chance: 0.1 (flips and 2-px crops of 8x8 digits)
