"""Run a suite: every experiment for every seed, resumable, then tables and plots.

Layout of the suite's workdir:
  runs/<experiment>/seed_<s>/result.json   one finished run (written atomically)
  runs/<experiment>/seed_<s>/train/        an end-to-end run's own workdir (checkpoints)
  runs/<experiment>/seed_<s>/train/visualize/   its pictures, with `visualize=True` (off by
                                           default): top patches, first-layer filters, feature maps
  runs/<experiment>/seed_<s>/layer_<i>/     a pre-training run's layers (`cnn_jax.train.pretrain`)
  results.jsonl, table.md, table.csv, table.json, accuracy_vs_time.png, learning_curves.png,
  accuracy_vs_labels.png (suites whose rows vary the number of labelled examples)
  tensorboard/                             table.md as TensorBoard text (`tensorboard --logdir
                                           WORKDIR` shows it beside every training run's
                                           scalars, histograms and pictures)

A run whose `result.json` exists with the same config hash is skipped, so an
interrupted suite resumes where it stopped (and a training run inside it
resumes from its last checkpoint).
"""

from __future__ import annotations

import copy
import functools
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
from absl import logging

from cnn_jax import data as data_lib
from cnn_jax import probe as probe_lib
from cnn_jax import shift as shift_lib
from cnn_jax import visualize as visualize_lib
from cnn_jax.benchmark import experiments as _experiments  # noqa: F401  (registers them)
from cnn_jax.benchmark import plots, tables
from cnn_jax.benchmark.provenance import config_hash, git_state, provenance
from cnn_jax.benchmark.registry import Experiment, suite
from cnn_jax.data import datasets
from cnn_jax.errors import ConfigError
from cnn_jax.run import Run, TensorBoardWriter, write_json_atomic, write_jsonl_atomic
from cnn_jax.train import pretrain as pretrain_lib
from cnn_jax.train import train_and_evaluate


def run_dir(workdir: pathlib.Path, experiment: str, seed: int) -> pathlib.Path:
  return workdir / "runs" / experiment / f"seed_{seed}"


def _run_probe(exp: Experiment, config, workdir: pathlib.Path, splits) -> dict[str, Any]:
  train, test = splits()
  features = config.features.to_dict()
  if exp.needs:
    features["workdir"] = str(run_dir(workdir, exp.needs, config.seed) / "train")
  labelled = None
  if "labels" in config:
    labelled = data_lib.labelled_indices(len(train), config.labels, config.seed)
  result = probe_lib.probe_features(
      features, config.probe.to_dict(), train, test, labelled=labelled
  )
  return {
      "test_accuracy": result.test_acc, "train_accuracy": result.train_acc,
      "size": result.dim, "size_unit": "features",
      "time_s": result.extract_time_s + result.train_time_s,
      "extract_time_s": result.extract_time_s, "fit_time_s": result.train_time_s,
  }


def _run_train(exp: Experiment, config, workdir: pathlib.Path, splits) -> dict[str, Any]:
  run = Run(run_dir(workdir, exp.name, config.seed) / "train")
  if exp.needs:  # fine-tuning: start from the network the needed experiment wrote
    config = copy.deepcopy(config)
    config.train.init_from = str(run_dir(workdir, exp.needs, config.seed) / "train")
  summary = train_and_evaluate(config.train, str(run.path))
  last_train = [r for r in run.read_metrics() if r["split"] == "train"][-1]
  result = {
      "test_accuracy": summary["test_accuracy"], "train_accuracy": last_train["accuracy"],
      "size": summary["num_params"], "size_unit": "params",
      "time_s": summary["train_time_s"],
  }
  if exp.shifts:
    result["shifted_accuracy"] = _shifted_accuracy(run, exp.shifts, splits)
  return result


