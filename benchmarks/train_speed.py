"""Training throughput of this project's step and loop against plain Flax and PyTorch, in one run.

  python benchmarks/train_speed.py [--quick] [--workloads=simple_cnn_b128,lenet5_b128]
      [--loop-steps-per-call=1,8,32] [--out=benchmarks/results/train_speed_cpu.txt]

For each workload, on whatever device JAX picks (JAX_PLATFORMS=cpu / cuda), in one process:

* `project`: `cnn_jax.train.steps.train_step` compiled as the loop compiles it
  (`parallel.make_parallel`: sharded jit, donated state, the batch gathered on the device
  from the epoch's permutation, `Normalization` preprocessing, the gradient-norm metric the
  default `tensorboard=True` asks for), on synthetic uint8 images held on the device;
* diagnostic variants of it, each removing one piece, so one run shows what costs the
  difference against plain Flax: without the gradient-norm metric, without shardings,
  with the batch passed in (the permutation gather replaced by the batch itself), without
  preprocessing, and K steps per dispatch (`steps.train_steps`);
* `plain Flax`: the same flax module, a minimal jitted `value_and_grad` + `optax.adam`
  update on a preprocessed batch already on the device;
* on the CPU, the project step and the loop once more with `cpu_convolutions='eigen'` (XLA's
  own multi-threaded Eigen convolutions instead of its YNNPACK library fusions: other
  rounding);
* `torch eager`: the same architecture in PyTorch (when importable; ResNet-50 from
  torchvision, bf16 autocast and channels_last on a GPU);
* `loop`: `cnn_jax.train.train_and_evaluate` on Fashion-MNIST for a fixed number of steps
  with `steps_per_call` = each of `--loop-steps-per-call`, its img/s read from the loop's
  own log lines after the first interval (which holds the compilation).

Step figures are the median over repeats of (images / wall time of n consecutive steps,
ended by `jax.block_until_ready` / `torch.cuda.synchronize`) after warm-up; the contestants'
repeats are interleaved, so a shared machine's changing load falls on all of them alike. ResNet-50 (224x224,
bf16) runs on accelerators only. The 2-conv CNN is the issue's: 5x5 kernels, 32/64
channels, dense 1024 (the Fashion-MNIST recipe uses 3x3 and dense 128).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import functools
import io
import json
import logging as py_logging
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from cnn_jax import data as data_lib
from cnn_jax.models import model_from_config
from cnn_jax.train import steps
from cnn_jax.train.config import default_train_config
from cnn_jax.train.optim import create_optimizer
from cnn_jax.train.parallel import make_parallel


@dataclasses.dataclass(frozen=True)
class Workload:
  """A model, its input and batch: what every contestant trains."""

  model: str
  batch: int
  image: tuple[int, int, int]  # H, W, C
  dtype: str = "float32"
  model_kwargs: tuple[tuple[str, Any], ...] = ()
  num_classes: int = 10
  accelerator_only: bool = False
  loop_data: str | None = "fashion_mnist"  # the data set the loop trains on (None: no loop)


TWO_CONV = (("conv_features", (32, 64)), ("kernel_size", 5), ("dense_features", (1024,)),
            ("activation", "relu"), ("pool", "max"))
WORKLOADS = {
    "simple_cnn_b128": Workload("simple_cnn", 128, (28, 28, 1), model_kwargs=TWO_CONV),
    "simple_cnn_b1024": Workload("simple_cnn", 1024, (28, 28, 1), model_kwargs=TWO_CONV),
    "lenet5_b128": Workload(
        "lenet5", 128, (28, 28, 1), model_kwargs=(("activation", "tanh"), ("pool", "max"))
    ),
    "resnet50_bf16_b256": Workload(
        "resnet50", 256, (224, 224, 3), "bfloat16", num_classes=1000, accelerator_only=True,
        loop_data=None,
    ),
}


def workload_config(w: Workload) -> ml_collections.ConfigDict:
  """The training config of `w`: the project's defaults, Adam at a constant 1e-3."""
  config = default_train_config()
  config.model.name = w.model
  config.model.num_classes = w.num_classes
  for key, value in w.model_kwargs:
    config.model[key] = value
  config.dtype = w.dtype
  config.batch_size = w.batch
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "constant"
  return config


