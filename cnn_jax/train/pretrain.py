"""Greedy layer-wise unsupervised pre-training (Bengio et al. 2007; Vincent et al. 2008).

The lecture's account of how deep networks first became trainable: train the
first layer alone, as a denoising autoencoder that reconstructs its clean input
from a corrupted copy; freeze it; train the second layer the same way on the
first layer's outputs; and so on up the stack. No labels are used. The stacked
encoders then initialise a classifier that is fine-tuned end to end with labels
(`config.init_from`, see `cnn_jax.train.init_from`).

Layers that can be pre-trained:
  * `mlp`: every hidden `Dense` + activation (decoder: a `Dense` back to the input);
  * `simple_cnn`: every conv block's `Conv2D` + activation (decoder: a 'SAME'
    `Conv2D` back to the input channels, at the conv's resolution); the block's
    pooling is applied to the frozen outputs passed to the next layer. Blocks with
    BatchNorm are refused. Dense layers after the convs keep their random
    initialisation.

Corruption is masking noise (each input set to 0 with probability `noise`; 0 is
the mean pixel after standardisation); the loss is the mean squared error to the
clean input. Pixels are standardised with the training split's statistics,
exactly as in training.

Layout of a pre-training workdir:
  layer_<i>/           one layer's autoencoder: config-free run dir with checkpoints/,
                       metrics.jsonl (per-epoch training loss, held-out reconstruction
                       loss) and, once finished, summary.json
  train/               the assembled classifier (config.json + one checkpoint): the
                       pre-trained layers, the rest at the classifier's own seeded
                       initialisation; `init_from` and the frozen `cnn` extractor read it
  summary.json         every layer's reconstruction loss before and after, and the time

Every layer checkpoints every `checkpoint_every_steps` steps (and on SIGTERM), so a
killed run resumes at the layer and step it reached and ends bit-identical (CPU).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from cnn_jax.errors import ConfigError
from cnn_jax.layers import Conv2D, Dense, Pool, activation
from cnn_jax.run import Run, write_json_atomic
from cnn_jax.train import steps
from cnn_jax.train.checkpoint import Checkpointer
from cnn_jax.train.preemption import Preempted, PreemptionGuard

# `fold_in` tag of pre-training's random stream (layers fold in their index).
PRETRAIN_STREAM = 0x97e7
# Examples whose reconstruction loss is reported before and after each layer's training.
HELD_OUT = 2000


def default_pretrain_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.epochs = 5  # per layer, over every training image (no labels)
  config.batch_size = 128
  config.learning_rate = 1e-3  # Adam
  config.noise = 0.25  # masking noise: probability that an input is set to 0
  config.checkpoint_every_steps = 500
  return config


@dataclasses.dataclass(frozen=True)
class Layer:
  """One pre-trainable layer of a classifier."""

  path: tuple[str, ...]  # where its kernel and bias live in the classifier's params
  kind: str  # "dense" or "conv"
  features: int
  activation: str
  kernel_size: int = 0
  pool: str | None = None

  @property
  def name(self) -> str:
    return "/".join(self.path)


def pretrainable_layers(model_config: ml_collections.ConfigDict) -> list[Layer]:
  """The layers of the configured classifier that greedy pre-training trains, bottom up."""
  m = model_config
  if m.name == "mlp":
    return [Layer((f"dense{i + 1}",), "dense", w, m.activation) for i, w in enumerate(m.hidden)]
  if m.name == "simple_cnn":
    if m.batch_norm:
      raise ConfigError(
          "Layer-wise pre-training of simple_cnn needs --config.model.batch_norm=False "
          "(an autoencoder layer has no batch statistics to hand on)."
      )
    return [
        Layer((f"block{i + 1}", "conv"), "conv", f, m.activation, m.kernel_size, m.pool)
        for i, f in enumerate(m.conv_features)
    ]
  raise ConfigError(
      f"Layer-wise pre-training supports the models mlp and simple_cnn, not {m.name!r}."
  )


class Autoencoder(nn.Module):
  """One layer as an autoencoder: `encode` is the classifier's layer, `decoder` maps back."""

  layer: Layer
  out_features: int  # the input's width (dense) or channels (conv)

  def setup(self):
    if self.layer.kind == "dense":
      self.encoder = Dense(self.layer.features)
      self.decoder = Dense(self.out_features)
    else:
      k = self.layer.kernel_size
      self.encoder = Conv2D(self.layer.features, k, padding="SAME")
      self.decoder = Conv2D(self.out_features, k, padding="SAME")

  def encode(self, x: jax.Array) -> jax.Array:
    return activation(self.layer.activation)(self.encoder(x))

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.decoder(self.encode(x))


