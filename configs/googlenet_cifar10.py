"""GoogLeNet (small-input stem, auxiliary heads weighted 0.3) on CIFAR-10.

CIFAR-10 is read from the official cifar-10-python.tar.gz in --config.data.data_dir
(or $CNN_JAX_DATA, ~/.cache/cnn_jax; cnn_jax/data/cifar.py), or from a prepared TFDS
`cifar10` (--config.data.download=True lets TFDS fetch it). Augmentation as in the
papers: random 32x32 crops of the 4-pixel zero-padded image and horizontal flips.

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
  config.data.augment = ("random_crop(pad=4)", "flip_lr")
  config.num_epochs = 60
  return config
