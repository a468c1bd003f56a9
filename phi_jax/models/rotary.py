"""Rotary position embeddings: partial rotary (NeoX rotate_half layout) and LongRoPE.

Dimension i of the rotated part pairs with dimension i + rotary_dim/2; only the first rotary_dim
dims of each head rotate, the rest pass through. Tables are computed in float32 from integer
positions, multiplied by the LongRoPE attention factor, then cast to the compute dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from phi_jax.models.config import ModelConfig


def inv_frequencies(cfg: ModelConfig, long: bool = False) -> np.ndarray:
  """[rotary_dim / 2] float32 inverse frequencies; LongRoPE factors divide them when set."""
  rot = cfg.rot_dim
  exponent = np.arange(0, rot, 2, dtype=np.int64).astype(np.float32) / np.float32(rot)
  inv_freq = np.float32(1.0) / (np.float32(cfg.rope_theta) ** exponent)
  if cfg.long_rope:
    factors = cfg.rope_long_factor if long else cfg.rope_short_factor
    inv_freq = np.float32(1.0) / (np.asarray(factors, np.float32) *
                                  (np.float32(cfg.rope_theta) ** exponent))
  return inv_freq.astype(np.float32)


def use_long_factors(cfg: ModelConfig, positions: jax.Array) -> jax.Array | bool:
  """Whether LongRoPE's long factors apply: the largest position + 1 exceeds the original length.

  This is transformers' rule for a forward pass. Decoding decides once, up front, from the final
  length (see phi_jax.decoding.generation), so a generation never switches factors midway.
  """
  if not cfg.long_rope:
    return False
  return jnp.max(positions) + 1 > cfg.rope_original_max_len


def rotary_tables(cfg: ModelConfig, positions: jax.Array,
                  long: jax.Array | bool = False) -> tuple[jax.Array, jax.Array]:
  """cos, sin tables for `positions` [batch, seq] -> each [batch, seq, rotary_dim] (compute dtype)."""
  short = jnp.asarray(inv_frequencies(cfg, long=False))
  if cfg.long_rope:
    inv_freq = jnp.where(long, jnp.asarray(inv_frequencies(cfg, long=True)), short)
  else:
    inv_freq = short
  freqs = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, rot/2]
  emb = jnp.concatenate([freqs, freqs], axis=-1)
  scale = jnp.float32(cfg.rope_scaling_factor)
  dtype = jnp.dtype(cfg.dtype)
  return (jnp.cos(emb) * scale).astype(dtype), (jnp.sin(emb) * scale).astype(dtype)


def _rotate_half(x: jax.Array) -> jax.Array:
  half = x.shape[-1] // 2
  return jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotates the first rotary_dim dims of x [batch, seq, heads, head_dim]; cos/sin [batch, seq, rot]."""
  rot = cos.shape[-1]
  cos, sin = cos[:, :, None, :], sin[:, :, None, :]
  if rot == x.shape[-1]:
    return x * cos + _rotate_half(x) * sin
  x_rot, x_pass = x[..., :rot], x[..., rot:]
  x_rot = x_rot * cos + _rotate_half(x_rot) * sin
  return jnp.concatenate([x_rot, x_pass], axis=-1)
