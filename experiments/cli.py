"""What every command-line tool shares: flag parsing, one-line errors, a quiet console.

  from experiments import cli
  ...
  if __name__ == "__main__":
    cli.run(main, required=("config", "workdir"))

* `--help` (`-?`, `--helpshort`, `--helpfull`) prints the help and exits 0.
* A bad flag, a misspelt `--config.*` override, a config file that cannot be
  loaded, a missing required flag or a stray positional argument is one line on
  stderr, `error: ...`, and exit status 2 (no traceback), as is any `UserError`
  raised by `main` (see `cnn_jax/errors.py`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from cnn_jax.console import show_progress
from cnn_jax.errors import UserError

FLAGS = flags.FLAGS
HELP_FLAGS = {"help", "?", "helpshort", "helpfull", "helpxml"}


def fail(message: str) -> None:
  """Prints `error: message` on stderr and exits with status 2."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _one_line(e: BaseException) -> str:
  """The innermost message of a (possibly wrapped) exception, on one line."""
  while e.args and isinstance(e.args[0], BaseException):
    e = e.args[0]
  msg = e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
  return " ".join(line.strip() for line in msg.splitlines() if line.strip())


def _asks_for_help(argv: Sequence[str]) -> bool:
  return any(a.startswith("-") and a.lstrip("-").split("=")[0] in HELP_FLAGS for a in argv[1:])


def _config_file_error(name: str, path: str, reason: str) -> None:
  fail(f"cannot load --{name}={path}: {reason}. Config files are in configs/, e.g. "
       f"--{name}=configs/lenet5_digits.py.")


def _check_config_files(argv: Sequence[str]) -> None:
  """A config file that does not exist or fails to load is one line, not a deferred traceback."""
  for arg in argv[1:]:  # before parsing: `--config.*` overrides of a missing file fail obscurely
    name, _, path = arg[2:].partition("=")
    file = path.split(":")[0]  # `FILE:ARG` passes ARG to get_config
    if (arg.startswith("--") and name in FLAGS and type(FLAGS[name]).__name__ == "_ConfigFlag"
        and file and not os.path.isfile(file)):
      _config_file_error(name, path, "not a file" if os.path.exists(file) else "no such file")


def _check_loaded_configs(argv: Sequence[str]) -> None:
  for name in FLAGS:  # after parsing: ml_collections defers a load error to the first use
    value = FLAGS[name].value
    if type(value).__name__ == "_ErrorConfig":
      path = next((a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")), "")
      _config_file_error(name, path, _one_line(value._error))  # noqa: SLF001


def _missing(names: Sequence[str]) -> None:
  fail("missing " + ", ".join(f"--{n} ({FLAGS[n].help.rstrip('.')})" for n in names)
       + ". Pass " + " ".join(f"--{n}=..." for n in names) + "; --help shows an example.")


PARSE_ERRORS = (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError)


def _bad_flag(e: BaseException) -> None:
  field = isinstance(e, (AttributeError, KeyError))  # ConfigDict: no such field
  fail(f"bad flag ({_one_line(e)})."
       + (" A --config.* override must name an existing field." if field else ""))


def define_config_dict(name: str, config: ml_collections.ConfigDict, **kwargs) -> None:
  """`config_flags.DEFINE_config_dict`; it parses its overrides at once: a bad one is one line."""
  try:
    config_flags.DEFINE_config_dict(name, config, **kwargs)
  except PARSE_ERRORS as e:
    _bad_flag(e)


def parse_flags(argv: list[str], required: Sequence[str] = ()) -> list[str]:
  """absl's parser with one-line errors (exit 2) and a help that exits 0."""
  help_asked = _asks_for_help(argv)
  if not help_asked:
    _check_config_files(argv)
  try:
    rest = FLAGS(argv)
  except SystemExit as e:
    if help_asked and e.code == 1:  # absl's help flags print the help, then exit 1
      sys.exit(0)
    raise
  except PARSE_ERRORS as e:
    # `--config.x=...` without `--config=FILE` is an unknown flag: say that --config is missing.
    unknown = [n for n in required
               if FLAGS[n].value is None and f"Unknown command line flag '{n}." in str(e)]
    if unknown:
      _missing(unknown)
    _bad_flag(e)
  _check_loaded_configs(argv)
  missing = [name for name in required if FLAGS[name].value is None]
  if missing:
    _missing(missing)
  if len(rest) > 1:
    fail(f"unexpected arguments: {' '.join(rest[1:])} (flags are written --name=value).")
  return rest


def run(main: Callable[[list[str]], None], *, required: Sequence[str] = (),
        progress: str = "/cnn_jax/") -> None:
  """`absl.app.run(main)` with the shared parser; a `UserError` from `main` exits 2.

  `progress` picks the INFO lines shown on the console (see `show_progress`).
  """

  def wrapped(argv):
    show_progress(progress)
    try:
      return main(argv)
    except UserError as e:
      fail(str(e))

  app.run(wrapped, flags_parser=lambda argv: parse_flags(argv, required))