def _shifted_accuracy(run: Run, shifts: tuple[int, ...], splits) -> dict[str, float]:
  """{"pixels": test accuracy of the trained model on the test images moved that far}
  (mean over up, down, left, right), preprocessed as the run's training data was."""
  train, test = splits()
  model, variables, config = run.load_model()
  normalize = data_lib.Normalization.from_split(train, config.data.image_size or None)
  return {
      str(p): shift_lib.shifted_accuracy(model, variables, normalize, test.images, test.labels, p)
      for p in shifts
  }


def _run_pretrain(exp: Experiment, config, workdir: pathlib.Path, splits) -> dict[str, Any]:
  del splits
  summary = pretrain_lib.greedy_pretrain(
      config.train, config.pretrain, str(run_dir(workdir, exp.name, config.seed))
  )
  return {
      "test_accuracy": None, "train_accuracy": None,
      "size": summary["num_params"], "size_unit": "params", "time_s": summary["time_s"],
      "layers": [{k: v for k, v in s.items() if k != "train_loss_per_epoch"}
                 for s in summary["layers"]],
  }


RUNNERS = {"probe": _run_probe, "train": _run_train, "pretrain": _run_pretrain}


def _visualize(exp: Experiment, seed: int, workdir: pathlib.Path, splits) -> None:
  """The pictures of a trained run, unless it has them already."""
  train_dir = run_dir(workdir, exp.name, seed) / "train"
  if exp.runner != "train" or (train_dir / "visualize").is_dir():
    return
  for path in visualize_lib.visualize_run(train_dir, splits=splits()):
    logging.info("%s seed %d: wrote %s", exp.name, seed, path)


def _finished(record: dict[str, Any], config_hash: str, needs_hash: str | None) -> bool:
  return record.get("config_hash") == config_hash and record.get("needs_hash") == needs_hash


def plan(names: list[Experiment], seeds: list[int]) -> list[tuple[Experiment, int]]:
  """(experiment, seed) pairs in order; seed-independent experiments run once."""
  order = [e.name for e in names]
  for e in names:
    if e.needs and (e.needs not in order or order.index(e.needs) > order.index(e.name)):
      raise ConfigError(f"Experiment {e.name!r} needs {e.needs!r} earlier in the same suite.")
  return [(e, s) for e in names for s in (seeds if e.uses_seed else seeds[:1])]


