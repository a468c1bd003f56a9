"""phi_jax: the phi model family and SkipDecode in JAX/Flax."""

__version__ = "0.1.0"
