"""Next-token selection: greedy, temperature, top-k and top-p (nucleus), in that order (as HF).

All functions take logits [batch, vocab] float32 and are jit-friendly: top_k and top_p are traced
values, switched on by the static `SamplingMode`, so changing them does not recompile.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp


class SamplingMode(NamedTuple):
  """Static switches (part of the compiled program's identity)."""
  greedy: bool
  use_top_k: bool
  use_top_p: bool


class SamplingParams(NamedTuple):
  """Traced values: temperature (float32), top_k (int32), top_p (float32)."""
  temperature: jax.Array
  top_k: jax.Array
  top_p: jax.Array


def make_sampling(vocab_size: int, temperature: float = 0.0, top_k: Optional[int] = None,
                  top_p: Optional[float] = None) -> tuple[SamplingMode, SamplingParams]:
  """Validates the user's options; temperature 0 means greedy (top_k/top_p then have no effect)."""
  if temperature < 0:
    raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
  if top_k is not None and not 1 <= top_k:
    raise ValueError(f"top_k must be a positive int or None, got {top_k}")
  if top_p is not None and not 0.0 < top_p <= 1.0:
    raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
  greedy = temperature == 0.0
  mode = SamplingMode(greedy=greedy, use_top_k=not greedy and top_k is not None and top_k < vocab_size,
                      use_top_p=not greedy and top_p is not None and top_p < 1.0)
  params = SamplingParams(jnp.float32(temperature if not greedy else 1.0),
                          jnp.int32(min(top_k or vocab_size, vocab_size)),
                          jnp.float32(1.0 if top_p is None else top_p))
  return mode, params


def top_k_filter(logits: jax.Array, k: jax.Array) -> jax.Array:
  """Sets logits below the k-th largest of each row to -inf. [B, V] -> [B, V]."""
  sorted_desc = -jnp.sort(-logits, axis=-1)
  kth = jnp.take_along_axis(sorted_desc, jnp.broadcast_to(k - 1, logits.shape[:-1])[..., None],
                            axis=-1)
  return jnp.where(logits < kth, -jnp.inf, logits)


def top_p_filter(logits: jax.Array, p: jax.Array) -> jax.Array:
  """Keeps the smallest set of most likely tokens whose probability reaches p (at least one)."""
  order = jnp.argsort(-logits, axis=-1)
  sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  keep_sorted = (mass_before < p).at[..., 0].set(True)
  keep = jnp.take_along_axis(keep_sorted, jnp.argsort(order, axis=-1), axis=-1)
  return jnp.where(keep, logits, -jnp.inf)


def sample(logits: jax.Array, rng: jax.Array, mode: SamplingMode,
           params: SamplingParams) -> jax.Array:
  """Picks one token per row: logits [B, V] -> [B] int32."""
  if mode.greedy:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = logits / params.temperature
  if mode.use_top_k:
    logits = top_k_filter(logits, params.top_k)
  if mode.use_top_p:
    logits = top_p_filter(logits, params.top_p)
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)
