"""Console logging for the command-line tools."""

import logging as std_logging

from absl import logging


def show_progress(only: str = "/cnn_jax/") -> None:
  """INFO logs from files whose path contains `only`; WARNING and above from everything.

  orbax and TFDS log every file operation at INFO, which would bury the progress lines.
  """
  logging.set_verbosity(logging.INFO)
  logging.get_absl_logger().addFilter(
      lambda r: r.levelno >= std_logging.WARNING or only in r.pathname
  )
