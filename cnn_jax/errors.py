"""Errors a user can meet. Each message says what is wrong and how to fix it.

The CLI prints these as one line (no traceback) and exits with status 2.
"""


class UserError(Exception):
  """Base class: bad input from the config, the command line or the data files."""


class ConfigError(UserError, ValueError):
  """A config names something that does not exist or does not fit."""
