"""Attention, the one place it is computed: masks, the context every layer shares, scores,
softmax and weighted values (training, prefill and decode, in every KV-cache layout).

Shapes: B batch, T query positions, S key slots, H query heads, K kv heads, G = H / K, Dh head_dim.
Without a cache the keys are the T inputs themselves (S = T). With a KV cache the keys are the
cache's S slots, of which the layer first writes its T new entries at `cache_index`.
QK^T and the softmax run in float32 whatever the compute dtype (phi-2 overflows in fp16 otherwise).

Key orders (`attend`): how the keys/values a layer attends over are laid out, named by the cache
that holds them (`LayerKV.key_order`):
  'bskd': [B, S, K, Dh], the model's own (no cache, and `StackedKV`, the [L, B, S, K, Dh] cache).
  'head_major': [B * K, S, Dh], a decoding layout (phi_jax.decoding.layouts.HeadMajorKV): batch
    and kv heads merged into the one batch axis of the einsums, which then read the cache without
    a transpose (an axis that XLA has to reshape, or drop when it has size 1, makes XLA:CPU copy
    the cache every step).
"""

from __future__ import annotations

from typing import Callable, ClassVar, NamedTuple, Optional, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from phi_jax.models import rotary
from phi_jax.models.config import ModelConfig
from phi_jax.models.layers import constrain, dense

MASK_VALUE = float(jnp.finfo(jnp.float32).min)
KEY_ORDERS = ("bskd", "head_major")


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


