"""Greedy layer-wise pre-training of a config's network, without labels; then fine-tune it.

  python -m experiments.pretrain --config=configs/mlp_fashion_mnist.py --workdir=/tmp/mlp_pre \\
      [--pretrain.epochs=5 --pretrain.noise=0.25 ...]
  python -m experiments.main --config=configs/mlp_fashion_mnist.py --workdir=/tmp/mlp_fine \\
      --config.init_from=/tmp/mlp_pre/train [--config.data.num_train=600]

Each hidden layer of the config's model (mlp; simple_cnn without BatchNorm) is trained
in turn as a denoising autoencoder on the frozen outputs of the layers below, on every
training image; `WORKDIR/train` then holds the stacked network for `init_from` and for
the frozen `cnn` feature extractor (`python -m experiments.probe --features=cnn
--features.workdir=WORKDIR/train --features.layer=fc3`). Rerunning resumes at the layer
and step a killed run reached. See cnn_jax/train/pretrain.py.
"""

import json

from absl import flags
from ml_collections import config_flags

from cnn_jax.train import pretrain
from experiments import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Path to a training config file in configs/ (the network).", lock_config=True
)
cli.define_config_dict("pretrain", pretrain.default_pretrain_config(), lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for the layers' runs and the stacked network.")


def main(argv):
  del argv
  summary = pretrain.greedy_pretrain(FLAGS.config, FLAGS.pretrain, FLAGS.workdir)
  for layer in summary["layers"]:
    print(f"{layer['layer']}: held-out reconstruction loss {layer['held_out_loss_before']:.4f} "
          f"-> {layer['held_out_loss_after']:.4f}")
  print(json.dumps({"stacked_network": f"{FLAGS.workdir}/train", "time_s": summary["time_s"]}))


if __name__ == "__main__":
  cli.run(main, required=("config", "workdir"))