@dataclasses.dataclass
class Setup:
  """One workload's model, initial state and synthetic data on the device."""

  workload: Workload
  config: ml_collections.ConfigDict
  model: Any
  state: steps.TrainState  # initial, on the host's default device; never donated
  preprocess: Callable[[jax.Array], jax.Array]
  images: jax.Array  # uint8 [N, H, W, C]
  labels: jax.Array  # int32 [N]
  perm: jax.Array  # the epoch's permutation of range(N)
  steps_per_epoch: int


def build(w: Workload, num_images: int | None = None) -> Setup:
  """Model, optimiser and state as `cnn_jax.train.loop.setup` builds them, on random images."""
  config = workload_config(w)
  n = num_images or (60_000 if w.image[0] <= 32 else 4 * w.batch)
  rng = np.random.default_rng(config.seed)
  images = rng.integers(0, 256, (n, *w.image), dtype=np.uint8)
  labels = rng.integers(0, w.num_classes, n).astype(np.int32)
  normalize = data_lib.Normalization.from_images(images[:1000])
  model = model_from_config(config)
  steps_per_epoch = n // w.batch
  tx, _ = create_optimizer(config.optimizer, steps_per_epoch, steps_per_epoch)
  init_key, data_key = steps.root_keys(config.seed)
  state = steps.create_train_state(model, tx, init_key, w.image)
  perm = jax.jit(data_lib.epoch_permutation, static_argnums=2)(data_key, 0, n)
  return Setup(
      w, config, model, state, functools.partial(normalize, dtype=jnp.dtype(config.dtype)),
      jax.device_put(images), jax.device_put(labels), perm, steps_per_epoch,
  )


def _copy(tree: Any) -> Any:
  """A fresh device copy (the steps donate their inputs; the setup's state must survive)."""
  return jax.tree.map(lambda x: x.copy() if isinstance(x, jax.Array) else x, tree)


def first_batch(s: Setup) -> tuple[jax.Array, jax.Array]:
  """Batch 0 of the epoch, raw (uint8) and as the project's step gathers it."""
  return data_lib.batch_from_permutation(s.images, s.labels, s.perm, 0, s.workload.batch)


EIGEN_ROW = "project step, cpu_convolutions='eigen'"

# ---------------------------------------------------------------------------------------------
# Contestants. Each returns (step, carry, images per call): `carry = step(carry, i)` runs call i.


def project_step(s: Setup, *, grad_norm: bool | None = None, shardings: bool = True,
                 cpu_convolutions: str = "default"):
  """The loop's compiled step (`make_parallel`), called as the loop calls it: the batch is
  `state.step % steps_per_epoch` of the permutation, so no argument comes from the host."""
  grad_norm = bool(s.config.tensorboard) if grad_norm is None else grad_norm
  b = s.workload.batch
  if shardings:
    fn = make_parallel(
        "jit", batch_size=b, eval_batch_size=b, num_eval_examples=b,
        preprocess=s.preprocess, grad_norm=grad_norm, cpu_convolutions=cpu_convolutions,
    ).train_step
  else:
    fn = jax.jit(
        functools.partial(
            steps.train_step, batch_size=b, preprocess=s.preprocess, grad_norm=grad_norm
        ),
        donate_argnums=(0,),
    )

  def step(state, i):
    del i
    return fn(state, s.images, s.labels, s.perm)[0]

  return step, _copy(s.state), b


