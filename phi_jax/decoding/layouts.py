"""Decode layouts: how a decode loop holds the weights and the KV cache (same tokens, other speed).

    'stacked'      the model's own layout: the scanned `Transformer` on the stacked params and
                   the stacked cache (decoding.KVCache, k/v [L, B, S, K, Dh]).
    'per_layer'    `PerLayerParams` (each layer's weights in buffers of their own) and a
                   `PerLayerCache` (each layer's own head-major `HeadMajorKV`, [B * K, S, Dh]),
                   run layer by layer (`decode_step`) from the model's pieces
                   (transformer.embed / block / head).
    'per_layer_t'  the same, with every projection kernel stored transposed (layers.Dense
                   kernel_layout 'out_in').

Why (XLA:CPU): a scan over stacked weights materialises each layer's slice every step, and
attention over the stacked cache transposes it to [B, K, S, Dh]; the per-layer layouts read both
in place, and a transposed kernel makes the small-batch GEMM about twice as fast. The per-layer
weights are made from the stacked ones by `per_layer_params`, once per (model, params): see
decoding/weights.py (`prepare_weights`, and the cache `generate` keeps). With a per-layer layout
the prefill runs layer by layer too (`forward` on the prompt), straight into a `PerLayerCache`
(`init_per_layer_cache`), so a generate call holds no stacked copy of weights or cache.
In the decode loop each layer's cache is held as blocks (`BlockedKV`: the prompt's P slots,
then empty blocks of at least DECODE_BLOCK slots, `extend_to_blocks`), and a step attends only
over the blocks up to its slot (attention key order 'head_major_blocks'): with 32-token prompts
and 128 new tokens it reads 112 of the 160 slots on average instead of all of them.
SkipDecode and early exit (skipdecode.py, early_exit.py) need a per-layer layout: they run the
same per-layer helpers (`step_inputs`, `run_layer`, `fill_layer`, `step_logits`, `finish_step`),
leaving layers out.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from phi_jax.decoding.cache import KVCache
from phi_jax.models import transformer
from phi_jax.models.attention import AttentionContext, KVBlocks, attention_inputs
from phi_jax.models.config import ModelConfig

DECODE_LAYOUTS = ("stacked", "per_layer", "per_layer_t")
KERNEL_LAYOUT = {"per_layer": "in_out", "per_layer_t": "out_in"}  # per-layer layout -> Dense's
# The decode loop of the per-layer layouts holds its cache in blocks of (at least) this many slots
# after the prompt's (`extend_to_blocks`), so that a step reads only the filled ones; None: one
# buffer of all slots per layer (read whole every step). Read when a program is traced.
DECODE_BLOCK: Optional[int] = 32


def check_layout(decode_layout: str) -> None:
  if decode_layout not in DECODE_LAYOUTS:
    raise ValueError(f"decode_layout {decode_layout!r} is not one of {DECODE_LAYOUTS}")


def default_decode_layout(params=None) -> str:
  """'per_layer_t' on the CPU backend (where it measured fastest), else 'stacked'.

  Also 'stacked' when the second copy of the layer weights that the per-layer layouts make would
  take more than a quarter of the machine's physical memory (e.g. phi-2 in float32 on 24 GB).
  """
  if jax.default_backend() != "cpu":
    return "stacked"
  if params is not None:
    layers = params.get("layers", {}) if hasattr(params, "get") else {}
    nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(layers))
    try:
      memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
      memory = None
    if memory and nbytes > memory / 4:
      return "stacked"
  return "per_layer_t"


# ---- the per-layer representations --------------------------------------------------------------


class HeadMajorKV(NamedTuple):
  """One layer's own KV cache, head-major: k, v [B * K, S, Dh] (attention key order
  'head_major': the attention einsums read it without a transpose)."""
  k: jax.Array
  v: jax.Array

  key_order = "head_major"  # a class attribute, not a field

  def update(self, layer_idx: jax.Array, k: jax.Array, v: jax.Array,
             index: jax.Array) -> tuple["HeadMajorKV", jax.Array, jax.Array]:
    """Writes k, v [B, T, K, Dh] at slots index .. index + T - 1 (layer_idx: unused, the
    buffer is this layer's); returns (the updated cache, its keys, its values)."""
    del layer_idx

    def write(cache, new):
      new = jnp.swapaxes(new, 1, 2).reshape(-1, new.shape[1], new.shape[-1])
      return jax.lax.dynamic_update_slice(cache, new.astype(cache.dtype), (0, index, 0))

    new = HeadMajorKV(write(self.k, k), write(self.v, v))
    return new, new.k, new.v


class BlockedKV(NamedTuple):
  """One layer's own KV cache as consecutive blocks of head-major slots: k[i], v[i]
  [B * K, S_i, Dh], each block a buffer of its own (attention key order 'head_major_blocks':
  a decode step reads only the blocks up to its slot, attention._attend_filled_blocks)."""
  k: tuple[jax.Array, ...]
  v: tuple[jax.Array, ...]

  key_order = "head_major_blocks"  # a class attribute, not a field

  def update(self, layer_idx: jax.Array, k: jax.Array, v: jax.Array,
             index: jax.Array) -> tuple["BlockedKV", KVBlocks, KVBlocks]:
    """Writes k, v [B, T, K, Dh] at slots index .. index + T - 1 (layer_idx: unused); returns
    (the updated cache, its keys, its values as `KVBlocks`).

    T == 1 (a decode step): every block rewrites one slot in place, the new entry in the block
    that holds slot `index` and its own old entry in the others. T > 1: each block takes the new
    entries that fall in it (a select over the whole block).
    """
    del layer_idx
    sizes = [b.shape[1] for b in self.k]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    index = jnp.asarray(index, jnp.int32)

    def write(blocks, new):
      new = jnp.swapaxes(new, 1, 2).reshape(-1, new.shape[1], new.shape[-1])  # [N, T, Dh]
      length, out = new.shape[1], []
      for block, start, size in zip(blocks, starts, sizes):
        new_b = new.astype(block.dtype)
        if length == 1:
          inside = (index >= start) & (index < start + size)
          slot = jnp.clip(index - start, 0, size - 1)
          old = jax.lax.dynamic_slice_in_dim(block, slot, 1, axis=1)
          out.append(jax.lax.dynamic_update_slice_in_dim(
              block, jnp.where(inside, new_b, old), slot, axis=1))
        else:
          rel = start + jnp.arange(size, dtype=jnp.int32) - index  # [S_i] offset into new
          inside = ((rel >= 0) & (rel < length))[None, :, None]
          taken = jnp.take(new_b, jnp.clip(rel, 0, length - 1), axis=1)
          out.append(jnp.where(inside, taken, block))
      return tuple(out)

    new = BlockedKV(write(self.k, k), write(self.v, v))
    return new, KVBlocks(new.k), KVBlocks(new.v)

  def merged(self) -> HeadMajorKV:
    """The same cache as one `HeadMajorKV` [B * K, S, Dh] (a copy)."""
    return HeadMajorKV(KVBlocks(self.k).full(), KVBlocks(self.v).full())


def decode_block_sizes(prompt_len: int, new_len: int, block: int = 32,
                       max_blocks: int = 8) -> tuple[int, ...]:
  """The blocks of a blocked decode cache of prompt_len + new_len slots: the prompt's slots as
  one block, then blocks of max(block, ceil(new_len / max_blocks)) slots (the last one may be
  shorter). At most max_blocks + 1 blocks: the attention's lax.switch has a branch per count."""
  size = max(block, -(-new_len // max_blocks))
  sizes, left = [prompt_len], new_len
  while left > 0:
    sizes.append(min(size, left))
    left -= sizes[-1]
  return tuple(sizes)


class PerLayerCache(NamedTuple):
  """The KV cache of the per-layer layouts: layers[l] is layer l's `HeadMajorKV` (or
  `BlockedKV`, in a decode loop: `extend_to_blocks`); positions, segment_ids [B, S] and index as
  in `KVCache` (shared by all layers)."""
  layers: tuple[HeadMajorKV | BlockedKV, ...]
  positions: jax.Array
  segment_ids: jax.Array
  index: jax.Array


def extend_to_blocks(cache: PerLayerCache, new_len: int, block: int = 32,
                     max_blocks: int = 8) -> PerLayerCache:
  """A per-layer cache of P filled slots (e.g. the prefill's, `HeadMajorKV` layers) -> the
  blocked cache of P + new_len slots that a decode loop continues it in: each layer's P slots
  become block 0 as they are (no copy), followed by empty blocks (`decode_block_sizes`); slot
  metadata padded with zeros (segment id 0: never attended)."""
  def blocks(kv: HeadMajorKV) -> BlockedKV:
    rows, prompt_len, head_dim = kv.k.shape
    sizes = decode_block_sizes(prompt_len, new_len, block, max_blocks)[1:]
    empty = tuple(jnp.zeros((rows, size, head_dim), kv.k.dtype) for size in sizes)
    return BlockedKV((kv.k,) + empty, (kv.v,) + tuple(jnp.zeros_like(e) for e in empty))

  pad = ((0, 0), (0, new_len))
  return PerLayerCache(tuple(blocks(kv) for kv in cache.layers), jnp.pad(cache.positions, pad),
                       jnp.pad(cache.segment_ids, pad), cache.index)


def merged_cache(cache: PerLayerCache) -> PerLayerCache:
  """A per-layer cache with every `BlockedKV` layer merged into one `HeadMajorKV` (a copy)."""
  layers = tuple(kv.merged() if isinstance(kv, BlockedKV) else kv for kv in cache.layers)
  return PerLayerCache(layers, cache.positions, cache.segment_ids, cache.index)


@struct.dataclass
class PerLayerParams:
  """The weights of the per-layer layouts.

  top: the model's params other than its layers ('embed', 'final_norm', 'lm_head').
  layers: layers[l] is layer l's params (no leading layer axis), a buffer of their own.
  kernel_layout: how every projection kernel (layers and LM head) is stored (layers.Dense):
    'in_out' ('kernel') or 'out_in' ('kernel_t' = kernel.T).
  """
  top: Mapping[str, Any]
  layers: tuple[Mapping[str, Any], ...]
  kernel_layout: str = struct.field(pytree_node=False, default="in_out")


def per_layer_params(params: Mapping[str, Any], kernel_layout: str = "in_out") -> PerLayerParams:
  """The per-layer copy of the model's params (the stacked 'layers' leaves [L, ...] split into
  L buffers; with kernel_layout 'out_in', every 'kernel' stored as 'kernel_t' = kernel.T, all
  axes reversed). Copies: make it once, outside a decode loop."""
  if kernel_layout not in KERNEL_LAYOUT.values():
    raise ValueError(f"kernel_layout {kernel_layout!r} is not one of "
                     f"{tuple(KERNEL_LAYOUT.values())}")
  params = dict(nn.unbox(params))
  stacked = params.pop("layers")
  num_layers = jax.tree_util.tree_leaves(stacked)[0].shape[0]
  layers = tuple(jax.tree_util.tree_map(lambda leaf: leaf[i], stacked) for i in range(num_layers))

  def transpose(tree):
    if not isinstance(tree, Mapping):
      return tree
    out = {k: transpose(v) for k, v in tree.items() if k != "kernel"}
    if "kernel" in tree:
      out["kernel_t"] = jnp.transpose(tree["kernel"])
    return out

  if kernel_layout == "out_in":
    params, layers = transpose(params), tuple(transpose(layer) for layer in layers)
  return PerLayerParams(params, layers, kernel_layout)


def per_layer_cache(cache: KVCache) -> PerLayerCache:
  """The per-layer copy of a KVCache: k, v [L, B, S, K, Dh] -> L head-major [B * K, S, Dh]
  pairs (copies: make it once, outside a decode loop)."""
  num_layers, batch, slots, kv_heads, head_dim = cache.k.shape

  def head_major(c):
    return jnp.swapaxes(c, 1, 2).reshape(batch * kv_heads, slots, head_dim)

  layers = tuple(HeadMajorKV(head_major(cache.k[i]), head_major(cache.v[i]))
                 for i in range(num_layers))
  return PerLayerCache(layers, cache.positions, cache.segment_ids, cache.index)


def init_per_layer_cache(cfg: ModelConfig, batch: int, max_len: int, dtype=None) -> PerLayerCache:
  """An empty per-layer cache of `max_len` slots for `batch` rows: every layer's k, v
  [B * K, S, Dh] zeros (dtype defaults to the compute dtype), as `init_cache` for the stacked."""
  dtype = jnp.dtype(cfg.dtype if dtype is None else dtype)
  shape = (batch * cfg.kv_heads, max_len, cfg.dim_per_head)
  layers = tuple(HeadMajorKV(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))
                 for _ in range(cfg.num_layers))
  return PerLayerCache(layers, jnp.zeros((batch, max_len), jnp.int32),
                       jnp.zeros((batch, max_len), jnp.int32), jnp.zeros((), jnp.int32))


# ---- one decode step, layer by layer ------------------------------------------------------------


def step_inputs(cfg: ModelConfig, params: PerLayerParams, token: jax.Array, positions: jax.Array,
                cache: PerLayerCache, long_rope, segment_ids: Optional[jax.Array] = None
                ) -> tuple[jax.Array, AttentionContext, Any, Any]:
  """For a step that feeds token [B] int32 (or tokens [B, T]) at positions [B, 1] ([B, T]):
  (layer 0's input x [B, T, D], the attention context, the cache's updated slot positions and
  segment ids [B, S]). segment_ids [B, T]: default all ones (0 marks padding)."""
  tokens = token[:, None] if token.ndim == 1 else token
  if segment_ids is None:
    segment_ids = jnp.ones(tokens.shape, jnp.int32)
  ctx, k_pos, k_seg = attention_inputs(cfg, positions, segment_ids, cache, long_rope)
  return transformer.embed(cfg, params.top, tokens), ctx, k_pos, k_seg


def run_layer(cfg: ModelConfig, params: PerLayerParams, layer: int, x: jax.Array,
              kv: HeadMajorKV, ctx: AttentionContext) -> tuple[jax.Array, HeadMajorKV]:
  """Layer `layer` on x [B, T, D], writing its cache entries: (its output, its new cache)."""
  return transformer.block(cfg, params.layers[layer], layer, x, kv, ctx,
                           kernel_layout=params.kernel_layout)


def fill_layer(cfg: ModelConfig, params: PerLayerParams, layer: int, x: jax.Array,
               kv: HeadMajorKV, ctx: AttentionContext) -> HeadMajorKV:
  """Writes the keys/values layer `layer` would write for input x, without running it (CALM's
  state propagation)."""
  k, v = transformer.block_kv(cfg, params.layers[layer], x, ctx,
                              kernel_layout=params.kernel_layout)
  return kv.update(layer, k, v, ctx.cache_index)[0]


def step_logits(cfg: ModelConfig, params: PerLayerParams, x: jax.Array) -> jax.Array:
  """The head on the last position of x [B, T, D] -> float32 logits [B, V]."""
  return transformer.head(cfg, params.top, x[:, -1:], kernel_layout=params.kernel_layout)[:, 0]


def finish_step(cache: PerLayerCache, layers, k_pos: jax.Array, k_seg: jax.Array,
                length: int = 1) -> PerLayerCache:
  """The cache after a step of `length` tokens: its layers' new caches, slot metadata,
  index + length."""
  return PerLayerCache(tuple(layers), k_pos, k_seg, cache.index + length)


def forward(cfg: ModelConfig, params: PerLayerParams, tokens: jax.Array, positions: jax.Array,
            segment_ids: jax.Array, cache: PerLayerCache, long_rope
            ) -> tuple[jax.Array, PerLayerCache]:
  """Every layer on tokens [B, T] int32 at positions, segment_ids [B, T] (0: padding), written
  into the cache at cache.index (the prefill of the per-layer layouts) -> (the last position's
  logits [B, V] float32, the updated cache)."""
  x, ctx, k_pos, k_seg = step_inputs(cfg, params, tokens, positions, cache, long_rope,
                                     segment_ids)
  layers = list(cache.layers)
  for layer in range(cfg.num_layers):
    x, layers[layer] = run_layer(cfg, params, layer, x, layers[layer], ctx)
  return step_logits(cfg, params, x), finish_step(cache, layers, k_pos, k_seg, tokens.shape[1])


def decode_step(cfg: ModelConfig, params: PerLayerParams, token: jax.Array, positions: jax.Array,
                cache: PerLayerCache, long_rope) -> tuple[jax.Array, PerLayerCache]:
  """One full-depth decode step: token [B] int32 at positions [B, 1] -> (logits [B, V] float32,
  the updated cache)."""
  return forward(cfg, params, token[:, None], positions, jnp.ones((token.shape[0], 1), jnp.int32),
                 cache, long_rope)
