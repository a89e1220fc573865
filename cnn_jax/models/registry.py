"""The model registry (its own module so model files can import it without cycles)."""

from cnn_jax.registry import Registry

MODELS = Registry("model")