def project_steps_per_call(s: Setup, k: int):
  """`steps.train_steps` as the loop compiles it: `k` steps per dispatch."""
  b = s.workload.batch
  fn = make_parallel(
      "jit", batch_size=b, eval_batch_size=b, num_eval_examples=b, preprocess=s.preprocess,
      grad_norm=bool(s.config.tensorboard),
  ).train_steps

  def step(state, i):  # batches from state.step, as the loop calls it
    del i
    return fn(state, s.images, s.labels, s.perm, None, k)[0]

  return step, _copy(s.state), b * k


def _given_batch(images, labels, perm, index, batch_size):
  del perm, index, batch_size
  return images, labels


def project_step_given_batch(s: Setup, *, preprocessed: bool):
  """`steps.train_step` (no shardings, no gradient norm) with the gather replaced by the batch
  itself (`batch_from_permutation` patched while tracing); with `preprocessed` the batch is
  already float and `preprocess` is the identity: what is left is the project's loss,
  metrics and `TrainState` update."""
  x, y = first_batch(s)
  preprocess = s.preprocess
  if preprocessed:
    x, preprocess = s.preprocess(x), lambda v: v
  fn = jax.jit(
      functools.partial(steps.train_step, batch_size=s.workload.batch, preprocess=preprocess),
      donate_argnums=(0,),
  )
  state = _copy(s.state)
  with mock.patch.object(steps, "batch_from_permutation", _given_batch):
    compiled = fn.lower(state, x, y, s.perm, jnp.int32(0)).compile()
  index = jnp.int32(0)

  def step(state, i):
    return compiled(state, x, y, s.perm, index)[0]

  return step, state, s.workload.batch


