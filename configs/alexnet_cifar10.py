"""AlexNet (3x3/1 conv1 for small inputs) on CIFAR-10.

CIFAR-10 comes from TFDS `cifar10`, which must be prepared where the network
allows (`tfds build cifar10 --file_format=array_record`) or fetched with
--config.data.download=True. The pipeline has no augmentation (random crops and
flips), so expect a few points below the augmented figures.

python -m experiments.main --config=configs/alexnet_cifar10.py --workdir=workdirs/alexnet_c10
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "cifar10"
  config.model.name = "alexnet"
  config.model.stem = "cifar"
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.01
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_epochs = 1
  config.batch_size = 128
  config.num_epochs = 60
  return config
