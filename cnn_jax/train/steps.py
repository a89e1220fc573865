"""The train state, loss, and the jit-compiled train and eval steps."""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training import train_state

from cnn_jax.data.pipeline import batch_from_permutation
from cnn_jax.errors import ConfigError

Preprocess = Callable[[jax.Array], jax.Array]


class TrainState(train_state.TrainState):
  """params + optimiser state (from flax) + BatchNorm statistics + the dropout key."""

  batch_stats: Any = None
  dropout_key: jax.Array = struct.field(default=None)


# Functions that run once or once per epoch (the initialisation, the root keys, the epoch's
# permutation) take milliseconds to run, but XLA:CPU's default LLVM optimisation (level 3)
# spends seconds compiling them: the random initialisers were 4.6 s of a 5.9 s cold start
# for the 2-conv CNN under load. Level 1 compiles them about 4x faster and gives the same
# bits for them (tests/test_startup.py checks the initial state of the models the tables
# train). Not for every train step: with BatchNorm, levels 1 and 2 change the step's bits
# (benchmarks/results/compile_level_cpu.txt), so the steps keep XLA's default level.
ONE_OFF_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def root_keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """(init key, data key): the two streams of a run, split from `seed` in one compiled call."""

  def split(root):
    init_key, data_key = jax.random.split(root)
    return init_key, data_key

  # The root key outside: `jax.random.key` takes any Python int (a jitted argument is int32).
  return jax.jit(split, compiler_options=one_off_compiler_options())(jax.random.key(seed))


def train_state_initializer(
    model: nn.Module, tx: optax.GradientTransformation, input_shape: tuple[int, ...]
) -> Callable[[jax.Array], TrainState]:
  """key -> the initial TrainState: the model's initialisers on a dummy `[1, H, W, C]` batch
  (shapes only), the optimiser's state, the dropout key."""

  def init(key: jax.Array) -> TrainState:
    init_key, dropout_key = jax.random.split(key)
    variables = model.init(init_key, jnp.zeros((1, *input_shape), jnp.float32), train=False)
    return TrainState.create(
        apply_fn=model.apply,
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        tx=tx,
        dropout_key=dropout_key,
    )

  return init


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    key: jax.Array,
    input_shape: tuple[int, ...],
) -> TrainState:
  """The initial TrainState, from one compiled function (each eager operation of the key
  split and the optimiser's zeros would be a compilation of its own)."""
  init = train_state_initializer(model, tx, input_shape)
  return jax.jit(init, compiler_options=one_off_compiler_options())(key)


def one_off_compiler_options() -> dict[str, Any] | None:
  """ONE_OFF_COMPILER_OPTIONS on a CPU (`jax.jit(..., compiler_options=)`), unless
  `jax_disable_most_optimizations` asks for even less."""
  if jax.default_backend() != "cpu" or jax.config.values["jax_disable_most_optimizations"]:
    return None
  return ONE_OFF_COMPILER_OPTIONS


def cross_entropy_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of `[B, K]` logits against `[B]` integer labels."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
  """Mean cross-entropy of `[B, K]` logits against `[B]` labels smoothed by `smoothing`."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), smoothing)
  return optax.softmax_cross_entropy(logits, targets).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return jnp.mean(jnp.argmax(logits, -1) == labels)


def auxiliary_logits(intermediates: Any) -> list[jax.Array]:
  """The auxiliary classifiers' logits a model sowed (top-level `*_logits`), by name."""
  found = [intermediates[k][-1] for k in sorted(intermediates) if k.endswith("_logits")]
  if not found:
    raise ConfigError(
        "aux_loss_weight > 0 but the model sows no auxiliary logits. Build its auxiliary "
        "heads (GoogLeNet: --config.model.aux_logits=True) or set --config.aux_loss_weight=0."
    )
  return found


def check_auxiliary_heads(state: TrainState, input_shape: tuple[int, ...]) -> None:
  """Raises ConfigError now (not at the first step) if the model sows no `*_logits`."""
  def apply():
    return state.apply_fn(
        {"params": state.params, "batch_stats": state.batch_stats},
        jnp.zeros((1, *input_shape), jnp.float32), train=True,
        mutable=["batch_stats", "intermediates"], rngs={"dropout": jax.random.key(0)},
    )
  auxiliary_logits(jax.eval_shape(apply)[1]["intermediates"])


