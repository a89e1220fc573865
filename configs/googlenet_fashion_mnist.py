"""GoogLeNet (torchvision's, BatchNorm, with the small-input stem) on Fashion-MNIST at 28x28.

`stem="cifar"`: conv1 3x3/1 and no first max pool, so inception 3 runs at 14x14,
4 at 7x7 and 5 at 4x4. Both auxiliary heads, their losses weighted 0.3 as in
the paper (`aux_loss_weight`; set it to 0 and `model.aux_logits=False` to train
the main head only). Anchor: GoogLeNet, cross-entropy 0.937.

python -m experiments.main --config=configs/googlenet_fashion_mnist.py \
    --workdir=workdirs/googlenet_fm
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "fashion_mnist"
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
  config.num_epochs = 30
  return config
