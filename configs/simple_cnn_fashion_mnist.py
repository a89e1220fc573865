"""The 2-conv + pooling CNN (TensorFlow tutorial form; anchor 0.916) on Fashion-MNIST.

python -m experiments.main --config=configs/simple_cnn_fashion_mnist.py --workdir=/tmp/cnn_fm
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "fashion_mnist"
  config.model.name = "simple_cnn"
  config.model.conv_features = (32, 64)
  config.model.kernel_size = 3
  config.model.dense_features = (128,)
  config.model.activation = "relu"
  config.model.pool = "max"
  config.model.batch_norm = False
  config.model.dropout = 0.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.batch_size = 128
  config.num_epochs = 5
  return config
