"""The defaults every training config starts from (configs/*.py override fields)."""

from __future__ import annotations

import importlib.util
import pathlib
from typing import Any, Mapping

import ml_collections
from ml_collections import config_dict

from cnn_jax.errors import ConfigError
from cnn_jax.train.optim import default_optimizer_config


def default_train_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dtype = "float32"  # compute dtype; parameters stay float32

  config.data = ml_collections.ConfigDict()
  config.data.name = "fashion_mnist"
  config.data.train_split = "train"
  config.data.test_split = "test"
  config.data.image_size = 0  # 0 = keep the data set's size
  config.data.data_dir = config_dict.placeholder(str)  # raw files (Fashion-MNIST IDX)
  config.data.tfds_dir = config_dict.placeholder(str)  # prepared TFDS data
  config.data.download = False
  # Labelled training examples: 0 = all; N = a random subset of N (the same subset for
  # the same seed), for learning from few labels. Pixel statistics stay those of the whole
  # split: images are plentiful, labels are not.
  config.data.num_train = 0
  # Training-time augmentation, ops by name in order (cnn_jax/data/augment.py), e.g.
  # ("random_crop(pad=4)", "flip_lr"); () = none. Evaluation never augments.
  config.data.augment = ()
  # Where training batches come from (cnn_jax/data/stream.py): "device" = the whole split
  # in memory and on the device, batches gathered there (small data sets: digits, MNIST,
  # CIFAR); "stream" = read from the array_record files by grain threads while training
  # runs, sharded per host (data sets too big for memory; same batches for the same seed).
  config.data.source = "device"
  config.data.stream_threads = 0  # reader threads of the streaming source; 0 = one per core

  config.model = ml_collections.ConfigDict()
  config.model.name = "simple_cnn"
  config.model.num_classes = 10

  config.optimizer = default_optimizer_config()
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.num_epochs = 3
  # Weight of auxiliary classifiers' losses (GoogLeNet with model.aux_logits=True: 0.3).
  config.aux_loss_weight = 0.0
  # Label smoothing of the training targets (0 = hard labels; 0.1 moves 10% of each
  # target's mass evenly onto all classes). The logged train loss stays the hard-label one.
  config.label_smoothing = 0.0
  config.log_every_steps = 100
  # Training steps per dispatch (one compiled program; calls end at every log, evaluation
  # and checkpoint step). Same parameters and metrics as 1, bit for bit on CPU
  # (steps.train_steps); fewer Python round trips (on an accelerator the dispatch bounds
  # small models).
  config.steps_per_call = 1
  config.eval_every_epochs = 1  # evaluate on the test split every N epochs and at the end
  # Start from the variables of another run (a workdir of experiments.main, or one written
  # by layer-wise pre-training): arrays whose path and shape match are copied, the rest
  # (e.g. a head for another number of classes) keep their initialisation and are logged.
  config.init_from = config_dict.placeholder(str)
  # The modules that train, by name ("output", or a path below one: "block3/conv"); every
  # other parameter gets exactly zero updates and a frozen module's BatchNorm statistics
  # stay as loaded. () = everything trains. Head-only fine-tuning of an mlp:
  # --config.init_from=W --config.train_only='("output",)'.
  config.train_only = ()
  # Also write TensorBoard event files into WORKDIR/tensorboard/ (scalars, weight
  # histograms, gradient norm); metrics.jsonl is written either way.
  config.tensorboard = True
  # JAX's persistent compilation cache (cnn_jax/train/compilation_cache.py): None = the
  # default folder ($CNN_JAX_COMPILATION_CACHE, else ~/.cache/cnn_jax/jax), "" = off, or a
  # folder. A rerun or a resume then loads its compiled steps instead of compiling them.
  config.compilation_cache = config_dict.placeholder(str)

  # Data parallelism over all devices: "jit" (sharded jit, default) or "pmap".
  config.parallelism = "jit"
  config.distributed = ml_collections.ConfigDict()
  config.distributed.mode = "auto"  # auto: join when SLURM / a TPU pod / a coordinator says so
  config.distributed.coordinator_address = config_dict.placeholder(str)  # "HOST:PORT"
  config.distributed.num_processes = 0  # 0 = from the environment
  config.distributed.process_id = -1  # -1 = from the environment

  # XLA's deterministic-ops flag (cnn_jax/train/determinism.py), set before the backend
  # starts: a GPU run killed and resumed ends bit-identical to an uninterrupted one, as on
  # the CPU. Costs some GPU speed (benchmarks/results/); nothing on a CPU.
  config.deterministic = True
  # XLA:CPU's kernels for the steps' convolutions (parallel.CPU_CONVOLUTIONS): "default"
  # (XLA's choice: YNNPACK library fusions; every committed table) or "eigen" (XLA's own
  # Eigen convolutions on every core: faster steps on the 2-core Xeon, see the README; other
  # rounding, bits that may depend on the core count). Off the CPU it changes nothing; with
  # parallelism='jit' only.
  config.cpu_convolutions = "default"

  config.checkpoint_every_steps = 500  # 0 = only at the end and on preemption
  config.keep_checkpoints = 3
  return config


def recipe_path(path: str | pathlib.Path) -> pathlib.Path:
  """A config file named relative to the project's root (`configs/...`) or as given."""
  path = pathlib.Path(path)
  if path.is_absolute() or path.exists():
    return path
  import configs  # the project's configs/ package

  return pathlib.Path(configs.__file__).parent.parent / path


def load_config(
    path: str | pathlib.Path, overrides: Mapping[str, Any] | None = None
) -> ml_collections.ConfigDict:
  """`get_config()` of a config file (as `--config=PATH` loads it), locked, with dotted
  overrides applied as `--config.a.b=value` would be (a misspelt field is an error)."""
  path = recipe_path(path)
  if not path.is_file():
    raise ConfigError(f"Config file {path} not found.")
  spec = importlib.util.spec_from_file_location(f"_cnn_jax_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.lock()
  for key, value in (overrides or {}).items():
    *parents, leaf = key.split(".")
    node = config
    try:
      for p in parents:
        node = node[p]
      if leaf not in node:
        raise KeyError(leaf)
      node[leaf] = value
    except (KeyError, AttributeError, TypeError) as e:
      raise ConfigError(f"Cannot set {key}={value!r} in {path}: {e}") from None
  return config
