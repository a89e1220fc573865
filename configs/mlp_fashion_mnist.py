"""The deep MLP of the layer-wise pre-training papers on Fashion-MNIST: 784-1000-1000-1000-10.

Sigmoid units, as in Bengio et al. (2007) and Vincent et al. (2008); 2,797,010
parameters. Trained from random initialisation here; `layerwise_pretraining`
(python -m experiments.benchmark --suite=layerwise_pretraining --dataset=fashion_mnist)
also pre-trains it layer by layer and fine-tunes it, on 600, 6,000 and 60,000 labels.

python -m experiments.main --config=configs/mlp_fashion_mnist.py --workdir=/tmp/mlp_fm
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "fashion_mnist"
  config.model.name = "mlp"
  config.model.hidden = (1000, 1000, 1000)
  config.model.activation = "sigmoid"
  config.model.dropout = 0.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.batch_size = 100
  config.num_epochs = 2
  return config
