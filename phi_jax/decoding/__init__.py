"""Decoding: KV cache, sampling, and batched generation (SkipDecode builds on these)."""

from phi_jax.decoding.cache import KVCache, init_cache
from phi_jax.decoding.early_exit import EarlyExit
from phi_jax.decoding.generation import generate
from phi_jax.decoding.skipdecode import SkipSchedule

__all__ = ["EarlyExit", "KVCache", "SkipSchedule", "generate", "init_cache"]
