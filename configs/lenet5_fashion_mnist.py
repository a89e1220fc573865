"""LeNet-5 on Fashion-MNIST, 28x28 zero-padded to 32x32: the project's one LeNet-5 recipe here.

LeCun et al.'s layers (C1-S2-C3-S4-C5-F6, tanh, full C3 connections, a linear
10-way output) with the two choices of `lenet5_digits`: max pooling (the
lecture's usual pooling; the paper's average pooling trained 3 epochs with Adam
gave 0.886 here) and AdamW with decoupled weight decay, 10 epochs of batch 64.
The features_vs_learned suite trains exactly this file, so the README, the
committed table and this config report one LeNet-5 number.

python -m experiments.main --config=configs/lenet5_fashion_mnist.py --workdir=/tmp/lenet5_fm
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "fashion_mnist"
  config.model.name = "lenet5"
  config.model.activation = "tanh"
  config.model.pool = "max"
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 2e-3
  config.optimizer.weight_decay = 1e-4
  config.batch_size = 64
  config.num_epochs = 10
  config.log_every_steps = 200
  return config
