"""VGG-11-BN (torchvision's, unchanged: 32x32 is its smallest input) on CIFAR-10.

CIFAR-10 comes from TFDS `cifar10`, which must be prepared where the network
allows (`tfds build cifar10 --file_format=array_record`) or fetched with
--config.data.download=True. The pipeline has no augmentation (random crops and
flips), so expect a few points below the augmented figures.

python -m experiments.main --config=configs/vgg11_bn_cifar10.py --workdir=workdirs/vgg11_bn_c10
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "cifar10"
  config.model.name = "vgg11_bn"
  config.model.stem = "imagenet"
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.02
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_epochs = 1
  config.batch_size = 128
  config.num_epochs = 60
  return config
