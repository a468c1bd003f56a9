"""Decoding: KV cache, sampling, decode layouts and batched generation (SkipDecode builds on these).

`generate` is the user's call; `generation.prepare(...).run()` is the same compiled program,
public for benchmarks and experiments (`generation.generate_tokens` is the jitted function).
"""

from phi_jax.decoding.cache import KVCache, init_cache
from phi_jax.decoding.early_exit import EarlyExit
from phi_jax.decoding.generation import generate, prepare
from phi_jax.decoding.skipdecode import SkipSchedule

__all__ = ["EarlyExit", "KVCache", "SkipSchedule", "generate", "init_cache", "prepare"]
