"""VGG-11 with BatchNorm (torchvision's vgg11_bn, unchanged) on Fashion-MNIST resized to 32x32.

VGG's five 2x2 pools need at least 32x32, so the 28x28 images are bilinearly
resized to 32x32 on the device (`data.image_size=32`); pool5 is then 1x1 and the
adaptive pool repeats it to 7x7, as torchvision does. (Alternative without
resizing: --config.data.image_size=0 --config.model.stem=cifar, ceil-mode pools.)

python -m experiments.main --config=configs/vgg11_bn_fashion_mnist.py --workdir=workdirs/vgg11_bn_fm
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "fashion_mnist"
  config.data.image_size = 32
  config.model.name = "vgg11_bn"
  config.model.stem = "imagenet"
  config.model.dropout = 0.5
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.02
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_epochs = 1
  config.batch_size = 128
  config.num_epochs = 20
  return config