def layer_outputs(ae: Autoencoder, params, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
  """What the next layer sees: the frozen encoder's activations (pooled for conv blocks)."""
  pool = Pool(ae.layer.pool, 2) if ae.layer.pool else None

  @jax.jit
  def f(xb):
    h = ae.apply({"params": params}, xb, method=Autoencoder.encode)
    return pool.apply({}, h) if pool is not None else h

  return np.concatenate([np.asarray(f(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def _reconstruction_loss(ae: Autoencoder, params, x, keep) -> jax.Array:
  return jnp.mean((ae.apply({"params": params}, x * keep) - x) ** 2)


def train_layer(
    ae: Autoencoder, inputs: np.ndarray, key: jax.Array, pcfg: ml_collections.ConfigDict,
    run: Run,
) -> dict[str, Any]:
  """Trains one autoencoder (resuming from `run`'s checkpoints); returns its summary."""
  if run.has_summary():
    return run.read_summary()
  n = len(inputs)
  batch_size = min(pcfg.batch_size, n)
  steps_per_epoch = n // batch_size
  total = steps_per_epoch * pcfg.epochs
  init_key, data_key, noise_key, eval_key = jax.random.split(key, 4)
  tx = optax.adam(pcfg.learning_rate)
  state = steps.TrainState.create(
      apply_fn=ae.apply, params=jax.jit(ae.init)(init_key, inputs[:1])["params"], tx=tx,
      batch_stats={}, dropout_key=noise_key,
  )
  held_out = jnp.asarray(inputs[:HELD_OUT])
  held_out_keep = jax.random.bernoulli(eval_key, 1.0 - pcfg.noise, held_out.shape)
  eval_loss = jax.jit(lambda p: _reconstruction_loss(ae, p, held_out, held_out_keep))

  @jax.jit
  def train_step(state, x_all, perm, index):
    idx = jax.lax.dynamic_slice_in_dim(perm, index * batch_size, batch_size)
    x = x_all[idx]
    keep = jax.random.bernoulli(
        jax.random.fold_in(state.dropout_key, state.step), 1.0 - pcfg.noise, x.shape
    )
    loss, grads = jax.value_and_grad(_reconstruction_loss, argnums=1)(ae, state.params, x, keep)
    return state.apply_gradients(grads=grads), loss

  ckpt = Checkpointer(run, every_steps=pcfg.checkpoint_every_steps, keep=2)
  try:
    start, pending, time_before = 0, [], 0.0
    restored = ckpt.restore_latest(state)
    if restored is not None:
      state, meta = restored
      start, pending = int(state.step), list(meta["pending"])
      time_before = float(meta["time_s"])
    history = run.truncate_metrics(start if start else -1)  # a killed start leaves step 0
    x_all = jnp.asarray(inputs)
    t0 = time.perf_counter()
    with PreemptionGuard() as guard, run.metric_writer() as writer:
      if start == 0:
        record = {"step": 0, "epoch": 0, "split": "held_out", "loss": float(eval_loss(state.params))}
        writer.write(record)
        history.append(record)
      perm = None
      for step in range(start, total):
        epoch, index = divmod(step, steps_per_epoch)
        if index == 0 or perm is None:
          perm = jax.random.permutation(jax.random.fold_in(data_key, epoch), n)
        state, loss = train_step(state, x_all, perm, jnp.int32(index))
        pending.append(loss)
        done = step + 1
        if done % steps_per_epoch == 0:
          train_loss = float(np.mean([float(v) for v in pending]))
          if not math.isfinite(train_loss):
            raise ConfigError(
                f"Pre-training {ae.layer.name}: the reconstruction loss is {train_loss} at "
                f"step {done}; lower the pre-training learning rate."
            )
          pending = []
          for record in (
              {"step": done, "epoch": epoch + 1, "split": "train", "loss": train_loss},
              {"step": done, "epoch": epoch + 1, "split": "held_out",
               "loss": float(eval_loss(state.params))},
          ):
            writer.write(record)
            history.append(record)
          logging.info(
              "pre-training %s: epoch %d/%d  loss %.4f  held-out %.4f", ae.layer.name,
              epoch + 1, pcfg.epochs, train_loss, history[-1]["loss"],
          )
        if ckpt.due(done) or done == total or guard.requested:
          ckpt.save(state, {
              "pending": [float(v) for v in pending],
              "time_s": time_before + time.perf_counter() - t0,
          })
        if guard.requested:
          ckpt.wait()
          raise Preempted(
              f"Stopped by signal {guard.signum} while pre-training {ae.layer.name} at step "
              f"{done}; rerun the same command to resume.", guard.signum,
          )
    ckpt.wait()
  finally:
    ckpt.close()
  held = [r["loss"] for r in history if r["split"] == "held_out"]
  summary = {
      "layer": ae.layer.name, "steps": total, "epochs": pcfg.epochs,
      "held_out_loss_before": held[0], "held_out_loss_after": held[-1],
      "train_loss_per_epoch": [r["loss"] for r in history if r["split"] == "train"],
      "time_s": time_before + time.perf_counter() - t0,
  }
  run.write_summary(summary)
  return {**summary, "params": state.params}


def greedy_pretrain(
    train_config: ml_collections.ConfigDict,
    pretrain_config: ml_collections.ConfigDict,
    workdir: str,
) -> dict[str, Any]:
  """Pre-trains the layers of `train_config`'s classifier in turn; writes `workdir/train`.

  Resumes a killed run; returns the summary (also `workdir/summary.json`).
  """
  from cnn_jax.train.loop import setup as loop_setup  # the loop's data, model and init

  root = Run(workdir)
  if root.has_summary():
    return root.read_summary()
  layers = pretrainable_layers(train_config.model)
  if not 0.0 <= pretrain_config.noise < 1.0:
    raise ConfigError(f"pretrain.noise must be in [0, 1), got {pretrain_config.noise}.")
  if train_config.data.num_train:
    raise ConfigError(
        "Layer-wise pre-training uses every training image (no labels): leave data.num_train at 0."
    )
  s = loop_setup(train_config)
  start = time.perf_counter()
  x = np.asarray(s.normalize(jnp.asarray(s.train.images)))
  if layers[0].kind == "dense":
    x = x.reshape(len(x), -1)
  key = jax.random.fold_in(jax.random.key(train_config.seed), PRETRAIN_STREAM)
  params = jax.tree.map(np.asarray, s.state.params)
  stages, in_layers = [], 0.0  # layers' own times count once, from their summaries
  for i, layer in enumerate(layers):
    ae = Autoencoder(layer, x.shape[-1])
    t = time.perf_counter()
    result = train_layer(ae, x, jax.random.fold_in(key, i), pretrain_config,
                         Run(root.path / f"layer_{i + 1}"))
    in_layers += time.perf_counter() - t
    if "params" not in result:  # finished before: read its last checkpoint
      result = {**result, "params": _restore_layer(ae, x, root.path / f"layer_{i + 1}")}
    encoder = result.pop("params")["encoder"]
    node = params
    for part in layer.path[:-1]:
      node = node[part]
    if jax.tree.map(np.shape, node[layer.path[-1]]) != jax.tree.map(np.shape, dict(encoder)):
      raise ConfigError(f"Pre-trained layer {layer.name} does not fit the classifier's shapes.")
    node[layer.path[-1]] = jax.tree.map(np.asarray, dict(encoder))
    stages.append(result)
    if i + 1 < len(layers):
      x = layer_outputs(ae, {"encoder": encoder}, x)
      if layers[i + 1].kind == "dense":
        x = x.reshape(len(x), -1)
  _write_classifier(Run(root.path / "train"), train_config, s.state.replace(params=params))
  summary = {
      "layers": stages,
      "num_params": int(sum(np.prod(v.shape) for v in jax.tree.leaves(params))),
      # Every layer's training (over all parts of a resumed run) + this part's other work.
      "time_s": sum(st["time_s"] for st in stages) + time.perf_counter() - start - in_layers,
  }
  write_json_atomic(root.summary_path, summary)
  return summary


def _restore_layer(ae: Autoencoder, x: np.ndarray, path) -> dict[str, Any]:
  run = Run(path)
  template = steps.TrainState.create(
      apply_fn=ae.apply, params=jax.jit(ae.init)(jax.random.key(0), x[:1])["params"],
      tx=optax.adam(1e-3), batch_stats={}, dropout_key=jax.random.key(0),
  )
  ckpt = Checkpointer(run, every_steps=0, keep=2)
  try:
    restored = ckpt.restore_latest(template)
  finally:
    ckpt.close()
  if restored is None:
    raise ConfigError(f"{path} has a summary but no checkpoint; delete it to pre-train again.")
  return restored[0].params


def _write_classifier(run: Run, config: ml_collections.ConfigDict, state) -> None:
  """The assembled classifier as a run dir that `init_from` and `Run.load_model` read."""
  run.write_config(config)
  ckpt = Checkpointer(run, every_steps=0, keep=1)
  try:
    ckpt.save(state.replace(step=0), {"pretrained": True})
  finally:
    ckpt.close()
