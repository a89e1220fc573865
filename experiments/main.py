"""Train one model from a config file.

  python -m experiments.main --config=configs/lenet5_digits.py --workdir=/tmp/lenet5_digits \
      [--config.optimizer.learning_rate=3e-3 ...]
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from cnn_jax.errors import UserError
from cnn_jax.train import train_and_evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Path to a config file in configs/.", lock_config=True
)
flags.DEFINE_string("workdir", None, "Directory for config.json, metrics.jsonl and summary.json.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  logging.set_verbosity(logging.INFO)
  try:
    train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
