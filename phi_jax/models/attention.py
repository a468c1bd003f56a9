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
  'head_major_blocks': `KVBlocks`, the head-major slots split into consecutive blocks [B * K,
    S_i, Dh] held in buffers of their own (phi_jax.decoding.layouts.BlockedKV): with 'xla' a query
    reads only the blocks up to its last filled slot (`_attend_filled_blocks`: a lax.cond per
    block), so a decode step does not read the empty end of the cache; other implementations
    concatenate the blocks.

Implementations (`ModelConfig.attention_impl`, resolved per call by `resolve_impl`), all with the
same masks (causal slot order, segment ids, sliding window, block-sparse layers, GQA, KV cache):
  'xla': the scores [B, K, G, T, S] in full (exact, simple; O(T * S) memory).
  'blockwise': attention_blockwise.py, an online softmax over key blocks with a recomputing
    custom_vjp: O(T) memory in the forward and the backward, on every backend.
  'cudnn': jax.nn.dot_product_attention(implementation='cudnn') (NVIDIA GPUs), see `_attend_cudnn`
    for what it hands to 'blockwise'.
  'splash': Pallas splash attention (TPU), see `_attend_splash` for what it hands to 'blockwise'.
  'auto': 'xla' when T * S <= AUTO_XLA_MAX_SCORES (decode steps, short sequences); otherwise
    'cudnn' on a CUDA GPU, 'splash' on a TPU and 'blockwise' elsewhere (the CPU). With
    `ModelConfig.attention_block` set, a CPU call with more queries than one block runs
    'blockwise' at any size (the skipped causal blocks make it faster than 'xla' there).
