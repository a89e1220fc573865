"""The 2-conv + pooling CNN of `simple_cnn_fashion_mnist` on scikit-learn's 8x8 digits.

The 8x8 images are upsampled (bilinear, on the device) to 16x16: two 2x2 poolings
of 8x8 would leave 2x2 maps. Batch 32, 20 epochs (1,438 training images).

python -m experiments.main --config=configs/simple_cnn_digits.py --workdir=/tmp/cnn_digits
"""

from configs import simple_cnn_fashion_mnist


def get_config():
  config = simple_cnn_fashion_mnist.get_config()
  config.data.name = "digits"
  config.data.image_size = 16
  config.batch_size = 32
  config.eval_batch_size = 512
  config.num_epochs = 20
  config.log_every_steps = 45
  return config
