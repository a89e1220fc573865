"""Score one representation with the shared probe, the published anchor beside it.

  python -m experiments.probe --dataset=fashion_mnist --features=hog --probe=linear \
      [--config.hog.pixels_per_cell=4 --config.linear.l2=1e-3 ...]
  python -m experiments.probe --features=cnn --workdir=workdirs/lenet5_fm --config.cnn.layer=C5

`--config` holds every extractor's parameters (`--config.<extractor>.<param>`) and
every probe's settings (`--config.linear.*`, `--config.svm.*`); only the chosen
ones are used. Prints one line per result and, with --output, appends it as JSON.
"""

import json

import ml_collections
from absl import flags

from cnn_jax import anchors
from cnn_jax.data import load_split
from cnn_jax.features import EXTRACTORS, default_config, make_extractor, timed_extract
from cnn_jax.probe import PROBES
from experiments import cli


def probe_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  for name in EXTRACTORS.names():
    config[name] = default_config(name)
  config.cnn.workdir = ""
  config.linear = ml_collections.ConfigDict({"l2": 1e-3, "steps": 300, "seed": 0})
  config.svm = ml_collections.ConfigDict({"C": 10.0, "gamma": "scale", "max_train": 0, "seed": 0})
  config.batch_size = 1000
  return config


FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "fashion_mnist", "digits, fashion_mnist, or a prepared TFDS name.")
flags.DEFINE_string("features", "raw", "Extractor name: " + ", ".join(EXTRACTORS.names()) + ".")
flags.DEFINE_enum("probe", "linear", list(PROBES), "linear (softmax regression) or svm (RBF SVC).")
flags.DEFINE_string("workdir", None, "Trained run for --features=cnn (sets config.cnn.workdir).")
flags.DEFINE_string("output", None, "Append the result as one JSON line to this file.")
cli.define_config_dict("config", probe_config(), lock_config=True)


def run(dataset: str, features: str, probe: str, config: ml_collections.ConfigDict) -> dict:
  """Extracts train/test features, fits the probe, returns the result with its anchor."""
  EXTRACTORS.get(features)  # unknown names fail before the data are loaded
  train, test = load_split(dataset, "train"), load_split(dataset, "test")
  fn = make_extractor(config[features], image_shape=train.images.shape[1:],
                      train_images=train.images)
  feats, extract_s = timed_extract(
      fn, {"train": train.images, "test": test.images}, config.batch_size
  )
  settings = config[probe].to_dict()
  if probe == "svm":
    settings["max_train"] = settings["max_train"] or None
  result = PROBES[probe](
      feats["train"], train.labels, feats["test"], test.labels, extract_time_s=extract_s,
      **settings,
  ).to_dict()
  result.update(dataset=dataset, features=features, feature_params=config[features].to_dict())
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
    with config.unlocked():
      config.cnn.workdir = FLAGS.workdir
  result = run(FLAGS.dataset, FLAGS.features, FLAGS.probe, config)
  print(format_result(result))
  if FLAGS.output:
    with open(FLAGS.output, "a") as f:
      f.write(json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
  cli.run(main)
