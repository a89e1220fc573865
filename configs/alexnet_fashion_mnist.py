"""AlexNet (torchvision's, with the small-input conv1) on Fashion-MNIST at 28x28.

The ImageNet conv1 (11x11, stride 4) needs inputs of at least 63x63;
`stem="cifar"` makes it 3x3/1 and keeps the rest: 28 -> 13 -> 6 -> 2 (pool5)
-> 6x6 (adaptive pool). No BatchNorm, so a smaller learning rate than the ResNets.
(Alternative: --config.model.stem=imagenet --config.data.image_size=64.)

python -m experiments.main --config=configs/alexnet_fashion_mnist.py --workdir=workdirs/alexnet_fm
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "fashion_mnist"
  config.model.name = "alexnet"
  config.model.stem = "cifar"
  config.model.dropout = 0.5
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.01
  config.optimizer.momentum = 0.9
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_epochs = 1
  config.batch_size = 128
  config.num_epochs = 20
  return config
