"""JAX's persistent compilation cache: a rerun or a resumed run loads its compiled
functions (model init, train and eval steps, the data permutation) from disk instead
of compiling them again.

`config.compilation_cache` picks the folder: None (the default) is
`$CNN_JAX_COMPILATION_CACHE` when that is set, else `~/.cache/cnn_jax/jax`; "" (or the
variable set to "") turns the cache off; any other value is the folder. Every
compilation is stored, however quick (JAX's own defaults skip those under a second,
which is every step of a small CPU model). The folder is kept under `MAX_BYTES`, least
recently used entries going first; that also makes JAX lock it around every read and
write, so runs started at the same time share it safely. The cache holds executables for this
machine's JAX version and devices; JAX keys its entries on both, so a folder may be
shared between versions. Only share it with people you trust: a cache entry is code
that runs.
"""

from __future__ import annotations

import os
import pathlib

import jax
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from cnn_jax.errors import ConfigError

DEFAULT_DIR = "~/.cache/cnn_jax/jax"
ENV = "CNN_JAX_COMPILATION_CACHE"
MAX_BYTES = 2 * 2**30


def cache_dir(setting: str | None) -> pathlib.Path | None:
  """The folder `config.compilation_cache = setting` names (None: the cache is off)."""
  value = setting if setting is not None else os.environ.get(ENV, DEFAULT_DIR)
  return pathlib.Path(value).expanduser().absolute() if value else None


def use_compilation_cache(setting: str | None) -> pathlib.Path | None:
  """Points JAX's persistent cache at `cache_dir(setting)` (or turns it off) for this process.

  Call it before the first compilation of a run; returns the folder in use.
  """
  directory = cache_dir(setting)
  if directory is not None:
    try:
      directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise ConfigError(
          f"Cannot create the compilation cache folder {directory} ({e.strerror}). Name a "
          "writable one with --config.compilation_cache=DIR, or turn the cache off with "
          "--config.compilation_cache=''."
      ) from None
  path = str(directory) if directory is not None else None
  if (jax.config.jax_compilation_cache_dir == path
      and jax.config.jax_enable_compilation_cache == (path is not None)
      and jax.config.jax_persistent_cache_min_compile_time_secs == 0):
    return directory
  jax.config.update("jax_enable_compilation_cache", path is not None)
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # no size floor
  jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
  jax_cache.reset_cache()  # JAX opens its cache once; a new folder needs a fresh start
  return directory
