"""LeNet-5 (tanh, average pooling, as in the paper) on Fashion-MNIST, 28x28 padded to 32x32.

python -m experiments.main --config=configs/lenet5_fashion_mnist.py --workdir=/tmp/lenet5_fm
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "fashion_mnist"
  config.model.name = "lenet5"
  config.model.activation = "tanh"
  config.model.pool = "avg"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-3
  config.batch_size = 64
  config.num_epochs = 3
  return config
