"""Train one model from a config file.

  python -m experiments.main --config=configs/lenet5_digits.py --workdir=/tmp/lenet5_digits \\
      [--config.optimizer.learning_rate=3e-3 ...]
"""

import sys

from absl import flags
from ml_collections import config_flags

from cnn_jax import startup
from cnn_jax.train import train_and_evaluate
from cnn_jax.train.preemption import Preempted
from experiments import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Path to a config file in configs/.", lock_config=True
)
flags.DEFINE_string(
    "workdir", None, "Directory for config.json, metrics.jsonl, checkpoints and summary.json."
)


def main(argv):
  del argv
  try:
    train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except Preempted as e:
    print(str(e), file=sys.stderr)
    sys.exit(128 + e.signum)


if __name__ == "__main__":
  startup.mark("imports_done")
  cli.run(main, required=("config", "workdir"))
