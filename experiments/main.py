"""Train one model from a config file.

  python -m experiments.main --config=configs/lenet5_digits.py --workdir=/tmp/lenet5_digits \
      [--config.optimizer.learning_rate=3e-3 ...]
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from cnn_jax.console import show_progress
from cnn_jax.errors import UserError
from cnn_jax.train import train_and_evaluate
from cnn_jax.train.preemption import Preempted

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Path to a config file in configs/.", lock_config=True
)
flags.DEFINE_string("workdir", None, "Directory for config.json, metrics.jsonl and summary.json.")
flags.mark_flags_as_required(["config", "workdir"])


def _root_message(e: BaseException) -> str:
  while e.args and isinstance(e.args[0], BaseException):
    e = e.args[0]
  msg = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
  return " ".join(line.strip() for line in msg.splitlines())


def parse_flags(argv: list[str]) -> list[str]:
  """absl's parser, but a bad `--config.*` override is one clear line, not a traceback."""
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    print(
        f"error: bad flag ({_root_message(e)}). Config overrides given: {' '.join(overrides)}. "
        "Fields must exist in the config file (see configs/default.py).",
        file=sys.stderr,
    )
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  show_progress()
  try:
    train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except Preempted as e:
    print(str(e), file=sys.stderr)
    sys.exit(128 + e.signum)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
