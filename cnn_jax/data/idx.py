"""Fashion-MNIST's four IDX files: find them, verify them, read them.

The files are looked for in `--config.data.data_dir`, then `$CNN_JAX_DATA`,
then `/usr/share/datasets/fashion-mnist/` (Debian's `dataset-fashion-mnist`).

Verification. The dataset's README publishes the MD5 sums of the four `.gz`
files. Debian ships the same data recompressed (other gzip bytes), so a file is
accepted when either the MD5 of the `.gz` file matches the published sum, or
the MD5 of its decompressed IDX payload matches the payload sum recorded below
(measured from Debian's `dataset-fashion-mnist 0.0~git20200523.55506a9-1`,
built from upstream commit 55506a9). Either way the IDX header is checked too.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pathlib

import numpy as np

from cnn_jax.errors import UserError

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "CNN_JAX_DATA"

# name -> (published MD5 of the .gz file, MD5 of the decompressed payload, shape)
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte.gz": (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a", (60000, 28, 28)),
    "train-labels-idx1-ubyte.gz": (
        "25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9", (60000,)),
    "t10k-images-idx3-ubyte.gz": (
        "bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a", (10000, 28, 28)),
    "t10k-labels-idx1-ubyte.gz": (
        "bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965", (10000,)),
}

FIX_HINT = (
    "To get the data: `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, installs "
    f"{DEBIAN_DIR}/), or put the four files from "
    "https://github.com/zalandoresearch/fashion-mnist into a folder and pass "
    f"--config.data.data_dir=FOLDER (or set ${ENV_VAR}); where the network allows, "
    "`tfds build fashion_mnist --file_format=array_record` prepares TFDS's own copy."
)


class DataError(UserError, RuntimeError):
  """Data set files are missing or corrupt; the message says which and how to fix it."""


def search_dirs(data_dir: str | None) -> list[pathlib.Path]:
  dirs = [data_dir, os.environ.get(ENV_VAR), DEBIAN_DIR]
  return [pathlib.Path(d).expanduser() for d in dirs if d]


def find_fashion_mnist(data_dir: str | None) -> pathlib.Path:
  """Returns the first folder that holds all four files (checked later)."""
  dirs = search_dirs(data_dir)
  for d in dirs:
    if all((d / name).is_file() for name in FASHION_MNIST_FILES):
      return d
  looked = ", ".join(str(d) for d in dirs)
  partial = [
      f"{d}: missing {', '.join(n for n in FASHION_MNIST_FILES if not (d / n).is_file())}"
      for d in dirs
      if any((d / n).is_file() for n in FASHION_MNIST_FILES)
  ]
  detail = f" ({'; '.join(partial)})" if partial else ""
  raise DataError(f"Fashion-MNIST IDX files not found in {looked}{detail}. {FIX_HINT}")


def read_idx(path: pathlib.Path) -> np.ndarray:
  """Reads and verifies one Fashion-MNIST `.gz` IDX file into a uint8 array."""
  gz_md5, payload_md5, shape = FASHION_MNIST_FILES[path.name]
  raw = path.read_bytes()
  try:
    payload = gzip.decompress(raw)
  except (OSError, EOFError) as e:
    raise DataError(f"{path} is not a readable gzip file ({e}): it is corrupt. {FIX_HINT}") from e
  if hashlib.md5(raw).hexdigest() != gz_md5 and hashlib.md5(payload).hexdigest() != payload_md5:
    raise DataError(
        f"{path} fails its MD5 check (file {hashlib.md5(raw).hexdigest()}, expected {gz_md5}; "
        f"payload {hashlib.md5(payload).hexdigest()}, expected {payload_md5}): "
        f"it is corrupt or a different file. {FIX_HINT}"
    )
  ndim = payload[3]
  dims = tuple(int.from_bytes(payload[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
  if payload[:3] != b"\x00\x00\x08" or dims != shape:
    raise DataError(f"{path} has an unexpected IDX header (dims {dims}, expected {shape}).")
  return np.frombuffer(payload, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist_idx(data_dir: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'train': (images [60000, 28, 28, 1], labels [60000]), 'test': (... 10000 ...)}."""
  folder = find_fashion_mnist(data_dir)
  out = {}
  for split, prefix in (("train", "train"), ("test", "t10k")):
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
    out[split] = (images[..., None], labels.astype(np.int64))
  return out
