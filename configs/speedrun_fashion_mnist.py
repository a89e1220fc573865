"""Fashion-MNIST speed run: aiming at >= 0.94 test accuracy in seconds on one GPU.

A compact residual CNN (`compact_resnet`: 3x3 stem, three stages of conv -> max pool ->
BN -> GELU + a two-conv residual block, 64/128/256 kernels, global max pool; 1,940,970
parameters) trained the way the fast CIFAR-10 recipes do (Page's ResNet-9, 2018;
Jordan's airbench, 2024): bfloat16 compute, batch 512, SGD + Nesterov with a linear
warm-up (3 epochs) / linear decay to 0 ("one-cycle") schedule, label smoothing 0.1,
random crops (pad 2) and left-right flips done on the device inside the step. The loop
does no work it does not need: it logs at each epoch's end only, evaluates and
checkpoints once at the end, and writes no TensorBoard files.

Cost: 431 MFLOP per training image (XLA's count for one step, forward + backward),
so 12 epochs of 60,000 are 3.1e14 FLOP: about 1.3 s at 30% of an H100's bf16 peak
(790 TFLOP/s), more likely 2-4 s for convolutions this small.

python -m experiments.main --config=configs/speedrun_fashion_mnist.py --workdir=workdirs/speedrun_fm
  (other budgets: --config.num_epochs=10 or 16; warm-up stays 3 epochs)

steps_per_call = 1: train_steps writes its K steps out, and compiling them costs about
K times more than one (XLA:CPU, bf16, this step: K=1 43 s, K=4 63 s, K=13 123 s on a
contended 2-core machine), while with no per-step host transfer the asynchronous
dispatch of one step (well under 1 ms) hides behind its ~2 ms of GPU work. On a GPU
try --config.steps_per_call=13 (a divisor of the 117 steps per epoch, so one program).

Measured on the 2-core CPU while other jobs held it (load average 10-14; float32,
--config.num_epochs=1 --config.optimizer.warmup_epochs=0.25 --config.log_every_steps=13):
steps 1-13 (with compilation) 11 img/s, train loss 1.91 / accuracy 0.40; steps 14-26
33 img/s, 0.78 / 0.75; steps 27-39 24 img/s, 0.60 / 0.79. The whole run, seed 0, bf16, on
that CPU: test accuracy 0.9443, 151 min of training on a shared host (idle rate about
130 img/s, 93 min; benchmarks/results/speedrun_fashion_mnist_cpu.txt).
GPU (one H200, 3 seeds, bfloat16): mean test accuracy 0.9432, 13.0 s from command to
summary with a warm compilation cache, 26.6 s with an empty one
(benchmarks/results/speedrun_fashion_mnist_gpu/).
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
  config.steps_per_call = 1  # see the docstring
  # Log at each epoch's end only (calls also end at every log step), evaluate once at
  # the end whatever num_epochs is, and checkpoint only at the end.
  config.log_every_steps = 1_000_000
  config.eval_every_epochs = 1_000_000
  config.checkpoint_every_steps = 0
  config.tensorboard = False
  return config
