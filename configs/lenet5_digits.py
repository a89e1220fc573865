"""LeNet-5 on scikit-learn's 8x8 digits, upsampled (bilinear) to 32x32 on the device.

Split: the fixed stratified 80/20 split of `cnn_jax.data.builders.digits_split`.
python -m experiments.main --config=configs/lenet5_digits.py --workdir=/tmp/lenet5_digits
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "digits"
  config.data.image_size = 32
  config.model.name = "lenet5"
  config.model.activation = "tanh"
  config.model.pool = "avg"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-3
  config.batch_size = 32
  config.eval_batch_size = 512
  config.num_epochs = 20
  config.log_every_steps = 45
  return config
