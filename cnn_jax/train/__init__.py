"""Training: the train state, the jit steps, optimisers, metrics files, and the loop."""

from cnn_jax.train.loop import setup, train_and_evaluate
from cnn_jax.train.optim import OPTIMIZERS, SCHEDULES, create_optimizer, default_optimizer_config
from cnn_jax.train.steps import TrainState, create_train_state, cross_entropy_loss

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "TrainState",
    "create_optimizer",
    "create_train_state",
    "cross_entropy_loss",
    "default_optimizer_config",
    "setup",
    "train_and_evaluate",
]
