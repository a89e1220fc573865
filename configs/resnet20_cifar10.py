"""He et al.'s CIFAR ResNet-20 on CIFAR-10: the paper's recipe (anchor 0.9125 with augmentation).

SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, 64k iterations (~164 epochs;
a cosine schedule instead of the paper's steps at 32k and 48k).
CIFAR-10 is read from the official cifar-10-python.tar.gz in --config.data.data_dir
(or $CNN_JAX_DATA, ~/.cache/cnn_jax; cnn_jax/data/cifar.py), or from a prepared TFDS
`cifar10` (--config.data.download=True lets TFDS fetch it). Augmentation as in the
papers: random 32x32 crops of the 4-pixel zero-padded image and horizontal flips.

python -m experiments.main --config=configs/resnet20_cifar10.py --workdir=workdirs/resnet20_c10
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "cifar10"
  config.model.name = "resnet20"
  config.model.shortcut = "pad"
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_epochs = 1
  config.batch_size = 128
  config.data.augment = ("random_crop(pad=4)", "flip_lr")
  config.num_epochs = 164
  return config
