"""The parameter-sharing experiment on scikit-learn's 8x8 digits (the quick one).

`parameter_sharing_fashion_mnist`'s network with 3x3 SAME kernels, so the 8x8 images
go 8 -> 4 -> 2 through the two poolings (5x5 VALID would leave nothing). Parameters:
conv 6,090, local (LocallyConnected2D) 85,770, dense 50,826. Batch 32, 20 epochs
(1,438 training images).

python -m experiments.main --config=configs/parameter_sharing_digits.py \
    --config.model.connectivity=conv --workdir=/tmp/sharing_conv_digits
python -m experiments.benchmark --suite=parameter_sharing   # conv, local, dense; 3 seeds
"""

from configs import parameter_sharing_fashion_mnist


def get_config():
  config = parameter_sharing_fashion_mnist.get_config()
  config.data.name = "digits"
  config.model.kernel_size = 3
  config.model.padding = "SAME"
  config.batch_size = 32
  config.eval_batch_size = 512
  config.num_epochs = 20
  config.log_every_steps = 45
  return config
