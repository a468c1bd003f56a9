"""Decoding: KV cache, sampling, and batched generation (SkipDecode builds on these)."""

from phi_jax.decoding.cache import KVCache, init_cache
from phi_jax.decoding.generation import generate

__all__ = ["KVCache", "generate", "init_cache"]
