"""A plain conv stack for layer-wise pre-training on Fashion-MNIST: 2 x (5x5 conv, ReLU, 2x2 max
pool) then the linear classifier, nothing else (every layer below the head can be pre-trained).

Kernels 16 and 32: the two conv layers cost about as much per image as the deep
MLP (2.8 M multiply-adds), so the two architectures fit one suite on a 2-core CPU.

python -m experiments.main --config=configs/conv_stack_fashion_mnist.py --workdir=/tmp/convs_fm
"""

from configs import simple_cnn_fashion_mnist


def get_config():
  config = simple_cnn_fashion_mnist.get_config()  # relu, max pooling, no BN, Adam 1e-3
  config.model.conv_features = (16, 32)
  config.model.kernel_size = 5
  config.model.dense_features = ()
  config.batch_size = 100
  config.num_epochs = 2
  return config
