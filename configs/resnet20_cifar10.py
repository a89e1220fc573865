"""He et al.'s CIFAR ResNet-20 on CIFAR-10: the paper's recipe (anchor 0.9125 with augmentation).

SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, 64k iterations (~164 epochs;
a cosine schedule instead of the paper's steps at 32k and 48k).
CIFAR-10 comes from TFDS `cifar10`, which must be prepared where the network
allows (`tfds build cifar10 --file_format=array_record`) or fetched with
--config.data.download=True. The pipeline has no augmentation (random crops and
flips), so expect a few points below the augmented figures.

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
  config.num_epochs = 164
  return config
