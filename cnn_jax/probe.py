"""The one evaluator for every representation: a probe trained on frozen features.

`linear_probe`: softmax regression with L2 on standardised features (train-split
mean/std), trained deterministically with Optax — full-batch L-BFGS by default,
or minibatch Adam in an order fixed by `seed`. `svm_probe`: scikit-learn's RBF
SVC on the same standardised features, for the published "HOG + SVM" and
"SVC RBF" rows (quadratic in N: keep N moderate or set `max_train`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_jax import features as features_lib
from cnn_jax.data import Split
from cnn_jax.errors import ConfigError
from cnn_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class ProbeResult:
  """Scores of one probe on one representation."""

  probe: str
  train_acc: float
  test_acc: float
  dim: int
  extract_time_s: float
  train_time_s: float
  num_train: int
  num_test: int
  settings: dict[str, Any] = dataclasses.field(default_factory=dict)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def standardize(train: np.ndarray, *others: np.ndarray) -> tuple[np.ndarray, ...]:
  """Zero mean, unit variance per feature with the training statistics (constant
  features get std 1, so they stay 0)."""
  train = np.asarray(train, np.float32)
  mean = train.mean(0)
  std = train.std(0)
  std = np.where(std < 1e-6, 1.0, std).astype(np.float32)
  return tuple((np.asarray(x, np.float32) - mean) / std for x in (train, *others))


def _check(train_feats, train_labels, test_feats, test_labels) -> int:
  if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
    raise ConfigError(
        f"Features must be [N, D] with the same D, got {train_feats.shape} and {test_feats.shape}."
    )
  if len(train_feats) != len(train_labels) or len(test_feats) != len(test_labels):
    raise ConfigError("Each feature matrix needs one label per row.")
  return int(max(train_labels.max(), test_labels.max())) + 1


def _loss(params, x, y, l2):
  logits = x @ params["w"] + params["b"]
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return ce + 0.5 * l2 * jnp.sum(params["w"] ** 2)


# Stop once the gradient is this small: near float32 precision L-BFGS's line search
# burns its whole budget on every step without moving (50x slower, same weights).
LBFGS_GRAD_TOL = 1e-5


@functools.partial(jax.jit, static_argnames=("steps",))
def _fit_lbfgs(params, x, y, l2, steps: int):
  loss = functools.partial(_loss, x=x, y=y, l2=l2)
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def update(carry):
    params, state = carry
    value, grad = value_and_grad(params, state=state)
    updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
    return optax.apply_updates(params, updates), state

  def not_converged(carry):
    params, state, t = carry
    grad = optax.tree_utils.tree_get(state, "grad")
    return (t < steps) & ((t == 0) | (optax.tree_utils.tree_norm(grad) > LBFGS_GRAD_TOL))

  def body(carry):
    params, state, t = carry
    return (*update((params, state)), t + 1)

  params, _, _ = jax.lax.while_loop(not_converged, body, (params, opt.init(params), 0))
  return params


@functools.partial(jax.jit, static_argnames=("steps", "batch_size"))
def _fit_adam(params, x, y, l2, key, learning_rate, steps: int, batch_size: int):
  opt = optax.adam(learning_rate)
  per_epoch = x.shape[0] // batch_size

  def step(carry, t):
    params, state = carry
    epoch, i = t // per_epoch, t % per_epoch
    perm = jax.random.permutation(jax.random.fold_in(key, epoch), x.shape[0])
    idx = jax.lax.dynamic_slice_in_dim(perm, i * batch_size, batch_size)
    grad = jax.grad(_loss)(params, x[idx], y[idx], l2)
    updates, state = opt.update(grad, state, params)
    return (optax.apply_updates(params, updates), state), None

  (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(steps))
  return params


def _accuracy(params, x, y) -> float:
  return float(jnp.mean(jnp.argmax(x @ params["w"] + params["b"], -1) == y))


def linear_probe(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    test_feats: np.ndarray,
    test_labels: np.ndarray,
    *,
    l2: float = 1e-4,
    steps: int = 500,
    seed: int = 0,
    batch_size: int | None = None,
    learning_rate: float = 1e-3,
    extract_time_s: float = 0.0,
) -> ProbeResult:
  """Softmax regression on standardised `[N, D]` features; deterministic.

  `batch_size=None`: `steps` iterations of full-batch L-BFGS from zero weights.
  Otherwise `steps` minibatch Adam steps, the order drawn from `seed`.
  """
  k = _check(train_feats, train_labels, test_feats, test_labels)
  start = time.perf_counter()
  xtr, xte = standardize(train_feats, test_feats)
  ytr, yte = jnp.asarray(train_labels, jnp.int32), jnp.asarray(test_labels, jnp.int32)
  d = xtr.shape[1]
  params = {"w": jnp.zeros((d, k), jnp.float32), "b": jnp.zeros((k,), jnp.float32)}
  xtr_d, xte_d = jnp.asarray(xtr), jnp.asarray(xte)
  if batch_size is None:
    params = _fit_lbfgs(params, xtr_d, ytr, l2, steps)
  else:
    if not 1 <= batch_size <= len(xtr):
      raise ConfigError(f"batch_size={batch_size} must be between 1 and {len(xtr)}.")
    params = _fit_adam(params, xtr_d, ytr, l2, jax.random.key(seed), learning_rate, steps,
                       batch_size)
  train_acc, test_acc = _accuracy(params, xtr_d, ytr), _accuracy(params, xte_d, yte)
  return ProbeResult(
      probe="linear", train_acc=train_acc, test_acc=test_acc, dim=d,
      extract_time_s=extract_time_s, train_time_s=time.perf_counter() - start,
      num_train=len(xtr), num_test=len(xte),
      settings={"l2": l2, "steps": steps, "seed": seed, "batch_size": batch_size,
                "optimizer": "lbfgs" if batch_size is None else "adam"},
  )


def svm_probe(
    train_feats: np.ndarray,
    train_labels: np.ndarray,
    test_feats: np.ndarray,
    test_labels: np.ndarray,
    *,
    C: float = 10.0,  # noqa: N803 - scikit-learn's name
    gamma: str | float = "scale",
    max_train: int | None = None,
    seed: int = 0,
    extract_time_s: float = 0.0,
) -> ProbeResult:
  """RBF-kernel SVC (scikit-learn) on standardised features; `max_train` subsamples the
  training set (a fixed random subset from `seed`) to bound its O(N^2) cost."""
  from sklearn.svm import SVC

  _check(train_feats, train_labels, test_feats, test_labels)
  start = time.perf_counter()
  if max_train and max_train < len(train_feats):
    idx = np.sort(np.random.default_rng(seed).permutation(len(train_feats))[:max_train])
    train_feats, train_labels = train_feats[idx], train_labels[idx]
  xtr, xte = standardize(train_feats, test_feats)
  clf = SVC(C=C, kernel="rbf", gamma=gamma, random_state=seed).fit(xtr, train_labels)
  train_acc = float(np.mean(clf.predict(xtr) == train_labels))
  test_acc = float(np.mean(clf.predict(xte) == test_labels))
  return ProbeResult(
      probe="svm", train_acc=train_acc, test_acc=test_acc, dim=xtr.shape[1],
      extract_time_s=extract_time_s, train_time_s=time.perf_counter() - start,
      num_train=len(xtr), num_test=len(xte),
      settings={"C": C, "gamma": gamma, "max_train": max_train, "seed": seed},
  )


# Probes by name; their settings and defaults are the keyword-only parameters of each function.
PROBES: Registry[Callable[..., ProbeResult]] = Registry("probe", context=("extract_time_s",))
PROBES.register("linear")(linear_probe)
PROBES.register("svm")(svm_probe)


def probe_features(
    features: Mapping[str, Any],
    probe: Mapping[str, Any],
    train: Split,
    test: Split,
    *,
    batch_size: int = 1000,
    labelled: np.ndarray | None = None,
    **extra: Any,
) -> ProbeResult:
  """Extract-then-probe, the one path every caller uses (the benchmark and `experiments.probe`).

  Builds the extractor `features` (`name` + parameters; fitted on `train` where it
  fits anything), extracts both splits in batches, fits the probe `probe` (`name` +
  settings) on the training features and scores it on the test features. The
  extraction time includes building (fitting) the extractor. `extra`: extractor
  arguments that cannot live in a config (in-memory models). `labelled`: indices of
  the training examples whose labels the probe may use (learning from few labels);
  the extractor is still built from every training image, which needs no labels.
  """
  probe = dict(probe)
  name = probe.pop("name")
  PROBES.check_params(name, probe)
  start = time.perf_counter()
  fn = features_lib.make_extractor(
      features, image_shape=train.images.shape[1:], train_images=train.images, **extra
  )
  train_images, train_labels = train.images, train.labels
  if labelled is not None:
    train_images, train_labels = train_images[labelled], train_labels[labelled]
  train_feats = features_lib.apply_in_batches(fn, train_images, batch_size)
  test_feats = features_lib.apply_in_batches(fn, test.images, batch_size)
  extract_time = time.perf_counter() - start
  return PROBES.get(name)(
      train_feats, train_labels, test_feats, test.labels, extract_time_s=extract_time, **probe
  )
