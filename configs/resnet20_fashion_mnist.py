"""He et al.'s CIFAR ResNet-20 (option A shortcuts, 0.27M parameters) on Fashion-MNIST.

Runs at 28x28 as it is (stages at 28, 14, 7). The paper's recipe (SGD 0.1,
momentum 0.9, weight decay 1e-4, batch 128) with a cosine schedule, 30 epochs.

python -m experiments.main --config=configs/resnet20_fashion_mnist.py --workdir=workdirs/resnet20_fm
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "fashion_mnist"
  config.model.name = "resnet20"
  config.model.shortcut = "pad"
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_epochs = 1
  config.batch_size = 128
  config.num_epochs = 30
  return config
