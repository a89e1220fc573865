"""The experiment registry: a name bound to a complete config, and suites of names.

An experiment turns (data set, seed) into one `ConfigDict` that says everything
about the run: the representation (a feature extractor and its parameters, or a
model trained end to end with its recipe), the probe, and the seed. The
config's hash goes into every result, so a table row can be traced to exactly
what produced it.

Kinds (the table's `kind` column and the plot colours):
  engineered   - features designed by hand (raw pixels, HOG, LBP, Gabor);
  random       - a random, untrained conv layer (architecture without learning);
  unsupervised - features learned without labels (k-means, Coates et al. 2011);
  learned      - features learned end to end from labels (trained CNNs, and the
                 frozen features of a trained CNN under the same linear probe).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import ml_collections

from cnn_jax.errors import ConfigError
from cnn_jax.registry import Registry

KINDS = ("engineered", "random", "unsupervised", "learned")
DATASETS = ("digits", "fashion_mnist", "mnist")


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One row of a table.

  Attributes:
    name: registry name, e.g. "hog_svm".
    kind: one of KINDS.
    representation: short human description, e.g. "HOG 9x(4x4)/2x2, L2-Hys".
    runner: "probe" (features + probe) or "train" (end-to-end training).
    build: (dataset, seed) -> the full config of the run.
    anchors: dataset -> key into `cnn_jax.anchors` tables, for the published number.
    uses_seed: False when the result cannot depend on the seed (a deterministic
      extractor and probe): it is run once and reported as such.
    needs: the experiment whose trained model this one reads (frozen features).
  """

  name: str
  kind: str
  representation: str
  runner: str
  build: Callable[[str, int], ml_collections.ConfigDict]
  anchors: dict[str, str] = dataclasses.field(default_factory=dict)
  uses_seed: bool = True
  needs: str | None = None

  def config(self, dataset: str, seed: int) -> ml_collections.ConfigDict:
    if dataset not in DATASETS:
      raise ConfigError(f"Unknown data set {dataset!r}. Valid data sets: {', '.join(DATASETS)}.")
    config = self.build(dataset, seed)
    config.experiment = self.name
    config.dataset = dataset
    config.seed = seed
    return config


EXPERIMENTS: Registry[Experiment] = Registry("experiment")
SUITES: dict[str, tuple[str, ...]] = {}


def register(experiment: Experiment) -> Experiment:
  if experiment.kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {experiment.kind!r}.")
  EXPERIMENTS.register(experiment.name)(experiment)
  return experiment


def register_suite(name: str, experiments: tuple[str, ...]) -> None:
  for e in experiments:
    EXPERIMENTS.get(e)  # fail at import time on a typo
  SUITES[name] = experiments


def suite(name: str) -> list[Experiment]:
  if name not in SUITES:
    raise ConfigError(f"Unknown suite {name!r}. Valid suites: {', '.join(sorted(SUITES))}.")
  return [EXPERIMENTS.get(e) for e in SUITES[name]]


def check_dataset(name: str) -> None:
  if name not in DATASETS:
    raise ConfigError(f"Unknown data set {name!r}. Valid data sets: {', '.join(DATASETS)}.")