def train_step(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    perm: jax.Array,
    index: jax.Array | None = None,
    *,
    batch_size: int,
    preprocess: Preprocess,
    batch_sharding: jax.sharding.Sharding | None = None,
    axis_name: str | None = None,
    aux_loss_weight: float = 0.0,
    augment: Callable[..., jax.Array] | None = None,
    grad_norm: bool = False,
    keep_frozen_stats: Callable[[Any, Any], Any] | None = None,
    label_smoothing: float = 0.0,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on batch `index` of the epoch ordered by `perm` (all on device).

  `index=None` (what the loop passes) takes the batch from the step counter,
  `state.step % (len(perm) // batch_size)`: the loop's calls then carry no scalar from the
  host, only arrays already on the device.

  `batch_size` is the global batch. Data parallelism comes in one of two forms,
  with the model, loss and optimiser unchanged:
  * sharded jit (`batch_sharding`): the gathered batch is constrained to be split
    along the mesh's data axis; XLA partitions the step and averages gradients
    and BatchNorm statistics over the global batch by construction;
  * pmap (`axis_name`): each device gathers its own slice of the global batch and
    gradients / metrics are `pmean`-ed (BatchNorm layers must use the same axis name).

  The dropout key is `fold_in(state.dropout_key, state.step)` (and the device
  index under pmap): a function of the seed and the step only.

  With `aux_loss_weight > 0` the objective adds `aux_loss_weight` times the
  cross-entropy of every auxiliary classifier the model sows as `*_logits` in
  its `intermediates` (GoogLeNet's two heads; 0.3 in Szegedy et al. 2015).
  The `loss` metric stays the main head's cross-entropy, comparable with the
  test loss; `aux_loss` is the weighted auxiliary term.

  `augment` (`cnn_jax.data.augment.build`) transforms the raw batch before
  `preprocess`, with the key `fold_in(split(dropout_key)[1], step)` and each
  example's index in the global batch: the same augmentation under jit and pmap.

  `label_smoothing` > 0 trains the main head against `optax.smooth_labels` targets (the
  true class gets `1 - label_smoothing + label_smoothing / K`); the `loss` metric stays
  the cross-entropy against the hard labels, comparable with the test loss.

  `grad_norm=True` adds the metric `grad_norm`, the global L2 norm of the (averaged)
  gradient of every parameter, before any clipping; the update is computed as without it.
  `keep_frozen_stats(old, new)` returns the BatchNorm statistics to keep: the old ones of
  frozen modules (`cnn_jax.train.optim.keep_frozen_stats`), which train no parameter.
  """
  if index is None:
    index = state.step % (perm.shape[0] // batch_size)
  if axis_name is None:
    x, y = batch_from_permutation(images, labels, perm, index, batch_size)
  else:
    local = batch_size // jax.lax.psum(1, axis_name)
    offset = jax.lax.axis_index(axis_name) * local
    idx = jax.lax.dynamic_slice_in_dim(perm, index * batch_size + offset, local)
    x, y = images[idx], labels[idx]
  return train_step_on_batch(
      state, x, y, preprocess=preprocess, batch_sharding=batch_sharding, axis_name=axis_name,
      aux_loss_weight=aux_loss_weight, augment=augment, grad_norm=grad_norm,
      keep_frozen_stats=keep_frozen_stats, label_smoothing=label_smoothing,
  )


def train_step_on_batch(
    state: TrainState,
    x: jax.Array,
    y: jax.Array,
    *,
    preprocess: Preprocess,
    batch_sharding: jax.sharding.Sharding | None = None,
    axis_name: str | None = None,
    aux_loss_weight: float = 0.0,
    augment: Callable[..., jax.Array] | None = None,
    grad_norm: bool = False,
    keep_frozen_stats: Callable[[Any, Any], Any] | None = None,
    label_smoothing: float = 0.0,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on the raw batch `x` uint8 `[B, H, W, C]`, `y` int32 `[B]` (see `train_step`).

  The step every input source shares: `train_step` gathers its batch on the device and
  calls it; the streaming source (`cnn_jax.data.stream`) hands it a global batch sharded
  along the mesh's data axis. Under pmap, `x` is this device's slice of the global batch.
  """
  dropout_key = jax.random.fold_in(state.dropout_key, state.step)
  offset = 0
  if axis_name is not None:
    device = jax.lax.axis_index(axis_name)
    offset = device * x.shape[0]
    dropout_key = jax.random.fold_in(dropout_key, device)
  if augment is not None:
    augment_key = jax.random.fold_in(jax.random.split(state.dropout_key)[1], state.step)
    x = augment(x, augment_key, offset)
  if batch_sharding is not None:
    x = jax.lax.with_sharding_constraint(x, batch_sharding)
    y = jax.lax.with_sharding_constraint(y, batch_sharding)
  x = preprocess(x)

  def loss_fn(params):
    logits, updates = state.apply_fn(
        {"params": params, "batch_stats": state.batch_stats},
        x,
        train=True,
        mutable=["batch_stats", "intermediates"] if aux_loss_weight else ["batch_stats"],
        rngs={"dropout": dropout_key},
    )
    loss = cross_entropy_loss(logits, y)
    objective = loss if not label_smoothing else smoothed_cross_entropy(logits, y, label_smoothing)
    aux = jnp.zeros((), jnp.float32)
    if aux_loss_weight:
      aux = aux_loss_weight * sum(
          cross_entropy_loss(a, y) for a in auxiliary_logits(updates["intermediates"])
      )
    return objective + aux, (loss, aux, logits, updates)

  (_, (loss, aux, logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params
  )
  metrics = {"loss": loss, "accuracy": accuracy(logits, y)}
  if aux_loss_weight:
    metrics["aux_loss"] = aux
  if axis_name is not None:
    grads = jax.lax.pmean(grads, axis_name)
    metrics = jax.lax.pmean(metrics, axis_name)
  if grad_norm:
    metrics["grad_norm"] = optax.global_norm(grads)
  batch_stats = updates.get("batch_stats", {})
  if keep_frozen_stats is not None:
    batch_stats = keep_frozen_stats(state.batch_stats, batch_stats)
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  return state, metrics


def train_steps(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    perm: jax.Array,
    first_index: jax.Array | None,
    num_steps: int,
    isolate_steps: bool = False,
    **step_kwargs: Any,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """`num_steps` consecutive `train_step`s (batches `first_index`, `first_index + 1`, ...
  of one epoch) in one compiled program: one dispatch instead of `num_steps`.
  `first_index=None`: each step's batch from its step counter, as `train_step` does.

  Returns the final state and each step's metrics stacked along a leading axis.

  Every step is exactly `train_step` (same keys: they derive from `state.step`), and with
  `isolate_steps` on the CPU the result is the step-by-step run's bit for bit (measured:
  tests/test_steps_per_call.py, benchmarks/steps_per_call_check.py). Two things make it so:
  * The steps are written out one after the other, not as a `lax.scan` loop: XLA:CPU
    rewrites the gradient convolutions into its fast form only in a program's entry
    computation, never inside a loop body (`ConvCanonicalization`), so in a loop they
    sum in another order.
  * `isolate_steps=True` passes each step's parameters, optimiser state and BatchNorm
    statistics to the next step through `_from_memory`. Otherwise XLA fuses one step's
    element-wise update of a value that only the next step's update reads (a BatchNorm
    running mean, an Adam moment) into that next update, and XLA:CPU's code for the fused
    chain rounds differently (alone: `m * 0.9 + s * c` twice in one kernel differs from it once in
    each of two programs). Returning the intermediate values as outputs is not enough:
    XLA then computes them twice, once for the output and once inside the next fused
    update (seen under pmap). `parallel.make_parallel` asks for it on the CPU only,
    where bits are the point.
  Compile time grows with `num_steps`.
  """
  metrics = []
  for i in range(num_steps):
    index = None if first_index is None else first_index + i
    state, m = train_step(state, images, labels, perm, index, **step_kwargs)
    metrics.append(m)
    if isolate_steps and i < num_steps - 1:
      state = _from_memory(state)
  return state, jax.tree.map(lambda *xs: jnp.stack(xs), *metrics)


def _from_memory(state: TrainState) -> TrainState:
  """`state` with its parameters, optimiser state and BatchNorm statistics routed through
  a conditional that XLA cannot fold (its predicate is known only at run time; the other
  branch never runs), so that whatever reads them next reads them from memory, as a
  separate program would, and no fusion reaches across. The buffers pass through (the
  2-conv CNN's compiled program copies none of its large arrays for it)."""
  carried = (state.params, state.opt_state, state.batch_stats)
  params, opt_state, batch_stats = jax.lax.cond(
      state.step >= 0, lambda c: c, lambda c: jax.tree.map(jnp.zeros_like, c), carried)
  return state.replace(params=params, opt_state=opt_state, batch_stats=batch_stats)


def eval_step(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    start: jax.Array,
    *,
    batch_size: int,
    num_examples: int,
    preprocess: Preprocess,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> dict[str, jax.Array]:
  """Sums of loss and correct predictions over `[start, start + batch_size)`.

  `images` is padded to a multiple of `batch_size`; padded rows are masked out.
  """
  x = jax.lax.dynamic_slice_in_dim(images, start, batch_size)
  y = jax.lax.dynamic_slice_in_dim(labels, start, batch_size)
  if batch_sharding is not None:
    x = jax.lax.with_sharding_constraint(x, batch_sharding)
    y = jax.lax.with_sharding_constraint(y, batch_sharding)
  logits = state.apply_fn(
      {"params": state.params, "batch_stats": state.batch_stats}, preprocess(x), train=False
  )
  mask = (start + jnp.arange(batch_size)) < num_examples
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  return {
      "loss_sum": jnp.sum(jnp.where(mask, losses, 0.0)),
      "correct": jnp.sum(jnp.where(mask, jnp.argmax(logits, -1) == y, False)),
  }