A query that sees no key (a padding query) gets the mean of all S values in every
implementation: what the 'xla' softmax over S equally masked scores gives.
"""

from __future__ import annotations

import functools
from typing import Callable, ClassVar, NamedTuple, Optional, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp

from phi_jax.models import attention_blockwise, rotary
from phi_jax.models.config import ModelConfig
from phi_jax.models.layers import constrain, dense

MASK_VALUE = attention_blockwise.MASK_VALUE  # float32's most negative value
KEY_ORDERS = ("bskd", "head_major", "head_major_blocks")
# 'auto' keeps 'xla' while the scores of one head, T * S, have at most this many entries (e.g.
# T = S = 1024, or any decode step); above it the [B, H, T, S] float32 scores dominate memory.
AUTO_XLA_MAX_SCORES = 1 << 20
BLOCKWISE_QUERY_BLOCK = 512  # block sizes of the 'blockwise' implementation
BLOCKWISE_KEY_BLOCK = 512


class MaskInputs(NamedTuple):
  """What the masks are computed from (every implementation computes them from these).

  q_slots [T], k_slots [S]: int32 slot indices (sequence index, or cache slot); causal in them.
  q_seg [B, T], k_seg [B, S]: segment ids, 0 = padding. q_pos [B, T], k_pos [B, S]: positions.
  """
  q_slots: jax.Array
  k_slots: jax.Array
  q_seg: jax.Array
  k_seg: jax.Array
  q_pos: jax.Array
  k_pos: jax.Array


class AttentionContext(NamedTuple):
  """Per-forward inputs shared by every layer (broadcast over the layer scan).

  cos, sin: [B, T, rotary_dim] rotary tables of the query/new-key positions.
  mask: [B, 1, 1, T, S] bool, True where a query may attend a key; built only when the call
    resolves to the 'xla' implementation (else None: the others never build a [T, S] mask).
  sparse_mask: [B, K, G, T, S] bool block-sparse mask (phi-3-small even layers), or None (also
    None when mask is).
  cache_index: int32 scalar slot where the T new keys are written (None without a cache).
  inputs: the `MaskInputs` every mask is computed from.
  """
  cos: jax.Array
  sin: jax.Array
  mask: Optional[jax.Array]
  sparse_mask: Optional[jax.Array]
  cache_index: Optional[jax.Array]
  inputs: MaskInputs


def resolve_impl(cfg: ModelConfig, q_len: int, kv_len: int, backend: Optional[str] = None) -> str:
  """The implementation a call with q_len queries and kv_len keys runs (see the module docstring;
  'cudnn' and 'splash' still hand unsupported cases to 'blockwise' inside `attend`)."""
  impl = cfg.attention_impl
  if impl != "auto":
    return impl
  backend = jax.default_backend() if backend is None else backend
  if q_len * kv_len <= AUTO_XLA_MAX_SCORES:
    if backend == "cpu" and 0 < cfg.attention_block < q_len:
      return "blockwise"  # an explicit block size: skip the causal blocks (faster on XLA:CPU)
    return "xla"
  if backend == "gpu" and _is_cuda():
    return "cudnn"
  if backend == "tpu":
    return "splash"
  return "blockwise"


def _is_cuda() -> bool:
  try:
    return "cuda" in jax.devices()[0].client.platform_version.lower()
  except Exception:  # noqa: BLE001 - no device information: not known to be CUDA
    return False


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
  length = positions.shape[1]
  q_slots = jnp.arange(length, dtype=jnp.int32)
  if cache is None:
    k_slots, k_seg, k_pos, index = q_slots, segment_ids, positions, None
  else:
    index = jnp.asarray(cache.index, jnp.int32)
    q_slots = q_slots + index
    k_seg = jax.lax.dynamic_update_slice(cache.segment_ids, segment_ids, (0, index))
    k_pos = jax.lax.dynamic_update_slice(cache.positions, positions, (0, index))
    k_slots = jnp.arange(k_seg.shape[1], dtype=jnp.int32)
  inputs = MaskInputs(q_slots, k_slots, segment_ids, k_seg, positions, k_pos)
  mask = sparse = None
  if resolve_impl(cfg, length, k_seg.shape[1]) == "xla":
    mask, sparse = dense_masks(cfg, inputs)
  if long_rope is None:
    long_rope = rotary.use_long_factors(cfg, positions)
  cos, sin = rotary.rotary_tables(cfg, positions, long_rope)
  return AttentionContext(cos, sin, mask, sparse, index, inputs), k_pos, k_seg


def dense_masks(cfg: ModelConfig, inputs: MaskInputs
                ) -> tuple[jax.Array, Optional[jax.Array]]:
  """The full masks of the 'xla' implementation: ([B, 1, 1, T, S] bool, the block-sparse
  [B, K, G, T, S] bool or None)."""
  mask = attention_mask(cfg, *inputs)[:, None, None]
  sparse = None
  if cfg.block_sparse:
    sparse = block_sparse_mask(cfg, inputs.q_pos, inputs.k_pos)
    batch, _, length, slots = sparse.shape
    sparse = sparse.reshape(batch, cfg.kv_heads, cfg.num_heads // cfg.kv_heads, length, slots)
  return mask, sparse


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


class KVBlocks(NamedTuple):
  """Keys (or values) of key order 'head_major_blocks': blocks[i] [B * K, S_i, Dh] holds slots
  sum(S_<i) .. sum(S_<=i) - 1, in a buffer of its own (so reading a block copies nothing).

  `shape` and `dtype` are those of the concatenated [B * K, S, Dh] keys (what callers size
  attention by); `full()` makes that concatenation (a copy).
  """
  blocks: tuple[jax.Array, ...]

  @property
  def shape(self) -> tuple[int, int, int]:
    first = self.blocks[0]
    return (first.shape[0], sum(b.shape[1] for b in self.blocks), first.shape[2])

  @property
  def dtype(self):
    return self.blocks[0].dtype

  def full(self) -> jax.Array:
    """The blocks concatenated: [B * K, S, Dh] (a copy)."""
    return self.blocks[0] if len(self.blocks) == 1 else jnp.concatenate(self.blocks, axis=1)


# ---- attention itself ---------------------------------------------------------------------------


def attend(cfg: ModelConfig, q: jax.Array, keys: jax.Array, values: jax.Array,
           ctx: AttentionContext, layer_idx: jax.Array, key_order: str = "bskd",
           dropout: Optional[Callable[[jax.Array], jax.Array]] = None,
           dropout_rng: Optional[jax.Array] = None, impl: Optional[str] = None) -> jax.Array:
  """softmax(q k^T * scale, masked) v: rotated queries q [B, T, H, Dh] -> [B, T, H, Dh].

  keys, values: [B, S, K, Dh] (key_order 'bskd'), [B * K, S, Dh] ('head_major') or `KVBlocks`
    of [B * K, S_i, Dh] ('head_major_blocks': with 'xla', no dropout and a KV cache, only the
    blocks up to the last query's slot are read; otherwise they are concatenated).
  ctx.inputs (ctx.mask for 'xla' when built) says which keys each query sees; on sparse layers
  also the block-sparse pattern.
  dropout: 'xla' applies it to the attention probabilities (training), or None.
  dropout_rng: the PRNG key of the other implementations' dropout (rate cfg.attn_dropout),
    or None for no dropout.
  impl: the implementation; None = resolve_impl(cfg, T, S).
  """
  if key_order not in KEY_ORDERS:
    raise ValueError(f"key_order {key_order!r} is not one of {KEY_ORDERS}")
  kv_len = keys.shape[1]
  impl = resolve_impl(cfg, q.shape[1], kv_len) if impl is None else impl
  if key_order == "head_major_blocks":
    if impl == "xla" and dropout is None and ctx.cache_index is not None:
      return _attend_filled_blocks(cfg, q, keys, values, ctx, layer_idx)
    keys, values, key_order = keys.full(), values.full(), "head_major"
  if impl == "xla":
    return _attend_xla(cfg, q, keys, values, ctx, layer_idx, key_order, dropout)
  heads, kv_heads, head_dim = cfg.num_heads, cfg.kv_heads, cfg.dim_per_head
  batch, length = q.shape[:2]
  q5 = q.reshape(batch, length, kv_heads, heads // kv_heads, head_dim)
  if key_order == "head_major":  # [B * K, S, Dh] -> [B, S, K, Dh] (a copy: decode keeps 'xla')
    keys, values = (jnp.swapaxes(x.reshape(batch, kv_heads, kv_len, head_dim), 1, 2)
                    for x in (keys, values))
  rate = cfg.attn_dropout if dropout_rng is not None else 0.0
  if impl == "blockwise":
    out = _attend_blockwise(cfg, q5, keys, values, ctx, layer_idx, rate, dropout_rng)
  elif impl == "cudnn":
    out = _attend_cudnn(cfg, q5, keys, values, ctx, layer_idx, rate, dropout_rng)
  elif impl == "splash":
    out = _attend_splash(cfg, q5, keys, values, ctx, layer_idx, rate, dropout_rng)
  else:
    raise ValueError(f"attention implementation {impl!r} is not one of "
                     "('xla', 'blockwise', 'cudnn', 'splash')")
  return out.reshape(batch, length, heads, head_dim)


def _attend_xla(cfg: ModelConfig, q: jax.Array, keys: jax.Array, values: jax.Array,
                ctx: AttentionContext, layer_idx: jax.Array, key_order: str,
                dropout: Optional[Callable[[jax.Array], jax.Array]]) -> jax.Array:
  """'xla': the full scores [B, K, G, T, S] in float32, masked, soft-maxed, times the values."""
  heads, kv_heads, head_dim = cfg.num_heads, cfg.kv_heads, cfg.dim_per_head
  groups = heads // kv_heads
  batch, length = q.shape[:2]
  q = q.reshape(batch, length, kv_heads, groups, head_dim)
  if key_order == "bskd":
    scores = jnp.einsum("btkgd,bskd->bkgts", q, keys, preferred_element_type=jnp.float32)
  else:  # 'head_major': one batch axis n = (b, k); queries (g, t) of each n in a row
    qn = jnp.transpose(q, (0, 2, 3, 1, 4)).reshape(batch * kv_heads, groups * length, head_dim)
    scores = jnp.einsum("nqd,nsd->nqs", qn, keys, preferred_element_type=jnp.float32)
    scores = scores.reshape(batch, kv_heads, groups, length, -1)
  scores = scores.astype(jnp.float32) * jnp.float32(cfg.softmax_scale)  # [B, K, G, T, S]
  mask, sparse = ctx.mask, ctx.sparse_mask
  if mask is None:
    mask, sparse = dense_masks(cfg, ctx.inputs)
  if sparse is not None:
    mask = jnp.where(is_sparse_layer(layer_idx), mask & sparse, mask)
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


def _attend_filled_blocks(cfg: ModelConfig, q: jax.Array, keys: KVBlocks, values: KVBlocks,
                          ctx: AttentionContext, layer_idx: jax.Array) -> jax.Array:
  """'xla' over the filled blocks only: q [B, T, H, Dh] at cache slots ctx.cache_index ..
  + T - 1, keys/values `KVBlocks` -> [B, T, H, Dh].

  Slots past the last query's are masked (causal slot order), so the blocks that start after it
  get probability exactly zero in 'xla''s softmax: each such block's scores (q k^T) and its share
  of probs x V sit in a lax.cond on the traced slot and are not computed (the block is not read);
  its scores are MASK_VALUE instead, one softmax over all S. Same masks as 'xla' (ctx.mask or
  `dense_masks`, block-sparse layers included); a query that sees no key gets the mean of all S
  values, as in 'xla' (a lax.cond, taken only when such a query exists).
  """
  heads, kv_heads, head_dim = cfg.num_heads, cfg.kv_heads, cfg.dim_per_head
  groups = heads // kv_heads
  batch, length = q.shape[:2]
  rows = batch * kv_heads
  qn = jnp.transpose(q.reshape(batch, length, kv_heads, groups, head_dim), (0, 2, 3, 1, 4))
  qn = qn.reshape(rows, groups * length, head_dim)  # [N, G * T, Dh], n = (b, k)
  mask, sparse = ctx.mask, ctx.sparse_mask
  if mask is None:
    mask, sparse = dense_masks(cfg, ctx.inputs)
  if sparse is not None:
    mask = jnp.where(is_sparse_layer(layer_idx), mask & sparse, mask)
  sizes = [b.shape[1] for b in keys.blocks]
  starts = [sum(sizes[:i]) for i in range(len(sizes))]
  dtype = jnp.dtype(cfg.dtype)
  last = jnp.asarray(ctx.cache_index, jnp.int32) + length - 1  # the last query's slot

  def when_filled(i: int, fn: Callable, empty: Callable, *args) -> jax.Array:
    if i == 0:  # block 0 holds slot 0: always read
      return fn(*args)
    return jax.lax.cond(jnp.int32(starts[i]) <= last, fn, lambda *_: empty(), *args)

  def block_scores(qn, kb):
    return jnp.einsum("nqd,nsd->nqs", qn, kb, preferred_element_type=jnp.float32)

  scores = jnp.concatenate(
      [when_filled(i, block_scores,
                   lambda i=i: jnp.full((rows, groups * length, sizes[i]), MASK_VALUE,
                                        jnp.float32), qn, kb)
       for i, kb in enumerate(keys.blocks)], axis=-1)
  scores = scores.astype(jnp.float32).reshape(batch, kv_heads, groups, length, sum(sizes))
  scores = jnp.where(mask, scores * jnp.float32(cfg.softmax_scale), MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1).astype(dtype).reshape(rows, groups * length, -1)

  def block_values(p, vb):
    return jnp.einsum("nqs,nsd->nqd", p, vb.astype(dtype), preferred_element_type=jnp.float32)

  out = sum(when_filled(i, block_values,
                        lambda: jnp.zeros((rows, groups * length, head_dim), jnp.float32),
                        probs[..., starts[i]:starts[i] + sizes[i]], vb)
            for i, vb in enumerate(values.blocks)).astype(dtype)  # [N, G * T, Dh]
  seen = jnp.broadcast_to(jnp.any(mask, axis=-1), (batch, kv_heads, groups, length))
  seen = seen.reshape(rows, groups * length, 1)

  def mean_for_unseen(out):  # 'xla''s uniform softmax over all S slots
    total = sum(jnp.sum(b.astype(jnp.float32), axis=1) for b in values.blocks)  # [N, Dh]
    mean = (total / jnp.float32(sum(sizes))).astype(out.dtype)[:, None, :]
    return jnp.where(seen, out, mean)

  out = jax.lax.cond(jnp.all(seen), lambda out: out, mean_for_unseen, out)
  out = jnp.transpose(out.reshape(batch, kv_heads, groups, length, head_dim), (0, 3, 1, 2, 4))
  return out.reshape(batch, length, heads, head_dim)


def _block_mask(cfg: ModelConfig, sparse: bool, args, qi: jax.Array, ki: jax.Array) -> jax.Array:
  """The mask of queries qi [bq] x keys ki [bk] -> [B, 1 | K, 1 | G, bq, bk] bool: the same
  `attention_mask` / `block_sparse_mask` as 'xla', on the block's slice of the MaskInputs
  (indices past the end are clipped; the kernel masks those keys)."""
  inputs, sparse_on = args

  def take(x, idx, axis):
    return jnp.take(x, idx, axis=axis, mode="clip")

  q_pos, k_pos = take(inputs.q_pos, qi, 1), take(inputs.k_pos, ki, 1)
  mask = attention_mask(cfg, take(inputs.q_slots, qi, 0), take(inputs.k_slots, ki, 0),
                        take(inputs.q_seg, qi, 1), take(inputs.k_seg, ki, 1), q_pos, k_pos)
  mask = mask[:, None, None]
  if sparse:
    pattern = block_sparse_mask(cfg, q_pos, k_pos)  # [B, H, bq, bk]
    pattern = pattern.reshape(pattern.shape[0], cfg.kv_heads, cfg.num_heads // cfg.kv_heads,
                              *pattern.shape[2:])
    mask = mask & (pattern | jnp.logical_not(sparse_on))
  return mask


def _attend_blockwise(cfg: ModelConfig, q: jax.Array, keys: jax.Array, values: jax.Array,
                      ctx: AttentionContext, layer_idx: jax.Array, rate: float,
                      rng: Optional[jax.Array]) -> jax.Array:
  """'blockwise' (attention_blockwise.py): q [B, T, K, G, Dh], keys/values [B, S, K, Dh] ->
  [B, T, K, G, Dh]. Key blocks past every query's slot are skipped (causal slot order)."""
  settings = attention_blockwise.BlockwiseSettings(
      scale=float(cfg.softmax_scale), query_block=cfg.attention_block or BLOCKWISE_QUERY_BLOCK,
      key_block=cfg.attention_block or BLOCKWISE_KEY_BLOCK, dropout_rate=float(rate),
      dtype=cfg.dtype)
  sparse_on = is_sparse_layer(jnp.asarray(layer_idx)) if cfg.block_sparse else None
  mask_fn = functools.partial(_block_mask, cfg, cfg.block_sparse)
  inputs = ctx.inputs
  return attention_blockwise.blockwise_attention(
      q, keys, values, mask_fn, (inputs, sparse_on), (inputs.q_slots, inputs.k_slots),
      settings, rng)


def _padding_fixup(q_seg: jax.Array, out: jax.Array, values: jax.Array) -> jax.Array:
  """Padding queries (segment 0, the only queries that see no key: every other one sees its own
  slot) get the mean of the S values, as in 'xla'. out [B, T, K, G, Dh], values [B, S, K, Dh]."""
  mean_v = jnp.mean(values.astype(jnp.float32), axis=1)[:, None, :, None, :]
  return jnp.where((q_seg != 0)[:, :, None, None, None], out, mean_v.astype(out.dtype))


def _dense_or_sparse(cfg: ModelConfig, fast: Callable[[], jax.Array], q, keys, values, ctx,
                     layer_idx, rate, rng) -> jax.Array:
  """fast() on dense layers; 'blockwise' on phi-3-small's block-sparse layers (a lax.cond on
  the traced layer index)."""
  if not cfg.block_sparse:
    return fast()
  return jax.lax.cond(is_sparse_layer(jnp.asarray(layer_idx)),
                      lambda: _attend_blockwise(cfg, q, keys, values, ctx, layer_idx, rate, rng),
                      fast)


def _cudnn_unsupported(cfg: ModelConfig, q: jax.Array, keys: jax.Array, ctx: AttentionContext,
                       rate: float) -> Optional[str]:
  """Why cuDNN's fused attention cannot run this call (None: it can)."""
  head_dim = q.shape[-1]
  if ctx.cache_index is not None or q.shape[1] != keys.shape[1]:
    return "a KV cache (queries not aligned with the keys)"
  if rate > 0.0:
    return "attention dropout (jax.nn.dot_product_attention has none)"
  if jnp.dtype(cfg.dtype) not in (jnp.bfloat16, jnp.float16) or keys.dtype != q.dtype:
    return "a float32 (or mixed) compute dtype (cuDNN runs bfloat16 / float16)"
  if head_dim % 8 or head_dim > 128:
    return "a head_dim that is not a multiple of 8 up to 128"
  if q.shape[1] % 2:
    return "an odd sequence length (cuDNN with a bias needs an even one)"
  return None


def _attend_cudnn(cfg: ModelConfig, q: jax.Array, keys: jax.Array, values: jax.Array,
                  ctx: AttentionContext, layer_idx: jax.Array, rate: float,
                  rng: Optional[jax.Array], sdpa_implementation: str = "cudnn") -> jax.Array:
  """'cudnn': jax.nn.dot_product_attention(implementation='cudnn'), q [B, T, K, G, Dh] ->
  [B, T, K, G, Dh] (GQA as the API's own: query head k * G + g reads kv head k).

  Segment ids, padding and the sliding window are honoured by passing the [B, 1, T, S] bool mask
  (cuDNN adds it as a bias, one per batch row, in the compute dtype: O(T * S) per row, not per
  head, and never float32 scores); is_causal lets cuDNN skip the blocks above the diagonal.
  Padding queries get the mean of the values (`_padding_fixup`), as in 'xla'.
  Handed to 'blockwise' instead (decided at trace time, see `_cudnn_unsupported`): a KV cache
  (decode and prefill into a cache), attention dropout, a float32 compute dtype, a head_dim cuDNN
  does not take; and, by a lax.cond on the layer index, phi-3-small's block-sparse layers.
  sdpa_implementation: the jax.nn.dot_product_attention implementation (tests run this same
  wrapper with 'xla' on the CPU).
  """
  reason = _cudnn_unsupported(cfg, q, keys, ctx, rate)
  if reason is not None:
    return _attend_blockwise(cfg, q, keys, values, ctx, layer_idx, rate, rng)
  if sdpa_implementation == "cudnn" and not (jax.default_backend() == "gpu" and _is_cuda()):
    raise ValueError(f"attention_impl='cudnn' needs an NVIDIA GPU, but jax runs on "
                     f"{jax.default_backend()!r}; set ModelConfig.attention_impl to 'auto' or "
                     "'blockwise'")
  batch, length, kv_heads, groups, head_dim = q.shape

  def fused() -> jax.Array:
    mask = attention_mask(cfg, *ctx.inputs)[:, None]  # [B, 1, T, S]
    out = jax.nn.dot_product_attention(
        q.reshape(batch, length, kv_heads * groups, head_dim), keys, values, mask=mask,
        scale=float(cfg.softmax_scale), is_causal=True, implementation=sdpa_implementation)
    out = out.reshape(batch, length, kv_heads, groups, head_dim)
    return _padding_fixup(ctx.inputs.q_seg, out, values)

  return _dense_or_sparse(cfg, fused, q, keys, values, ctx, layer_idx, rate, rng)


SPLASH_BLOCK = 128  # splash's default block sizes: T must be a multiple of it


def _attend_splash(cfg: ModelConfig, q: jax.Array, keys: jax.Array, values: jax.Array,
                   ctx: AttentionContext, layer_idx: jax.Array, rate: float,
                   rng: Optional[jax.Array], interpret: bool = False) -> jax.Array:
  """'splash': Pallas splash attention on TPU (jax.experimental.pallas.ops.tpu), q
  [B, T, K, G, Dh] -> [B, T, K, G, Dh]; one MQA kernel per (batch row, kv head), vmapped.

  Segment ids go to the kernel's SegmentIds; its static mask is causal, or local with
  window (sliding_window - 1, 0) in slot terms, which equals the window on positions as long
  as positions advance by one per slot within a segment (what packing and left padding make).
  Padding queries get the mean of the values, as in 'xla' (splash lets segment 0 see segment 0).
  Handed to 'blockwise' (at trace time): a KV cache, attention dropout, T not a multiple of
  SPLASH_BLOCK; and, by a lax.cond on the layer index, phi-3-small's block-sparse layers.
  Under a multi-device mesh the kernel is a custom call the partitioner does not split: wrap
  the model in shard_map for production TPU runs (not tested here: no TPU).
  interpret: run the kernel in Pallas' interpreter (for tests on the CPU).
  """
  batch, length, kv_heads, groups, head_dim = q.shape
  if (ctx.cache_index is not None or length != keys.shape[1] or rate > 0.0
      or length % SPLASH_BLOCK):
    return _attend_blockwise(cfg, q, keys, values, ctx, layer_idx, rate, rng)
  if jax.default_backend() != "tpu" and not interpret:
    raise ValueError(f"attention_impl='splash' needs a TPU, but jax runs on "
                     f"{jax.default_backend()!r}; set ModelConfig.attention_impl to 'auto' or "
                     "'blockwise'")
  try:
    from jax.experimental.pallas.ops.tpu.splash_attention import (
        splash_attention_kernel as splash, splash_attention_mask as splash_mask)
  except ImportError as e:  # an install without Pallas' TPU ops
    raise ValueError(f"attention_impl='splash' needs jax.experimental.pallas ({e}); use "
                     "'auto' or 'blockwise'") from e

  def fused() -> jax.Array:
    shape = (length, length)
    if cfg.sliding_window is None:
      head_mask = splash_mask.CausalMask(shape)
    else:
      head_mask = splash_mask.LocalMask(shape, window_size=(cfg.sliding_window - 1, 0), offset=0)
    kernel = splash.make_splash_mqa(splash_mask.MultiHeadMask([head_mask] * groups),
                                    head_shards=1, q_seq_shards=1, interpret=interpret)
    qs = jnp.transpose(q * jnp.asarray(cfg.softmax_scale, q.dtype), (0, 2, 3, 1, 4))
    ks, vs = jnp.swapaxes(keys, 1, 2), jnp.swapaxes(values, 1, 2)  # [B, K, S, Dh]

    def row(q_row, k_row, v_row, seg):  # [K, G, T, Dh], [K, S, Dh], [T]
      ids = splash.SegmentIds(q=seg, kv=seg)
      return jax.vmap(lambda a, b, c: kernel(a, b, c, segment_ids=ids))(q_row, k_row, v_row)

    out = jax.vmap(row)(qs, ks, vs, ctx.inputs.q_seg)  # [B, K, G, T, Dh]
    out = jnp.transpose(out, (0, 3, 1, 2, 4)).astype(q.dtype)
    return _padding_fixup(ctx.inputs.q_seg, out, values)

  return _dense_or_sparse(cfg, fused, q, keys, values, ctx, layer_idx, rate, rng)


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
    impl = resolve_impl(cfg, q.shape[1], keys.shape[1])
    dropout = dropout_rng = None
    if cfg.attn_dropout > 0 and not self.deterministic:
      if impl == "xla":
        dropout = lambda p: nn.Dropout(cfg.attn_dropout)(p, deterministic=False)  # noqa: E731
      else:  # drawn per block inside the kernel (same distribution as nn.Dropout)
        dropout_rng = self.make_rng("dropout")
    out = attend(cfg, q, keys, values, ctx, layer_idx, key_order, dropout, dropout_rng, impl)
    out = constrain(out, ("activation_batch", "activation_length", "activation_heads", None))
    return self.o(out), kv
