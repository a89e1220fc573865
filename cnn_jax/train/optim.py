"""Optax optimisers and learning-rate schedules from the config, by name."""

from __future__ import annotations

from typing import Callable

import ml_collections
import optax

from cnn_jax.errors import ConfigError
from cnn_jax.registry import Registry

SCHEDULES: Registry[Callable[..., optax.Schedule]] = Registry("learning-rate schedule")
OPTIMIZERS: Registry[Callable[..., optax.GradientTransformation]] = Registry("optimizer")


@SCHEDULES.register("constant")
def _constant(lr: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
  del total_steps
  if warmup_steps:
    return optax.linear_schedule(0.0, lr, warmup_steps)
  return optax.constant_schedule(lr)


@SCHEDULES.register("cosine")
def _cosine(lr: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
  if not warmup_steps:
    return optax.cosine_decay_schedule(lr, max(total_steps, 1))
  return optax.warmup_cosine_decay_schedule(
      0.0, lr, warmup_steps, max(total_steps, warmup_steps + 1), end_value=0.0
  )


@OPTIMIZERS.register("sgd")
def _sgd(lr: optax.Schedule, cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  return optax.chain(
      optax.add_decayed_weights(cfg.weight_decay) if cfg.weight_decay else optax.identity(),
      optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov),
  )


@OPTIMIZERS.register("adam")
def _adam(lr: optax.Schedule, cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  # Classic L2 regularisation: the decay term goes through Adam's scaling.
  return optax.chain(
      optax.add_decayed_weights(cfg.weight_decay) if cfg.weight_decay else optax.identity(),
      optax.adam(lr, b1=cfg.b1, b2=cfg.b2),
  )


@OPTIMIZERS.register("adamw")
def _adamw(lr: optax.Schedule, cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  # Decoupled weight decay (Loshchilov & Hutter 2019).
  return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay)


def warmup_steps(cfg: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  """The warm-up length in steps: `warmup_steps`, or `warmup_epochs` of the data set."""
  epochs = cfg.get("warmup_epochs", 0)
  if cfg.warmup_steps and epochs:
    raise ConfigError(
        f"Set optimizer.warmup_steps ({cfg.warmup_steps}) or optimizer.warmup_epochs ({epochs}), "
        "not both."
    )
  if cfg.warmup_steps < 0 or epochs < 0:
    raise ConfigError("optimizer.warmup_steps and optimizer.warmup_epochs must be >= 0.")
  return int(cfg.warmup_steps or round(epochs * steps_per_epoch))


def create_optimizer(
    cfg: ml_collections.ConfigDict, total_steps: int, steps_per_epoch: int = 1
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """`cfg` fields: name, learning_rate, schedule, warmup_steps or warmup_epochs,
  weight_decay, momentum, nesterov, b1, b2, grad_clip_norm (0 = off)."""
  make = OPTIMIZERS.get(cfg.name)
  warmup = warmup_steps(cfg, steps_per_epoch)
  schedule = SCHEDULES.get(cfg.schedule)(cfg.learning_rate, total_steps, warmup)
  tx = make(schedule, cfg)
  if cfg.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
  return tx, schedule


def default_optimizer_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
      dict(
          name="adam",
          learning_rate=1e-3,
          schedule="cosine",
          warmup_steps=0,
          # Warm-up in epochs of the configured data set (resolved by the loop); use one
          # of the two.
          warmup_epochs=0.0,
          weight_decay=0.0,
          momentum=0.9,
          nesterov=False,
          b1=0.9,
          b2=0.999,
          grad_clip_norm=0.0,
      )
  )
