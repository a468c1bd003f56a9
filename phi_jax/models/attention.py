"""Attention: masks (causal, segments, sliding window, block-sparse) and the GQA attention layer.

Shapes: B batch, T query positions, S key slots, H query heads, K kv heads, G = H / K, Dh head_dim.
Without a cache the keys are the T inputs themselves (S = T). With a KV cache the keys are the
cache's S slots, of which the layer first writes its T new entries at `cache_index`.
QK^T and the softmax run in float32 whatever the compute dtype (phi-2 overflows in fp16 otherwise).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from phi_jax.models import rotary
from phi_jax.models.config import ModelConfig
from phi_jax.models.layers import constrain, dense

MASK_VALUE = float(jnp.finfo(jnp.float32).min)


class AttentionContext(NamedTuple):
  """Per-forward inputs shared by every layer (broadcast over the layer scan).

  cos, sin: [B, T, rotary_dim] rotary tables of the query/new-key positions.
  mask: [B, 1, 1, T, S] bool, True where a query may attend a key.
  sparse_mask: [B, K, G, T, S] bool block-sparse mask (phi-3-small even layers), or None.
  cache_index: int32 scalar slot where the T new keys are written (None without a cache).
  """
  cos: jax.Array
  sin: jax.Array
  mask: jax.Array
  sparse_mask: Optional[jax.Array]
  cache_index: Optional[jax.Array]


def attention_mask(cfg: ModelConfig, q_slots: jax.Array, k_slots: jax.Array, q_seg: jax.Array,
                   k_seg: jax.Array, q_pos: jax.Array, k_pos: jax.Array) -> jax.Array:
  """[B, T, S] bool: causal in slot order, same non-zero segment, within the sliding window.

  q_slots [T], k_slots [S]: slot indices (sequence index, or cache slot).
  q_seg [B, T], k_seg [B, S]: segment ids, 0 marks padding (never attended).
  q_pos [B, T], k_pos [B, S]: positions, used for the sliding window
  (a query at p sees keys at p - sliding_window < k <= p).
  """
  mask = k_slots[None, None, :] <= q_slots[None, :, None]
  mask = mask & (q_seg[:, :, None] == k_seg[:, None, :]) & (k_seg[:, None, :] != 0)
  if cfg.sliding_window is not None:
    mask = mask & (q_pos[:, :, None] - k_pos[:, None, :] < cfg.sliding_window)
  return mask


def block_sparse_mask(cfg: ModelConfig, q_pos: jax.Array, k_pos: jax.Array) -> jax.Array:
  """phi-3-small's per-head block pattern -> [B, H, T, S] bool (combine with the causal mask).

  Key block j is visible to query block i of head h iff j <= i and
  (i - j < sparse_local_blocks or (j + h + 1) % sparse_vert_stride == 0).
  """
  q_block = (q_pos // cfg.sparse_block_size)[:, None, :, None]
  k_block = (k_pos // cfg.sparse_block_size)[:, None, None, :]
  heads = jnp.arange(cfg.num_heads)[None, :, None, None]
  local = (q_block - k_block) < cfg.sparse_local_blocks
  vertical = (k_block + heads + 1) % cfg.sparse_vert_stride == 0
  return (k_block <= q_block) & (local | vertical)


def is_sparse_layer(layer_idx: jax.Array) -> jax.Array:
  """phi-3-small: block-sparse on 0-indexed layers 0, 2, 4, ... ((idx + 1) % 2 != 0)."""
  return (layer_idx + 1) % 2 != 0


class KVState(NamedTuple):
  """The stacked key/value cache of all layers: k, v [L, B, S, K, Dh].

  Or, given to one layer of the unscanned model (see transformer.unscanned_cache), that layer's own
  cache, head-major: k, v [B * K, S, Dh], which the attention einsums read without a transpose
  (batch and kv heads merged into the one batch axis of those einsums: an axis that XLA has to
  reshape, or drop when it has size 1, makes XLA:CPU copy the cache every step).
  """
  k: jax.Array
  v: jax.Array


def write_head_major(kv: KVState, k: jax.Array, v: jax.Array, index: jax.Array) -> KVState:
  """Writes new keys/values k, v [B, T, K, Dh] into one layer's head-major cache
  (k, v [B * K, S, Dh]) at slots index .. index + T - 1."""
  def write(cache, new):
    new = jnp.swapaxes(new, 1, 2).reshape(-1, new.shape[1], new.shape[-1])
    return jax.lax.dynamic_update_slice(cache, new.astype(cache.dtype), (0, index, 0))

  return KVState(write(kv.k, k), write(kv.v, v))


def project_kv(cfg: ModelConfig, params, x: jax.Array, ctx: AttentionContext
               ) -> tuple[jax.Array, jax.Array]:
  """The rotated keys and values [B, T, K, Dh] that `Attention` with `params` makes from its
  input x [B, T, D] (same projections; used to fill a skipped layer's cache from a hidden state)."""
  kv_heads, head_dim = cfg.kv_heads, cfg.dim_per_head
  proj = {name: dense(cfg, (kv_heads, head_dim), -1, ("embed", "kv_heads", "head_dim"),
                      bias=cfg.attn_bias, name=None).apply({"params": params[name]}, x)
          for name in ("k", "v")}
  return rotary.apply_rotary(proj["k"], ctx.cos, ctx.sin), proj["v"]


class Attention(nn.Module):
  """Multi-head attention with GQA, partial rotary, optional KV cache. x: [B, T, D]."""

  cfg: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, ctx: AttentionContext, layer_idx: jax.Array,
               kv: Optional[KVState]) -> tuple[jax.Array, Optional[KVState]]:
    cfg = self.cfg
    heads, kv_heads, head_dim = cfg.num_heads, cfg.kv_heads, cfg.dim_per_head
    groups = heads // kv_heads
    q = dense(cfg, (heads, head_dim), -1, ("embed", "heads", "head_dim"), bias=cfg.attn_bias,
              name="q")(x)
    k = dense(cfg, (kv_heads, head_dim), -1, ("embed", "kv_heads", "head_dim"),
              bias=cfg.attn_bias, name="k")(x)
    v = dense(cfg, (kv_heads, head_dim), -1, ("embed", "kv_heads", "head_dim"),
              bias=cfg.attn_bias, name="v")(x)
    q = constrain(q, ("activation_batch", "activation_length", "activation_heads", None))
    k = constrain(k, ("activation_batch", "activation_length", "activation_kv_heads", None))
    v = constrain(v, ("activation_batch", "activation_length", "activation_kv_heads", None))
    q = rotary.apply_rotary(q, ctx.cos, ctx.sin)
    k = rotary.apply_rotary(k, ctx.cos, ctx.sin)

    own = kv is not None and kv.k.ndim == 3  # this layer's own head-major cache [B * K, S, Dh]
    if own:
      kv = write_head_major(kv, k, v, ctx.cache_index)
      keys, values = kv.k, kv.v
    elif kv is not None:  # write the new entries, then attend over every cache slot of this layer
      start = (layer_idx, 0, ctx.cache_index, 0, 0)
      kv = KVState(jax.lax.dynamic_update_slice(kv.k, k[None].astype(kv.k.dtype), start),
                   jax.lax.dynamic_update_slice(kv.v, v[None].astype(kv.v.dtype), start))
      keys = jax.lax.dynamic_index_in_dim(kv.k, layer_idx, 0, keepdims=False)
      values = jax.lax.dynamic_index_in_dim(kv.v, layer_idx, 0, keepdims=False)
    else:
      keys, values = k, v

    batch, length = q.shape[:2]
    q = q.reshape(batch, length, kv_heads, groups, head_dim)
    if own:  # one batch axis n = (b, k) as in the cache; queries (g, t) of each n in a row
      qn = jnp.transpose(q, (0, 2, 3, 1, 4)).reshape(batch * kv_heads, groups * length, head_dim)
      scores = jnp.einsum("nqd,nsd->nqs", qn, keys, preferred_element_type=jnp.float32)
      scores = scores.reshape(batch, kv_heads, groups, length, -1)
    else:
      scores = jnp.einsum("btkgd,bskd->bkgts", q, keys, preferred_element_type=jnp.float32)
    scores = scores.astype(jnp.float32) * jnp.float32(cfg.softmax_scale)
    mask = ctx.mask
    if ctx.sparse_mask is not None:
      mask = jnp.where(is_sparse_layer(layer_idx), mask & ctx.sparse_mask, mask)
    scores = jnp.where(mask, scores, MASK_VALUE)
    probs = jax.nn.softmax(scores, axis=-1).astype(jnp.dtype(cfg.dtype))
    if cfg.attn_dropout > 0 and not self.deterministic:
      probs = nn.Dropout(cfg.attn_dropout)(probs, deterministic=False)
    if own:
      pn = probs.reshape(batch * kv_heads, groups * length, -1)
      out = jnp.einsum("nqs,nsd->nqd", pn, values.astype(probs.dtype))
      out = jnp.transpose(out.reshape(batch, kv_heads, groups, length, head_dim), (0, 3, 1, 2, 4))
    else:
      out = jnp.einsum("bkgts,bskd->btkgd", probs, values.astype(probs.dtype))
    out = out.reshape(batch, length, heads, head_dim)
    out = constrain(out, ("activation_batch", "activation_length", "activation_heads", None))
    out = dense(cfg, cfg.d_model, (-2, -1), ("heads", "head_dim", "embed"), bias=cfg.attn_bias,
                name="o")(out)
    return out, kv
