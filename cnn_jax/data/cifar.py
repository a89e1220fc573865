"""CIFAR-10 from the official `cifar-10-python.tar.gz`, without TensorFlow.

The archive (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz, 170 MB) is
looked for in `--config.data.data_dir`, then `$CNN_JAX_DATA`, then
`~/.cache/cnn_jax/`. It is read in place (nothing is extracted to disk): the
members `cifar-10-batches-py/data_batch_1..5` (train, in that order) and
`test_batch`, each a pickled dict whose `data` holds 10,000 rows of 3,072 bytes
(1,024 red, then green, then blue values of a 32x32 image, row-major) and whose
`labels` holds 10,000 class indices. The generic offline builder then stores the
splits as array_record files once, as for every offline data set.

Unpickling runs with a whitelist (dicts, lists, strings, numbers, NumPy's own array
reconstruction and `_codecs.encode`), so a crafted archive cannot run code. The archive's MD5 is
compared with the published one and logged; a file in the same format but not the
official one (e.g. a test's tiny archive) is read, with a warning.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import pickle
import tarfile

import numpy as np
from absl import logging

from cnn_jax.data.idx import ENV_VAR, DataError

ARCHIVE = "cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # published on the CIFAR page
CACHE_DIR = pathlib.Path("~/.cache/cnn_jax").expanduser()
MEMBERS = {
    "train": [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)],
    "test": ["cifar-10-batches-py/test_batch"],
}
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("_codecs", "encode"),  # how Python 3's protocol-2 pickles store bytes (no side effects)
}


class _SafeUnpickler(pickle.Unpickler):
  def find_class(self, module: str, name: str):
    if (module, name) not in _ALLOWED:
      raise DataError(f"{ARCHIVE}: refusing to unpickle {module}.{name}; not a CIFAR-10 batch.")
    return super().find_class(module, name)


def find_archive(data_dir: str | None) -> pathlib.Path:
  places = [p for p in (data_dir, os.environ.get(ENV_VAR), str(CACHE_DIR)) if p]
  for place in places:
    path = pathlib.Path(place).expanduser()
    path = path if path.name == ARCHIVE else path / ARCHIVE
    if path.is_file():
      return path
  raise DataError(
      f"CIFAR-10: {ARCHIVE} not found in {', '.join(places)}. Download "
      f"https://www.cs.toronto.edu/~kriz/{ARCHIVE} (170 MB) on a machine with network access "
      f"and put it in one of those folders (or point --config.data.data_dir / ${ENV_VAR} at "
      "it); or let TFDS download and prepare its own copy: --config.data.download=True "
      "(experiments.main) or --download (experiments.benchmark, experiments.probe)."
  )


def _md5(path: pathlib.Path) -> str:
  h = hashlib.md5()
  with path.open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def read_batch(blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [N, 32, 32, 3], labels int64 [N]) of one pickled batch."""
  try:
    batch = _SafeUnpickler(io.BytesIO(blob), encoding="bytes").load()
    data, labels = np.asarray(batch[b"data"], np.uint8), np.asarray(batch[b"labels"], np.int64)
  except DataError:
    raise
  except Exception as e:  # noqa: BLE001 - any malformed batch is the same user error
    raise DataError(f"{where} is not a CIFAR-10 batch ({type(e).__name__}: {e}).") from None
  if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
    raise DataError(
        f"{where}: expected data [N, 3072] and N labels, got {data.shape} and {len(labels)}."
    )
  if labels.size and not 0 <= labels.min() <= labels.max() < 10:
    raise DataError(f"{where}: labels outside 0..9.")
  return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar10(split: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 [N, 32, 32, 3], labels [N]) of `split` ('train' or 'test')."""
  path = find_archive(data_dir)
  md5 = _md5(path)
  if md5 != ARCHIVE_MD5:
    logging.warning("%s has MD5 %s, not the published %s: reading it as CIFAR-10 anyway.",
                    path, md5, ARCHIVE_MD5)
  try:
    with tarfile.open(path, "r:gz") as tar:
      parts = []
      for member in MEMBERS[split]:
        f = tar.extractfile(member)
        if f is None:
          raise KeyError(member)
        parts.append(read_batch(f.read(), f"{path}:{member}"))
  except KeyError as e:
    raise DataError(f"{path} has no member {e.args[0]}: not {ARCHIVE}.") from None
  except (tarfile.TarError, OSError, EOFError) as e:
    raise DataError(f"{path} cannot be read as a .tar.gz archive ({e}).") from None
  return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