def plain_flax_update(model: Any, tx: optax.GradientTransformation):
  """A minimal Flax training step: `(variables, opt_state, x, y) -> (variables, opt_state,
  loss)`; BatchNorm statistics (if any) updated as `model.apply(mutable=...)` returns them."""

  def update(variables, opt_state, x, y):
    params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    def loss_fn(params):
      logits, new_rest = model.apply(
          {"params": params, **rest}, x, train=True, mutable=list(rest)
      )
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new_rest

    (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return {"params": optax.apply_updates(params, updates), **new_rest}, opt_state, loss

  return update


def plain_flax_init(s: Setup) -> tuple[dict[str, Any], Any, optax.GradientTransformation]:
  """The project state's initial variables with a fresh `optax.adam` state."""
  tx = optax.adam(s.config.optimizer.learning_rate)
  variables = {"params": s.state.params}
  if s.state.batch_stats:
    variables["batch_stats"] = s.state.batch_stats
  variables = _copy(variables)
  return variables, tx.init(variables["params"]), tx


def plain_flax_step(s: Setup):
  variables, opt_state, tx = plain_flax_init(s)
  update = jax.jit(plain_flax_update(s.model, tx), donate_argnums=(0, 1))
  x, y = first_batch(s)
  x = s.preprocess(x)

  def step(carry, i):
    return update(*carry, x, y)[:2]

  return step, (variables, opt_state), s.workload.batch


def torch_model(w: Workload):
  """The workload's architecture in PyTorch (NCHW; same layers and parameter count)."""
  import torch.nn as tnn

  kw = dict(w.model_kwargs)
  act = {"relu": tnn.ReLU, "tanh": tnn.Tanh}[kw.get("activation", "relu")]
  pool = {"max": tnn.MaxPool2d, "avg": tnn.AvgPool2d}[kw.get("pool", "max")]
  h, _, c = w.image
  if w.model == "simple_cnn":
    layers, k = [], kw["kernel_size"]
    for features in kw["conv_features"]:
      layers += [tnn.Conv2d(c, features, k, padding=k // 2), act(), pool(2)]
      c, h = features, h // 2
    layers.append(tnn.Flatten())
    width = c * h * h
    for features in kw["dense_features"]:
      layers += [tnn.Linear(width, features), act()]
      width = features
    return tnn.Sequential(*layers, tnn.Linear(width, w.num_classes))
  if w.model == "lenet5":
    pad = 32 - h
    return tnn.Sequential(
        tnn.ZeroPad2d((pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)),
        tnn.Conv2d(c, 6, 5), act(), pool(2), tnn.Conv2d(6, 16, 5), act(), pool(2),
        tnn.Conv2d(16, 120, 5), act(), tnn.Flatten(), tnn.Linear(120, 84), act(),
        tnn.Linear(84, w.num_classes),
    )
  if w.model == "resnet50":
    import torchvision

    return torchvision.models.resnet50(num_classes=w.num_classes)
  raise ValueError(f"No PyTorch peer for model {w.model!r}.")


def torch_step(w: Workload):
  """PyTorch eager: forward, cross-entropy, backward, Adam; bf16 autocast for bf16 workloads."""
  import torch

  device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
  torch.manual_seed(0)
  model = torch_model(w).to(device)
  h, wd, c = w.image
  x = torch.randn(w.batch, c, h, wd, device=device)
  y = torch.randint(0, w.num_classes, (w.batch,), device=device)
  if device == "cuda" and w.model == "resnet50":
    model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  autocast = w.dtype == "bfloat16"

  def step(carry, i):
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
      loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return carry

  return step, None, w.batch


def torch_sync(_):
  import torch

  if torch.cuda.is_available() and jax.default_backend() == "gpu":
    torch.cuda.synchronize()


def torch_available() -> bool:
  try:
    import torch  # noqa: F401
  except ImportError:
    return False
  return True


# ---------------------------------------------------------------------------------------------
# Timing.


@dataclasses.dataclass(frozen=True)
class Timing:
  repeats: int
  warmup: int
  min_seconds: float  # each repeat runs at least this long


class Timed:
  """A contestant `(step, carry, images per call)` being timed: `carry = step(carry, i)`."""

  def __init__(self, contestant, sync: Callable[[Any], None] = jax.block_until_ready):
    self.step, self.carry, self.images_per_call = contestant
    self.sync, self.calls, self.n = sync, 0, 1

  def _run(self, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
      self.carry = self.step(self.carry, self.calls)
      self.calls += 1
    self.sync(self.carry)
    return time.perf_counter() - start

  def prepare(self, timing: Timing) -> None:
    """Warm-up (compilation), then the number of calls that lasts `timing.min_seconds`."""
    self._run(timing.warmup)
    seconds = self._run(self.n)
    while seconds < timing.min_seconds:
      self.n = max(2 * self.n, int(self.n * 1.2 * timing.min_seconds / max(seconds, 1e-6)))
      seconds = self._run(self.n)

  def repeat(self) -> float:
    """Images per second of one timed repeat of `n` calls."""
    return self.n * self.images_per_call / self._run(self.n)


def throughputs(contestants: dict[str, Timed], timing: Timing) -> dict[str, float]:
  """Median img/s of each contestant; the repeats are interleaved (A B C A B C ...), so a
  change in the machine's load (other processes) falls on every contestant alike."""
  for timed in contestants.values():
    timed.prepare(timing)
  rates = {label: [] for label in contestants}
  for _ in range(timing.repeats):
    for label, timed in contestants.items():
      rates[label].append(timed.repeat())
  return {label: statistics.median(r) for label, r in rates.items()}


# ---------------------------------------------------------------------------------------------
# The loop.


class _LoopRates(py_logging.Handler):
  """Collects (step, steps/s) from the loop's "step %d/%d ... steps/s" log lines."""

  def __init__(self):
    super().__init__(py_logging.INFO)
    self.points: list[tuple[int, float]] = []

  def emit(self, record):
    if isinstance(record.msg, str) and record.msg.startswith("step %d/%d"):
      self.points.append((int(record.args[0]), float(record.args[5])))


def loop_throughput(w: Workload, steps_per_call: int, interval: int, intervals: int,
                    cpu_convolutions: str = "default") -> float:
  """img/s of `train_and_evaluate` over `intervals` log intervals of `interval` steps, after a
  first interval that holds the compilation: one epoch of exactly those steps (a labelled
  subset of Fashion-MNIST), checkpoint and evaluation only at the end (after the last log)."""
  from cnn_jax.data import datasets
  from cnn_jax.train import train_and_evaluate

  config = workload_config(w)
  config.data.name = w.loop_data
  # One epoch holds every measured step: fewer steps per interval if the split is short
  # (a multiple of steps_per_call, so calls end on log steps).
  available = datasets.get(w.loop_data).splits["train"] // (w.batch * (intervals + 1))
  interval = min(interval, available - available % steps_per_call)
  if interval < steps_per_call:
    raise ValueError(f"{w.loop_data} is too small for {intervals + 1} intervals of "
                     f"{steps_per_call} steps of {w.batch}; ask for fewer --loop-intervals.")
  total = interval * (intervals + 1)
  config.data.num_train = total * w.batch
  config.num_epochs = 1
  config.log_every_steps = interval
  config.steps_per_call = steps_per_call
  config.cpu_convolutions = cpu_convolutions
  config.checkpoint_every_steps = 0
  handler = _LoopRates()
  absl_logger = py_logging.getLogger("absl")
  absl_logger.addHandler(handler)
  old_verbosity, old_propagate = logging.get_verbosity(), absl_logger.propagate
  logging.set_verbosity(logging.INFO)
  absl_logger.propagate = False  # the loop's (and orbax's) INFO lines stay off the console
  try:
    with tempfile.TemporaryDirectory() as workdir:
      train_and_evaluate(config, workdir)
  finally:
    absl_logger.removeHandler(handler)
    absl_logger.propagate = old_propagate
    logging.set_verbosity(old_verbosity)
  points = handler.points
  if len(points) != intervals + 1:
    raise RuntimeError(f"Expected {intervals + 1} log lines from the loop, parsed {points}.")
  done = [step for step, _ in points]
  counts = np.diff(done)
  seconds = sum(c / rate for c, (_, rate) in zip(counts, points[1:]))
  return float(sum(counts) * w.batch / seconds)


@functools.cache
def _cached_split(*args, **kwargs):
  return _load_split(*args, **kwargs)


_load_split = data_lib.load_split


# ---------------------------------------------------------------------------------------------
# Report.


def machine_info() -> dict[str, Any]:
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo") as f:
      cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

  def git(*args):
    try:
      return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                            check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
      return None

  info = {
      "cpu": cpu, "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
      "device": jax.devices()[0].device_kind, "jax": jax.__version__,
      "jaxlib": getattr(jax.lib, "__version__", None) or _version("jaxlib"),
      "flax": _version("flax"), "optax": _version("optax"), "python": platform.python_version(),
      "git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain")),
      "load_average_start": os.getloadavg(), "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS"),
      "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
  }
  if torch_available():
    import torch

    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
      info["torch_device"] = torch.cuda.get_device_name()
  return info


def _version(name: str) -> str | None:
  from importlib import metadata

  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return None


def run_workload(name: str, w: Workload, args, timing: Timing, log) -> dict[str, Any]:
  """Every contestant of one workload; returns {row label: img/s} and notes."""
  log(f"{name}: {w.model} {dict(w.model_kwargs) or ''} {w.dtype}, batch {w.batch}, "
      f"{'x'.join(map(str, w.image))}")
  start = time.perf_counter()
  s = build(w)
  contestants = {
      "project step (as the loop compiles it)": Timed(project_step(s)),
      "plain Flax step": Timed(plain_flax_step(s)),
  }
  if torch_available() and not args.no_torch:
    contestants["torch eager step"] = Timed(torch_step(w), torch_sync)
  if jax.default_backend() == "cpu":  # XLA's own convolutions, not its library fusions
    contestants[EIGEN_ROW] = Timed(project_step(s, cpu_convolutions="eigen"))
  if name in args.diagnose:
    contestants.update({
        "  - gradient-norm metric (tensorboard=False)": Timed(project_step(s, grad_norm=False)),
        "  - shardings (plain jax.jit)": Timed(
            project_step(s, grad_norm=False, shardings=False)),
        "  - gather (batch passed in)": Timed(
            project_step_given_batch(s, preprocessed=False)),
        "  - preprocess (float batch passed in)": Timed(
            project_step_given_batch(s, preprocessed=True)),
        f"project step, {args.step_k} steps per dispatch": Timed(
            project_steps_per_call(s, args.step_k)),
    })
  rows = throughputs(contestants, timing)
  for label, rate in rows.items():
    log(f"  {label:<44} {rate:>12,.0f} img/s")
  log(f"  ({time.perf_counter() - start:.0f} s for the steps)")
  del s, contestants
  if w.loop_data and name in args.loop_workloads:
    runs = [(k, "default") for k in args.loop_steps_per_call]
    if jax.default_backend() == "cpu" and runs:  # the first K again, with XLA's own convolutions
      runs.append((runs[0][0], "eigen"))
    for k, cpu_convolutions in runs:
      start = time.perf_counter()
      label = f"loop, steps_per_call={k}" + (
          f", cpu_convolutions='{cpu_convolutions}'" if cpu_convolutions != "default" else "")
      interval = max(args.loop_interval, k)
      rows[label] = loop_throughput(w, k, interval, args.loop_intervals, cpu_convolutions)
      log(f"  {label:<44} {rows[label]:>12,.0f} img/s   ({time.perf_counter() - start:.0f} s)")
      if args.profile_loop and cpu_convolutions == "default":
        profile_loop(w, k, interval, args.loop_intervals, f"{name}, {label}", args.profile_loop)
  return rows


def profile_loop(w: Workload, k: int, interval: int, intervals: int, title: str,
                 path: str) -> None:
  """The loop once more, under cProfile (not timed: the profiler slows Python down), with
  its functions by own time appended to `path`: where the host spends a step."""
  profiler = cProfile.Profile()
  profiler.enable()
  rate = loop_throughput(w, k, interval, intervals)
  profiler.disable()
  text = io.StringIO()
  pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
  with open(path, "a") as f:
    f.write(f"# {title}: {rate:,.0f} img/s under the profiler\n{text.getvalue()}\n")


def table(results: dict[str, dict[str, float]]) -> list[str]:
  """Rows with their ratios to the project step, plain Flax and torch of the same workload."""
  lines = []
  for name, rows in results.items():
    project = rows.get("project step (as the loop compiles it)")
    flax_ = rows.get("plain Flax step")
    torch_ = rows.get("torch eager step")
    lines.append(f"\n{name}")
    lines.append(f"  {'':<46}{'img/s':>12}  {'/project':>9}{'/plain Flax':>12}{'/torch':>8}")
    for label, rate in rows.items():
      ratios = [f"{rate / ref:>{w}.2f}" if ref else f"{'-':>{w}}"
                for ref, w in ((project, 9), (flax_, 12), (torch_, 8))]
      lines.append(f"  {label:<46}{rate:>12,.0f}  {''.join(ratios)}")
  return lines


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workloads", default=",".join(WORKLOADS),
                      help=f"comma-separated subset of {', '.join(WORKLOADS)}")
  parser.add_argument("--quick", action="store_true",
                      help="fewer and shorter repeats (a GPU lease: whole run about a minute)")
  parser.add_argument("--loop-steps-per-call", default="1,8,32",
                      help="steps_per_call values the loop runs with")
  parser.add_argument("--loop-interval", type=int, default=None,
                      help="steps per timed log interval of the loop (default: 8 on a CPU, "
                      "256 on an accelerator; at least steps_per_call)")
  parser.add_argument("--loop-intervals", type=int, default=None,
                      help="timed intervals after the first (default 2, quick 1)")
  parser.add_argument("--step-k", type=int, default=8,
                      help="steps per dispatch of the diagnostic multi-step row")
  parser.add_argument("--no-torch", action="store_true")
  parser.add_argument("--diagnose", default="simple_cnn_b128,lenet5_b128",
                      help="workloads that get the diagnostic variants of the project step")
  parser.add_argument("--loop-workloads", default=None,
                      help="workloads whose full loop runs on Fashion-MNIST (default: every one "
                      "that has a loop; with --quick only simple_cnn_b128)")
  parser.add_argument("--profile-loop", default=None, metavar="FILE",
                      help="run each loop once more under cProfile and append its functions "
                      "by own time to FILE (where the host spends a step)")
  parser.add_argument("--out", default=None,
                      help="write the table here and machine info + figures to OUT's .json")
  args = parser.parse_args(argv)
  accelerator = jax.default_backend() != "cpu"
  args.loop_workloads = args.loop_workloads or (
      "simple_cnn_b128" if args.quick else ",".join(n for n, w in WORKLOADS.items() if w.loop_data))
  args.diagnose, args.loop_workloads = args.diagnose.split(","), args.loop_workloads.split(",")
  args.loop_steps_per_call = [int(k) for k in args.loop_steps_per_call.split(",") if k]
  args.loop_interval = args.loop_interval or (256 if accelerator else 8)
  args.loop_intervals = args.loop_intervals or (1 if args.quick else 2)
  timing = (Timing(repeats=3, warmup=2, min_seconds=0.1 if accelerator else 0.3) if args.quick
            else Timing(repeats=5, warmup=3, min_seconds=0.5 if accelerator else 1.0))
  unknown = [n for n in args.workloads.split(",") if n not in WORKLOADS]
  if unknown:
    parser.error(f"unknown workloads {unknown}; known: {', '.join(WORKLOADS)}")

  info = machine_info()
  lines: list[str] = []

  def log(line: str) -> None:
    print(line, flush=True)
    lines.append(line)

  log(f"# python benchmarks/train_speed.py {' '.join(argv if argv is not None else sys.argv[1:])}")
  log(f"# {info['cpu']} ({info['cpu_count']} CPUs), {info['device']}, jax {info['jax']}, "
      f"flax {info['flax']}, torch {info.get('torch', 'not installed')}, commit "
      f"{(info['git_commit'] or '?')[:10]}{' (dirty)' if info['git_dirty'] else ''}")
  log(f"# load average at start (1/5/15 min): {info['load_average_start']}")
  log(f"# median of {timing.repeats} repeats of >= {timing.min_seconds} s after "
      f"{timing.warmup} warm-up calls; loop: {args.loop_intervals} intervals of "
      f">= {args.loop_interval} steps after the first")
  start = time.perf_counter()
  results, notes = {}, []
  with mock.patch.object(data_lib, "load_split", _cached_split):  # load Fashion-MNIST once
    for name in args.workloads.split(","):
      w = WORKLOADS[name]
      if w.accelerator_only and not accelerator:
        notes.append(f"{name}: skipped (accelerator only; JAX runs on the CPU).")
        log(f"{name}: skipped on the CPU (224x224 ResNet-50 runs on accelerators only)")
        continue
      results[name] = run_workload(name, w, args, timing, log)
  info["load_average_end"] = os.getloadavg()
  info["total_seconds"] = time.perf_counter() - start
  report = table(results) + [f"\n{n}" for n in notes] + [
      f"\n# load average at end: {info['load_average_end']}; total {info['total_seconds']:.0f} s"
  ]
  for line in report:
    log(line)
  payload = {"machine": info, "args": vars(args), "img_per_s": results, "notes": notes}
  if args.out:
    with open(args.out, "w") as f:
      f.write("\n".join(lines) + "\n")
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
      json.dump(payload, f, indent=1, default=str)
  return payload


if __name__ == "__main__":
  main()
