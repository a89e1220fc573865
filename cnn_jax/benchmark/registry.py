"""The experiment registry: a name bound to a complete config, and suites of names.

An experiment turns (data set, seed) into one `ConfigDict` that says everything
about the run, with nothing restated from elsewhere:
  * a probe experiment names a feature extractor and a probe; their parameters
    are the data set's suggested ones (`DatasetInfo.feature_params`) over the
    extractor's and the probe's own defaults (their signatures), plus the
    experiment's overrides;
  * a training experiment names a config file in `configs/` (the recipe a user
    runs with `experiments.main`) plus optional overrides.
The config's hash goes into every result, so a table row can be traced to
exactly what produced it.

Kinds (the table's `kind` column and the plot colours):
  engineered   - features designed by hand (raw pixels, HOG, LBP, Gabor);
  random       - a random, untrained conv layer (architecture without learning);
  unsupervised - features learned without labels (k-means, Coates et al. 2011);
  learned      - features learned end to end from labels (trained CNNs, and the
                 frozen features of a trained CNN under the same linear probe).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import ml_collections

from cnn_jax import anchors
from cnn_jax.data import datasets
from cnn_jax.errors import ConfigError
from cnn_jax.features import EXTRACTORS
from cnn_jax.probe import PROBES
from cnn_jax.registry import Registry
from cnn_jax.train.config import load_config, recipe_path
from cnn_jax.train.pretrain import default_pretrain_config

KINDS = ("engineered", "random", "unsupervised", "learned")


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One row of a table.

  Attributes:
    name: registry name, e.g. "hog_svm".
    kind: one of KINDS.
    representation: short human description, e.g. "HOG, 9 orientations, L2-Hys".
    features: probe experiments: the extractor's name and parameter overrides.
    probe: probe experiments: the probe's name and setting overrides.
    recipe: training experiments: a config file, `{dataset}` standing for the data
      set's name (e.g. "configs/lenet5_{dataset}.py").
    fallback_recipe: the config file for data sets without a recipe of their own
      (its `data.name` is replaced by the data set's).
    overrides: training experiments: dotted config fields -> values.
    anchor: the method key of the published result this row is compared with
      (default for probe experiments: the one of its (features, probe) pair; "" for none).
    uses_seed: False when the result cannot depend on the seed (a deterministic
      extractor and probe): it is run once and reported as such.
    needs: the experiment whose trained model this one reads (frozen features), or, for a
      training experiment, starts from (`init_from`: fine-tuning a pre-trained network).
    pretrain: a training recipe's model pre-trained greedily layer by layer without labels
      (`cnn_jax.train.pretrain`), with these overrides of its settings; the row is not
      a classifier (tables list its reconstruction losses), others read it through `needs`.
    labels: how many labelled training examples the row may use (a seeded subset: the
      same one for every row with the same seed); None = all.
    group: rows of one method at several `labels` (one curve of the accuracy-vs-labels plot).
    shifts: training experiments: also score the trained model on the test set moved by
      each of these many pixels (`cnn_jax.shift.shifted_accuracy`; translation robustness).
    datasets: the data sets the row is meant for (a suite run on another leaves it out and
      says so); () = every data set.
  """

  name: str
  kind: str
  representation: str
  features: Mapping[str, Any] | None = None
  probe: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {"name": "linear"})
  recipe: str | None = None
  fallback_recipe: str | None = None
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  anchor: str | None = None
  uses_seed: bool = True
  needs: str | None = None
  pretrain: Mapping[str, Any] | None = None
  labels: int | None = None
  group: str | None = None
  shifts: tuple[int, ...] = ()
  datasets: tuple[str, ...] = ()

  def runs_on(self, dataset: str) -> bool:
    return not self.datasets or dataset in self.datasets

  @property
  def runner(self) -> str:
    if self.pretrain is not None:
      return "pretrain"
    return "train" if self.recipe else "probe"

  @property
  def method(self) -> str | None:
    """The anchor's method key."""
    if self.anchor is not None or self.recipe:
      return self.anchor or None  # "" = no published anchor, not the (features, probe) one
    return anchors.METHOD.get((self.features["name"], self.probe["name"]))

  def config(self, dataset: str, seed: int) -> ml_collections.ConfigDict:
    info = datasets.get(dataset)
    if self.runner == "probe":
      body = self._probe_config(info, seed)
    else:
      body = {"train": self._train_config(info, seed)}
    if self.runner == "pretrain":
      pretrain = default_pretrain_config()
      pretrain.lock()  # a misspelt setting is an error
      pretrain.update(dict(self.pretrain))
      body["pretrain"] = pretrain
    config = ml_collections.ConfigDict(body)
    config.experiment = self.name
    config.dataset = dataset
    config.seed = seed
    if self.labels is not None and self.runner == "probe":
      config.labels = self.labels
    if self.shifts:  # part of what produced the record, so part of its hash
      config.shifts = list(self.shifts)
    return config

  def _train_config(self, info: datasets.DatasetInfo, seed: int) -> ml_collections.ConfigDict:
    path = recipe_path(self.recipe.format(dataset=info.name))
    overrides = dict(self.overrides)
    if not path.is_file():
      if not self.fallback_recipe:
        raise ConfigError(
            f"Experiment {self.name!r} has no recipe for data set {info.name!r}: add {path}."
        )
      path = recipe_path(self.fallback_recipe)
      overrides = {"data.name": info.name, **overrides}
    if self.labels is not None:
      overrides["data.num_train"] = self.labels
    return load_config(path, {**overrides, "seed": seed})

  def _probe_config(self, info: datasets.DatasetInfo, seed: int) -> dict[str, Any]:
    fname = self.features["name"]
    features = {
        **EXTRACTORS.params(fname), **info.features(fname),
        **{k: v for k, v in self.features.items() if k != "name"},
    }
    if "seed" in features:
      features["seed"] = seed
    pname = self.probe["name"]
    probe = {**PROBES.params(pname), **{k: v for k, v in self.probe.items() if k != "name"}}
    probe["seed"] = seed
    # Only settings a config can hold (in-memory arguments such as `model` default to None).
    features = {k: v for k, v in features.items() if v is not None}
    return {"features": {"name": fname, **features}, "probe": {"name": pname, **probe}}


EXPERIMENTS: Registry[Experiment] = Registry("experiment")
SUITES: dict[str, tuple[str, ...]] = {}


def register(experiment: Experiment) -> Experiment:
  if experiment.kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {experiment.kind!r}.")
  if (experiment.features is None) == (experiment.recipe is None):
    raise ValueError(f"Experiment {experiment.name!r}: give either features or a recipe.")
  if experiment.pretrain is not None and experiment.recipe is None:
    raise ValueError(f"Experiment {experiment.name!r}: pre-training needs a recipe (the model).")
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
