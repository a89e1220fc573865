"""The parameter-sharing experiment on Fashion-MNIST: one topology, three connectivities.

Two hidden layers (16 then 32 maps, 5x5 VALID, ReLU, 2x2 max pooling: 28 -> 24 -> 12
-> 8 -> 4) and a linear output; `model.connectivity` chooses how a hidden layer sees
its input:
  conv   local and shared (Conv2D)                                   18,378 parameters
  local  local, not shared (LocallyConnected2D)                   1,065,994 parameters
  dense  neither (Dense, as wide as the conv's pooled maps)       2,993,930 parameters
Adam 1e-3, batch 128, 2 epochs: the `parameter_sharing` suite trains 3 variants x 3 seeds
on 2 CPU cores, where one epoch took conv 34 s, local 229-291 s, dense 16 s (2-core Xeon
shared with other jobs), and scoring the moved test sets ~3 min per seed: about 40 min for
the suite, ~15 min per epoch more or less. `cnn_jax/models/sharing_net.py` says why the
sizes are what they are.

python -m experiments.main --config=configs/parameter_sharing_fashion_mnist.py \
    --config.model.connectivity=local --workdir=/tmp/sharing_local_fm
python -m experiments.benchmark --suite=parameter_sharing --dataset=fashion_mnist
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "fashion_mnist"
  config.model.name = "sharing_net"
  config.model.connectivity = "conv"  # conv | local | dense
  config.model.features = (16, 32)
  config.model.kernel_size = 5
  config.model.padding = "VALID"
  config.model.activation = "relu"
  config.model.pool = "max"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.batch_size = 128
  config.num_epochs = 2
  return config
