"""Start a run from another run's variables (fine-tuning; layer-wise pre-training).

`--config.init_from=WORKDIR` names a workdir holding `config.json` and a checkpoint
(a run of `experiments.main`, or the network that greedy layer-wise pre-training
assembles). Every parameter and BatchNorm statistic whose path and shape match is
copied; the others keep the new run's initialisation and are listed in the log, so
a classification head for another number of classes is re-initialised and nothing
else is. The optimiser starts fresh.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from absl import logging

from cnn_jax.errors import ConfigError
from cnn_jax.run import Run, flatten


def _merge(target: Any, source: Any, path: str, kept: list[str], fresh: list[str]) -> Any:
  if isinstance(target, dict) or hasattr(target, "items"):
    src = source if (isinstance(source, dict) or hasattr(source, "items")) else {}
    return {
        k: _merge(v, src.get(k) if k in src else None, f"{path}/{k}" if path else k, kept, fresh)
        for k, v in target.items()
    }
  if source is not None and tuple(np.shape(source)) == tuple(target.shape):
    kept.append(path)
    return np.asarray(source, dtype=target.dtype)
  fresh.append(path + ("" if source is None else f" (shape {tuple(np.shape(source))} there, "
                                                   f"{tuple(target.shape)} here)"))
  return target


def merge_variables(
    params: Any, batch_stats: Any, source: dict[str, Any]
) -> tuple[Any, Any, list[str], list[str]]:
  """`(params, batch_stats, copied, reinitialised)`: `source`'s arrays where path and shape match."""
  copied, fresh = [], []
  params = _merge(params, source.get("params", {}), "params", copied, fresh)
  batch_stats = _merge(batch_stats or {}, source.get("batch_stats") or {}, "batch_stats", copied, fresh)
  return params, batch_stats, copied, fresh


def initialize_from(state, workdir: str, model_name: str):
  """`state` with the variables of the run in `workdir` wherever they fit.

  The run must hold the same architecture (`model.name`): copying arrays between
  different networks because two shapes happen to agree would be silent nonsense.
  """
  there = Run(workdir).read_config().model.name
  if there != model_name:
    raise ConfigError(
        f"init_from={workdir} holds a {there!r} model but this config trains {model_name!r}; "
        "name a run of the same architecture."
    )
  source = Run(workdir).restore_variables()
  params, batch_stats, copied, fresh = merge_variables(state.params, state.batch_stats, source)
  if not copied:
    raise ConfigError(
        f"init_from={workdir}: none of its arrays fits this model's shapes; name a run of "
        "the same architecture and sizes."
    )
  unused = sorted(
      set(flatten({"params": source["params"], "batch_stats": source.get("batch_stats") or {}}))
      - {p.replace("/", ".") for p in copied}
  )
  logging.info(
      "Initialised %d arrays from %s; %d keep their fresh initialisation%s%s.", len(copied),
      workdir, len(fresh), f": {', '.join(fresh)}" if fresh else "",
      f"; unused there: {', '.join(unused)}" if unused else "",
  )
  return state.replace(params=params, batch_stats=batch_stats)
