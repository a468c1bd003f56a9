"""Decoding: KV cache, sampling, decode layouts and batched generation (SkipDecode builds on these).

`generate` is the user's call; `prepare_weights` makes the weights it decodes with, once per
(model, params), e.g. in bfloat16 (generate also keeps those of the last params it saw);
`ensure_weights` passes given DecodeWeights through and prepares plain params.
`generation.prepare(...).run()` is the same compiled program, public for benchmarks and
experiments (`generation.generate_tokens` is the jitted function).
"""

from phi_jax.decoding.cache import KVCache, init_cache
from phi_jax.decoding.early_exit import EarlyExit
from phi_jax.decoding.generation import generate, prepare
from phi_jax.decoding.skipdecode import SkipSchedule
from phi_jax.decoding.weights import DecodeWeights, ensure_weights, prepare_weights

__all__ = ["DecodeWeights", "EarlyExit", "KVCache", "SkipSchedule", "ensure_weights", "generate",
           "init_cache", "prepare", "prepare_weights"]
