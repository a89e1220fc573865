"""Score one representation with the shared probe, the published anchor beside it.

  python -m experiments.probe --dataset=fashion_mnist --features=hog --probe=linear \
      [--config.hog.pixels_per_cell=4 --config.linear.l2=1e-3 ...]
  python -m experiments.probe --features=cnn --workdir=workdirs/lenet5_fm --config.cnn.layer=C5

`--config` holds every extractor's parameters (`--config.<extractor>.<param>`) and
every probe's settings (`--config.linear.*`, `--config.svm.*`), defaults from their
functions' signatures; only the chosen ones are used. A registered data set's
suggested extractor parameters (`DatasetInfo.feature_params`, the ones the benchmark
uses) apply unless given on the command line. Prints one line per result and, with --output, appends it as JSON.
"""

import json
import sys

import ml_collections
from absl import flags

from cnn_jax import anchors
from cnn_jax.data import DATASETS, load_split
from cnn_jax.features import EXTRACTORS
from cnn_jax.probe import PROBES, probe_features
from experiments import cli


def probe_config() -> ml_collections.ConfigDict:
  """Every extractor's and every probe's settings, defaults from their signatures."""
  config = ml_collections.ConfigDict()
  for registry in (EXTRACTORS, PROBES):
    for name in registry.names():
      config[name] = registry.default_config(name)
  config.batch_size = 1000
  return config


FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "fashion_mnist", "A registered data set (" + ", ".join(
    DATASETS.names()) + ") or a prepared TFDS name.")
flags.DEFINE_string("features", "raw", "Extractor name: " + ", ".join(EXTRACTORS.names()) + ".")
flags.DEFINE_enum("probe", "linear", PROBES.names(), "linear (softmax regression) or svm (RBF SVC).")
flags.DEFINE_string("workdir", None, "Trained run for --features=cnn (sets config.cnn.workdir).")
flags.DEFINE_string("output", None, "Append the result as one JSON line to this file.")
flags.DEFINE_string("data_dir", None, "Where raw data files are looked for.")
flags.DEFINE_string("tfds_dir", None, "TFDS data dir for prepared data sets.")
flags.DEFINE_bool("download", False, "Let TFDS download and prepare a data set (needs network).")
cli.define_config_dict("config", probe_config(), lock_config=True)


def feature_params(
    dataset: str, features: str, config: ml_collections.ConfigDict, given: frozenset[str]
) -> dict:
  """The extractor's settings: the data set's suggested ones, except those in `given`
  (set on the command line), over the extractor's defaults."""
  params = config[features].to_dict()
  if dataset in DATASETS:
    params.update({
        k: v for k, v in DATASETS.get(dataset).features(features).items() if k not in given
    })
  return params


def run(
    dataset: str, features: str, probe: str, config: ml_collections.ConfigDict,
    given: frozenset[str] = frozenset(), **load_kwargs,
) -> dict:
  """Extracts train/test features, fits the probe, returns the result with its anchor."""
  EXTRACTORS.get(features)  # unknown names fail before the data are loaded
  params = feature_params(dataset, features, config, given)
  train, test = load_split(dataset, "train", **load_kwargs), load_split(dataset, "test", **load_kwargs)
  result = probe_features(
      params, config[probe].to_dict(), train, test, batch_size=config.batch_size
  ).to_dict()
  result.update(dataset=dataset, features=features, feature_params=params)
  anchor = anchors.anchor_for(dataset, features, probe)
  result["anchor"] = {"method": anchor[0], "accuracy": anchor[1]} if anchor else None
  return result


def format_result(r: dict) -> str:
  anchor = r["anchor"]
  beside = f"anchor {anchor['accuracy']:.3f} ({anchor['method']})" if anchor else "no anchor"
  return (
      f"{r['dataset']}  {r['features']:<11} + {r['probe']:<6}  test {r['test_acc']:.4f}  "
      f"train {r['train_acc']:.4f}  dim {r['dim']:>5}  extract {r['extract_time_s']:.1f} s  "
      f"fit {r['train_time_s']:.1f} s  |  {beside}"
  )


def main(argv):
  del argv
  config = FLAGS.config
  if FLAGS.workdir:
    config.cnn.workdir = FLAGS.workdir
  prefix = f"--config.{FLAGS.features}."
  given = frozenset(a[len(prefix):].split("=")[0] for a in sys.argv if a.startswith(prefix))
  result = run(
      FLAGS.dataset, FLAGS.features, FLAGS.probe, config, given,
      data_dir=FLAGS.data_dir, tfds_dir=FLAGS.tfds_dir, download=FLAGS.download,
  )
  print(format_result(result))
  if FLAGS.output:
    with open(FLAGS.output, "a") as f:
      f.write(json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
  cli.run(main)
