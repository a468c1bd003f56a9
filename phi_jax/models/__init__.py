"""phi-family models: config, presets, and the Flax Transformer."""

from phi_jax.models import presets
from phi_jax.models.config import ModelConfig
from phi_jax.models.transformer import Transformer

__all__ = ["ModelConfig", "Transformer", "presets"]