def run_suite(
    suite_name: str,
    dataset: str,
    num_seeds: int,
    workdir: str | pathlib.Path,
    *,
    data_dir: str | None = None,
    tfds_dir: str | None = None,
    download: bool = False,
    visualize: bool = False,
    report_only: bool = False,
    only: Sequence[str] = (),
) -> dict[str, Any]:
  """Runs (or resumes) a suite and writes results.jsonl, tables and plots. Returns the table.

  Bad names and missing data are reported before the workdir is created.
  `visualize`: each trained run also gets `cnn_jax.visualize`'s pictures (default
  layer, on the test split) in its `train/visualize/`, written once; the tables
  do not change. `report_only`: run nothing; write the tables from the runs that are
  finished (with today's config hashes), naming the others in the provenance. `only`:
  run these experiments (and those they need) and table the others' finished runs, as
  `report_only` does (e.g. the rows a GPU computes, copied into a CPU workdir after).
  """
  git = git_state()  # the code this invocation runs, before anything else can change it
  info = datasets.get(dataset)
  experiments = [e for e in suite(suite_name) if e.runs_on(info.name)]
  for e in suite(suite_name):
    if not e.runs_on(info.name):
      logging.info("%s is meant for %s, not %s: left out.", e.name, ", ".join(e.datasets),
                   info.name)
  if num_seeds < 1:
    raise ConfigError(f"--seeds must be at least 1, got {num_seeds}.")
  names = [e.name for e in experiments]
  unknown = [n for n in only if n not in names]
  if unknown:
    raise ConfigError(
        f"--only names {', '.join(unknown)}, not in suite {suite_name!r} on {info.name}; "
        f"its experiments: {', '.join(names)}."
    )
  wanted = set(only)
  for e in reversed(experiments):  # and what they read (a `needs` comes before its reader)
    if e.name in wanted and e.needs:
      wanted.add(e.needs)
  seeds = list(range(num_seeds))

  @functools.cache
  def splits():
    load = functools.partial(
        data_lib.load_split, info.name, data_dir=data_dir, tfds_dir=tfds_dir, download=download
    )
    return load("train"), load("test")

  splits()  # missing or unprepared data fail here, before anything is written
  for e in experiments:
    if e.labels is not None and e.labels > len(splits()[0]):
      raise ConfigError(
          f"Experiment {e.name} uses {e.labels:,} labelled examples but {info.name} has "
          f"{len(splits()[0]):,} training images; run suite {suite_name} on a larger data set "
          "(e.g. --dataset=fashion_mnist)."
      )
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)

  records, hashes, not_run = [], {}, []
  todo = plan(experiments, seeds)
  for i, (exp, seed) in enumerate(todo):
    config = exp.config(dataset, seed)
    h = config_hash(config)
    hashes[f"{exp.name}/seed_{seed}"] = h
    path = run_dir(workdir, exp.name, seed) / "result.json"
    # A run that reads another (frozen features, fine-tuning) is redone when that one was.
    needs_hash = hashes.get(f"{exp.needs}/seed_{seed}") if exp.needs else None
    if path.exists() and _finished(json.loads(path.read_text()), h, needs_hash):
      logging.info("[%d/%d] %s seed %d: done before, skipped.", i + 1, len(todo), exp.name, seed)
      records.append(json.loads(path.read_text()))
      if visualize:
        _visualize(exp, seed, workdir, splits)
      continue
    if report_only or (only and exp.name not in wanted):
      not_run.append(f"{exp.name}/seed_{seed}")
      del hashes[f"{exp.name}/seed_{seed}"]
      continue
    logging.info("[%d/%d] %s seed %d ...", i + 1, len(todo), exp.name, seed)
    result = RUNNERS[exp.runner](exp, config, workdir, splits)
    record = {
        "experiment": exp.name, "seed": seed, "dataset": dataset, "kind": exp.kind,
        "representation": exp.representation, "uses_seed": exp.uses_seed,
        "config_hash": h, "config": json.loads(config.to_json(sort_keys=True)),
        **({"needs_hash": needs_hash} if needs_hash else {}),
        # The code and devices that computed this record (a later invocation may carry it
        # over, e.g. a GPU-only row into a CPU table: tables name it).
        "git_commit": git[0], "git_dirty": git[1],
        "device": tables.device_of(jax.device_count(), jax.devices()[0].device_kind), **result,
    }
    write_json_atomic(path, record)
    records.append(record)
    if visualize:
      _visualize(exp, seed, workdir, splits)
    logging.info(
        "[%d/%d] %s seed %d: %s (%.1f s).", i + 1, len(todo), exp.name, seed,
        "pre-trained" if result["test_accuracy"] is None
        else f"test accuracy {result['test_accuracy']:.4f}", result["time_s"],
    )
  write_jsonl_atomic(workdir / "results.jsonl", records)
  prov = provenance(seeds, hashes, git)
  if not_run:
    prov["not_run"] = not_run
    logging.warning("%s: %d of %d runs are not finished and left out: %s.",
                    "Report only" if report_only else "--only " + ",".join(only),
                    len(not_run), len(todo), ", ".join(not_run))
  table = tables.build_table(suite_name, info, experiments, records, prov)
  tables.write_tables(table, workdir)
  tensorboard = TensorBoardWriter(
      workdir / "tensorboard", enabled=jax.process_index() == 0, name="suite", replace=True
  )
  with tensorboard as tb:
    tb.text(0, f"suite/{suite_name}", tables.render_markdown(table))
  plots.accuracy_vs_time(table, workdir / "accuracy_vs_time.png")
  plots.accuracy_vs_labels(table, workdir / "accuracy_vs_labels.png")
  plots.learning_curves(
      {
          f"{e.name} seed {s}": run_dir(workdir, e.name, s) / "train"
          for e, s in todo if e.runner == "train"
      },
      workdir / "learning_curves.png",
  )
  return table
