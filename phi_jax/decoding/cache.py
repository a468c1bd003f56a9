"""The KV cache: keys/values of every layer stacked on a leading layer axis, plus slot metadata.

Slots are shared by the batch: slot j of every row is written at the same step. Rows of a
left-padded batch mark their padding slots with segment id 0, which no query attends.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from phi_jax.models.config import ModelConfig


class KVCache(NamedTuple):
  """k, v: [layers, batch, slots, kv_heads, head_dim] in the compute dtype.

  positions: [batch, slots] int32 position of each filled slot.
  segment_ids: [batch, slots] int32; 0 = empty or padding (never attended).
  index: int32 scalar, the next slot to write.
  """
  k: jax.Array
  v: jax.Array
  positions: jax.Array
  segment_ids: jax.Array
  index: jax.Array

  @property
  def max_len(self) -> int:
    return self.k.shape[2]


def init_cache(cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> KVCache:
  """An empty cache of `max_len` slots for `batch` rows (dtype defaults to the compute dtype)."""
  dtype = jnp.dtype(cfg.dtype if dtype is None else dtype)
  shape = (cfg.num_layers, batch, max_len, cfg.kv_heads, cfg.dim_per_head)
  return KVCache(
      k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
      positions=jnp.zeros((batch, max_len), jnp.int32),
      segment_ids=jnp.zeros((batch, max_len), jnp.int32),
      index=jnp.zeros((), jnp.int32))
