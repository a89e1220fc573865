"""GoogLeNet (small-input stem, auxiliary heads weighted 0.3) on CIFAR-10.

CIFAR-10 comes from TFDS `cifar10`, which must be prepared where the network
allows (`tfds build cifar10 --file_format=array_record`) or fetched with
--config.data.download=True. The pipeline has no augmentation (random crops and
flips), so expect a few points below the augmented figures.

python -m experiments.main --config=configs/googlenet_cifar10.py --workdir=workdirs/googlenet_c10
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "cifar10"
  config.model.name = "googlenet"
  config.model.stem = "cifar"
  config.model.aux_logits = True
  config.aux_loss_weight = 0.3  # Szegedy et al. 2015
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_epochs = 2
  config.batch_size = 128
  config.num_epochs = 60
  return config
