"""Console logging for the command-line tools."""

from __future__ import annotations

import logging as std_logging
import os
import sys

from absl import logging

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# WARNINGs that are not trouble: TFDS looks for prepared versions of a data set in every
# version folder, also in ones that do not exist yet (before our offline builders prepare them).
HARMLESS_WARNINGS = ("Variant folder %s has no %s",)


def _shown(only: str, record: std_logging.LogRecord) -> bool:
  if record.levelno >= std_logging.WARNING:
    return record.msg not in HARMLESS_WARNINGS
  path = os.path.abspath(record.pathname)
  return path.startswith(PACKAGE_DIR + os.sep) and only in "/cnn_jax" + path[len(PACKAGE_DIR):]


def show_progress(only: str = "/cnn_jax/") -> None:
  """INFO logs from this package's files whose path contains `only`; WARNING and above from all.

  orbax and TFDS log every file operation at INFO, jax that it found no TPU; that would bury
  the progress lines. The filter sits on absl's handler, so it also covers the libraries that
  log through Python's `logging` (jax). `only` is matched against the path below the package
  (`/cnn_jax/benchmark/`), wherever the package is installed. TFDS's own console output for
  the offline data sets is replaced by one INFO line (see `quiet_tfds`).
  """
  global _progress_shown
  _progress_shown = True
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(lambda r: _shown(only, r))
  if "tensorflow_datasets" in sys.modules:  # some CLIs have imported it by now
    quiet_tfds()


_progress_shown = False


def tfds_imported() -> None:
  """Called where TFDS is imported late (`cnn_jax.data.loader`): quiets it like `show_progress`
  would have, if a command-line tool asked for progress lines."""
  if _progress_shown:
    quiet_tfds()


def quiet_tfds() -> None:
  """TFDS prints "Downloading and preparing dataset Unknown size (download: Unknown size, ...)"
  and "Dataset ... downloaded and prepared" for data sets built offline (nothing is
  downloaded), and progress bars that turn into escape codes in a log file. For a data set
  with nothing to download, log one INFO line instead; progress bars only on a terminal.
  """
  import tensorflow_datasets as tfds

  builder = tfds.core.DatasetBuilder
  if getattr(builder, "_cnn_jax_quiet", False):
    return
  show_bytes, show_done = builder._log_download_bytes, builder._log_download_done  # noqa: SLF001

  def log_download_bytes(self) -> None:
    if int(self.info.download_size):
      show_bytes(self)
    else:
      logging.info("Preparing data set %s in %s (once; later runs reuse it).", self.name,
                   self.data_dir)

  def log_download_done(self) -> None:
    if int(self.info.download_size):
      show_done(self)

  builder._log_download_bytes = log_download_bytes  # noqa: SLF001
  builder._log_download_done = log_download_done  # noqa: SLF001
  builder._cnn_jax_quiet = True  # noqa: SLF001
  if not sys.stderr.isatty():
    tfds.disable_progress_bar()
