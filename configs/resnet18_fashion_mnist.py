"""ResNet-18 (torchvision's, with the small-input stem) on Fashion-MNIST at 28x28.

`stem="cifar"`: one 3x3/1 conv and no max pool, so the four stages run at
28, 14, 7 and 4 pixels (the ImageNet stem would leave 1x1 at stage 4).
SGD + Nesterov, cosine schedule with warm-up, weight decay 5e-4, 30 epochs, no
augmentation. Target: >= 0.93 test accuracy (anchor: ResNet-18 with
augmentation 0.949). About 14k steps of batch 128: minutes on one GPU.

python -m experiments.main --config=configs/resnet18_fashion_mnist.py --workdir=workdirs/resnet18_fm
  (on a GPU add --config.dtype=bfloat16 for speed)

Measured: 6 epochs of this config on the 2-core CPU (bfloat16, one warm-up
epoch) reach 0.9433 test accuracy in 1 h 36 min; metrics, config and command
in benchmarks/results/resnet18_fashion_mnist_cpu/.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "fashion_mnist"
  config.model.name = "resnet18"
  config.model.stem = "cifar"
  config.model.activation = "relu"
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.1
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_epochs = 2
  config.batch_size = 128
  config.num_epochs = 30
  return config
