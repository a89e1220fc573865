"""One process of the two-process streaming test (tests/test_stream.py), run as a script:

  python tests/stream_shards.py PROCESS_ID PORT OUT_JSON

Joins a 2-process JAX job on 127.0.0.1:PORT (4 CPU devices each, from XLA_FLAGS), streams
one epoch of tiny_bars, checks that every assembled global batch is the device-resident
source's batch, and writes the record ids this process read to OUT_JSON.
"""

import json
import sys

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import tiny_dataset
from cnn_jax import data
from cnn_jax.data import stream

BATCH, STEPS = 64, 4  # tiny_bars: 256 training images, one epoch


def main(process_id: int, port: int, out: str) -> None:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
  split = stream.open_split(tiny_dataset.NAME, "train")
  whole = data.load_split(tiny_dataset.NAME, "train")
  sharding = NamedSharding(Mesh(np.array(jax.devices()), ("data",)), PartitionSpec("data"))
  key = jax.random.key(5)
  rows = stream.process_rows(sharding, BATCH)
  order = stream.BatchOrder(split, stream.EpochOrders(key, len(split)), BATCH, STEPS, rows)
  perm = data.epoch_permutation(key, 0, len(whole))
  batches = stream.device_batches(split, key, sharding, batch_size=BATCH, steps_per_epoch=STEPS,
                                  start_step=0, stop_step=STEPS, num_threads=2)
  for step, (x, y) in enumerate(batches):
    assert x.shape == (BATCH, 28, 28, 1) and not x.is_fully_addressable
    want_x, want_y = data.batch_from_permutation(whole.images, whole.labels, perm, step, BATCH)
    np.testing.assert_array_equal(multihost_utils.process_allgather(x, tiled=True), want_x)
    np.testing.assert_array_equal(multihost_utils.process_allgather(y, tiled=True), want_y)
  with open(out, "w") as f:
    json.dump({"rows": [rows.start, rows.stop], "local_devices": jax.local_device_count(),
               "records": [order.records(t).tolist() for t in range(STEPS)]}, f)


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