def attention_inputs(cfg: ModelConfig, positions: jax.Array, segment_ids: jax.Array,
                     cache=None, long_rope: Optional[jax.Array | bool] = None
                     ) -> tuple[AttentionContext, jax.Array, jax.Array]:
  """What every layer's attention needs for one call: (ctx, key positions, key segment ids).

  positions, segment_ids [B, T] int32 of the new tokens. cache: None, or any cache with slot
  metadata `positions`, `segment_ids` [B, S] and `index` (decoding.KVCache, or a decoding
  layout's cache). Without a cache the keys are those T tokens; with one they are its S slots
  once this call's entries are written at cache.index (k_pos, k_seg [B, S] are then the cache's
  updated slot metadata).
  """
  batch, length = positions.shape
  q_slots = jnp.arange(length, dtype=jnp.int32)
  if cache is None:
    k_slots, k_seg, k_pos, index = q_slots, segment_ids, positions, None
  else:
    index = jnp.asarray(cache.index, jnp.int32)
    q_slots = q_slots + index
    k_seg = jax.lax.dynamic_update_slice(cache.segment_ids, segment_ids, (0, index))
    k_pos = jax.lax.dynamic_update_slice(cache.positions, positions, (0, index))
    k_slots = jnp.arange(k_seg.shape[1], dtype=jnp.int32)
  mask = attention_mask(cfg, q_slots, k_slots, segment_ids, k_seg, positions, k_pos)
  mask = mask[:, None, None]  # [B, 1, 1, T, S]
  sparse = None
  if cfg.block_sparse:
    sparse = block_sparse_mask(cfg, positions, k_pos)
    sparse = sparse.reshape(batch, cfg.kv_heads, cfg.num_heads // cfg.kv_heads, *sparse.shape[2:])
  if long_rope is None:
    long_rope = rotary.use_long_factors(cfg, positions)
  cos, sin = rotary.rotary_tables(cfg, positions, long_rope)
  return AttentionContext(cos, sin, mask, sparse, index), k_pos, k_seg


# ---- the KV cache a layer reads and writes -------------------------------------------------------


class LayerKV(Protocol):
  """What `Attention` needs of a KV cache: write a layer's new entries, return what it attends.

  key_order: one of KEY_ORDERS, the layout of the keys/values `update` returns.
  update(layer_idx, k, v, index): writes k, v [B, T, K, Dh] at slots index .. index + T - 1 of
    layer layer_idx; returns (the updated cache, keys, values of that layer in key_order).
  """
  key_order: ClassVar[str]

  def update(self, layer_idx: jax.Array, k: jax.Array, v: jax.Array,
             index: jax.Array) -> tuple["LayerKV", jax.Array, jax.Array]:
    ...


class StackedKV(NamedTuple):
  """The model's cache layout: the keys/values of all layers, k, v [L, B, S, K, Dh].

  It rides in the layer scan's carry; each layer writes its slice with dynamic_update_slice at
  (layer, 0, index) and reads it back, so XLA updates it in place.
  """
  k: jax.Array
  v: jax.Array

  key_order = "bskd"  # a class attribute, not a field (see LayerKV)

  def update(self, layer_idx: jax.Array, k: jax.Array, v: jax.Array,
             index: jax.Array) -> tuple["StackedKV", jax.Array, jax.Array]:
    start = (layer_idx, 0, index, 0, 0)
    new = StackedKV(jax.lax.dynamic_update_slice(self.k, k[None].astype(self.k.dtype), start),
                    jax.lax.dynamic_update_slice(self.v, v[None].astype(self.v.dtype), start))
    return (new, jax.lax.dynamic_index_in_dim(new.k, layer_idx, 0, keepdims=False),
            jax.lax.dynamic_index_in_dim(new.v, layer_idx, 0, keepdims=False))


# ---- attention itself ---------------------------------------------------------------------------


def attend(cfg: ModelConfig, q: jax.Array, keys: jax.Array, values: jax.Array,
           ctx: AttentionContext, layer_idx: jax.Array, key_order: str = "bskd",
           dropout: Optional[Callable[[jax.Array], jax.Array]] = None) -> jax.Array:
  """softmax(q k^T * scale, masked) v: rotated queries q [B, T, H, Dh] -> [B, T, H, Dh].

  keys, values: [B, S, K, Dh] (key_order 'bskd') or [B * K, S, Dh] ('head_major').
  ctx.mask (and on sparse layers ctx.sparse_mask) says which keys each query sees.
  dropout: applied to the attention probabilities (training), or None.
  """
  heads, kv_heads, head_dim = cfg.num_heads, cfg.kv_heads, cfg.dim_per_head
  groups = heads // kv_heads
  batch, length = q.shape[:2]
  q = q.reshape(batch, length, kv_heads, groups, head_dim)
  if key_order == "bskd":
    scores = jnp.einsum("btkgd,bskd->bkgts", q, keys, preferred_element_type=jnp.float32)
  elif key_order == "head_major":  # one batch axis n = (b, k); queries (g, t) of each n in a row
    qn = jnp.transpose(q, (0, 2, 3, 1, 4)).reshape(batch * kv_heads, groups * length, head_dim)
    scores = jnp.einsum("nqd,nsd->nqs", qn, keys, preferred_element_type=jnp.float32)
    scores = scores.reshape(batch, kv_heads, groups, length, -1)
  else:
    raise ValueError(f"key_order {key_order!r} is not one of {KEY_ORDERS}")
  scores = scores.astype(jnp.float32) * jnp.float32(cfg.softmax_scale)  # [B, K, G, T, S]
  mask = ctx.mask
  if ctx.sparse_mask is not None:
    mask = jnp.where(is_sparse_layer(layer_idx), mask & ctx.sparse_mask, mask)
  scores = jnp.where(mask, scores, MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1).astype(jnp.dtype(cfg.dtype))
  if dropout is not None:
    probs = dropout(probs)
  if key_order == "bskd":
    out = jnp.einsum("bkgts,bskd->btkgd", probs, values.astype(probs.dtype))
  else:
    pn = probs.reshape(batch * kv_heads, groups * length, -1)
    out = jnp.einsum("nqs,nsd->nqd", pn, values.astype(probs.dtype))
    out = jnp.transpose(out.reshape(batch, kv_heads, groups, length, head_dim), (0, 3, 1, 2, 4))
  return out.reshape(batch, length, heads, head_dim)


class Attention(nn.Module):
  """Multi-head attention with GQA, partial rotary, optional KV cache. x: [B, T, D].

  kernel_layout: the projections' weight layout (layers.Dense; 'in_out' but in decoding).
  """

  cfg: ModelConfig
  deterministic: bool = True
  kernel_layout: str = "in_out"

  def setup(self):
    cfg, layout = self.cfg, self.kernel_layout
    heads, kv_heads, head_dim = cfg.num_heads, cfg.kv_heads, cfg.dim_per_head
    self.q = dense(cfg, (heads, head_dim), -1, ("embed", "heads", "head_dim"),
                   bias=cfg.attn_bias, name=None, kernel_layout=layout)
    self.k = dense(cfg, (kv_heads, head_dim), -1, ("embed", "kv_heads", "head_dim"),
                   bias=cfg.attn_bias, name=None, kernel_layout=layout)
    self.v = dense(cfg, (kv_heads, head_dim), -1, ("embed", "kv_heads", "head_dim"),
                   bias=cfg.attn_bias, name=None, kernel_layout=layout)
    self.o = dense(cfg, cfg.d_model, (-2, -1), ("heads", "head_dim", "embed"),
                   bias=cfg.attn_bias, name=None, kernel_layout=layout)

  def project_kv(self, x: jax.Array, ctx: AttentionContext) -> tuple[jax.Array, jax.Array]:
    """The rotated keys and values [B, T, K, Dh] of the input x [B, T, D] (what the layer writes
    to its cache; decoding also fills a skipped layer's entries with it)."""
    act = ("activation_batch", "activation_length", "activation_kv_heads", None)
    k = constrain(self.k(x), act)
    v = constrain(self.v(x), act)
    return rotary.apply_rotary(k, ctx.cos, ctx.sin), v

  @nn.compact
  def __call__(self, x: jax.Array, ctx: AttentionContext, layer_idx: jax.Array,
               kv: Optional[LayerKV]) -> tuple[jax.Array, Optional[LayerKV]]:
    cfg = self.cfg
    q = constrain(self.q(x), ("activation_batch", "activation_length", "activation_heads", None))
    q = rotary.apply_rotary(q, ctx.cos, ctx.sin)
    k, v = self.project_kv(x, ctx)
    if kv is None:
      keys, values, key_order = k, v, "bskd"
    else:  # write the new entries, then attend over every cache slot of this layer
      kv, keys, values = kv.update(layer_idx, k, v, ctx.cache_index)
      key_order = kv.key_order
    dropout = None
    if cfg.attn_dropout > 0 and not self.deterministic:
      dropout = lambda p: nn.Dropout(cfg.attn_dropout)(p, deterministic=False)  # noqa: E731
    out = attend(cfg, q, keys, values, ctx, layer_idx, key_order, dropout)
    out = constrain(out, ("activation_batch", "activation_length", "activation_heads", None))
    return self.o(out), kv
