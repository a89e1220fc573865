"""Optax optimisers and learning-rate schedules from the config, by name; frozen parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import jax
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


@SCHEDULES.register("linear")
def _linear(lr: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 to `lr`, then linear decay to 0 at `total_steps`: the one-cycle
  triangle of the fast CIFAR-10 recipes (Smith 2018; Page's ResNet-9)."""
  decay = optax.linear_schedule(lr, 0.0, max(total_steps - warmup_steps, 1))
  if not warmup_steps:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup_steps), decay],
                              [warmup_steps])


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
    cfg: ml_collections.ConfigDict,
    total_steps: int,
    steps_per_epoch: int = 1,
    train_only: Sequence[str] = (),
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """`cfg` fields: name, learning_rate, schedule, warmup_steps or warmup_epochs,
  weight_decay, momentum, nesterov, b1, b2, grad_clip_norm (0 = off).

  `train_only` (`config.train_only`; () = every parameter trains): the modules that
  train. Every other parameter gets exactly zero updates (`optax.set_to_zero` under
  `optax.multi_transform`): the optimiser, weight decay and gradient clipping see
  only the trained parameters, and keep no state for the frozen ones.
  """
  make = OPTIMIZERS.get(cfg.name)
  warmup = warmup_steps(cfg, steps_per_epoch)
  schedule = SCHEDULES.get(cfg.schedule)(cfg.learning_rate, total_steps, warmup)
  tx = make(schedule, cfg)
  if cfg.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), tx)
  if train_only:
    tx = optax.multi_transform(
        {"train": tx, "frozen": optax.set_to_zero()},
        lambda params: jax.tree.map(
            lambda trains: "train" if trains else "frozen", trainable_mask(params, train_only)
        ),
    )
  return tx, schedule


def _path_name(path: tuple[Any, ...]) -> str:
  """A key path (`jax.tree_util`) as `"block1/conv/kernel"`."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def _trains(name: str, train_only: Sequence[str]) -> bool:
  return any(name == t or name.startswith(t.rstrip("/") + "/") for t in train_only)


def trainable_mask(tree: Any, train_only: Sequence[str]) -> Any:
  """`tree` (parameters or BatchNorm statistics) with True where the array trains.

  An entry of `train_only` names a top-level module (`"output"`) or a path below one
  (`"block3/conv"`); it covers every array under it.
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, _: _trains(_path_name(path), train_only), tree
  )


def check_train_only(params: Any, train_only: Sequence[str]) -> tuple[list[str], list[str]]:
  """`(trained, frozen)` parameter paths; a ConfigError names an entry that matches nothing."""
  names = [_path_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]
  for entry in train_only:
    if not any(_trains(n, (entry,)) for n in names):
      top = sorted({n.split("/")[0] for n in names})
      raise ConfigError(
          f"train_only names {entry!r}, which is no module of this model; its top-level "
          f"modules are {', '.join(top)}. Name the ones that train, e.g. "
          f"--config.train_only='(\"{top[0]}\",)'."
      )
  trained = [n for n in names if _trains(n, train_only)]
  return trained, [n for n in names if not _trains(n, train_only)]


def keep_frozen_stats(train_only: Sequence[str]) -> Callable[[Any, Any], Any]:
  """`(old, new) -> statistics`: a frozen module's BatchNorm statistics stay the old ones.

  Running averages are no parameters, but a frozen layer whose statistics moved would
  compute other features at test time than the run it was loaded from.
  """
  def keep(old: Any, new: Any) -> Any:
    return jax.tree_util.tree_map_with_path(
        lambda path, o, n: n if _trains(_path_name(path), train_only) else o, old, new
    )
  return keep


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
