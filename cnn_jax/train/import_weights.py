"""Weights trained elsewhere as a run directory of ours (config.json + one checkpoint).

  import_weights("torchvision", "resnet50", "resnet50.pth", "workdirs/resnet50_tv")

The workdir is what training writes, so everything that reads a run reads it:
`Run(workdir).load_model()`, the frozen `cnn` feature extractor and `--config.init_from`.
Its `config.json` is the default training config with the imported model
(`model.name` and the options the weights decide, e.g. `num_classes`),
`data.name=imagenet2012` and `data.image_size` (the size a probe or a fine-tuning run
resizes images to; 224 for torchvision's ImageNet weights). Its checkpoint (step 0)
holds the params and BatchNorm statistics and no optimiser state: the run is read,
never resumed. The checkpoint's JSON record names the source and the file.

The workdir is written into a temporary sibling and renamed when complete, so a failed
or killed import leaves no half-written run.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import uuid
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import optax

from cnn_jax.errors import ConfigError
from cnn_jax.models import torchvision_import
from cnn_jax.registry import Registry
from cnn_jax.run import Run
from cnn_jax.train.checkpoint import Checkpointer
from cnn_jax.train.config import default_train_config
from cnn_jax.train.steps import TrainState

# Source name -> reader `(model name, checkpoint path) -> (model options, variables)`.
SOURCES: Registry[Callable[[str, str], tuple[dict[str, Any], dict[str, Any]]]] = Registry(
    "weight source"
)
SOURCES.register("torchvision")(torchvision_import.import_checkpoint)


def imported_config(model: str, options: dict[str, Any], image_size: int) -> ml_collections.ConfigDict:
  """The default training config, holding the imported model."""
  config = default_train_config()
  config.model = ml_collections.ConfigDict({"name": model, **options})
  config.data.name = "imagenet2012"
  config.data.image_size = image_size
  return config


def import_weights(
    source: str, model: str, checkpoint: str | os.PathLike, workdir: str | os.PathLike,
    *, image_size: int = 224,
) -> Run:
  """Converts `checkpoint` (weights of `source`'s `model`) into a new run in `workdir`."""
  read = SOURCES.get(source)
  target = pathlib.Path(workdir)
  if target.exists() and (not target.is_dir() or any(target.iterdir())):
    raise ConfigError(
        f"{target} exists and is not an empty directory; an import writes a new run. "
        "Use a new --workdir, or delete the old one."
    )
  if image_size < 0:
    raise ConfigError(f"image_size must be >= 0 (0 keeps a data set's size), got {image_size}.")
  options, variables = read(model, checkpoint)
  config = imported_config(model, options, image_size)
  state = TrainState.create(
      apply_fn=None, params=variables["params"], tx=optax.identity(),
      batch_stats=variables.get("batch_stats", {}), dropout_key=jax.random.key(config.seed),
  )
  target.parent.mkdir(parents=True, exist_ok=True)
  partial = target.with_name(f".{target.name}.importing-{uuid.uuid4().hex[:12]}")
  try:
    run = Run(partial)
    ckpt = Checkpointer(run, every_steps=0, keep=1)
    try:
      ckpt.save(state, {"imported": {"source": source, "model": model,
                                     "checkpoint": str(pathlib.Path(checkpoint).absolute())}})
    finally:
      ckpt.close()
    run.write_config(config)
    os.replace(partial, target)  # an empty target directory is replaced too
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise
  return Run(target)
