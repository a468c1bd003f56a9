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
in place, and a transposed kernel makes the small-batch GEMM about twice as fast. Both per-layer
layouts are made from the stacked ones once per generate call (after the prefill, which always
runs the stacked model), so peak memory holds the layer weights twice. SkipDecode and early exit
(skipdecode.py, early_exit.py) need a per-layer layout: they run the same per-layer helpers
(`step_inputs`, `run_layer`, `fill_layer`, `step_logits`, `finish_step`), leaving layers out.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from phi_jax.decoding.cache import KVCache
from phi_jax.models import transformer
from phi_jax.models.attention import AttentionContext, attention_inputs
from phi_jax.models.config import ModelConfig

DECODE_LAYOUTS = ("stacked", "per_layer", "per_layer_t")
KERNEL_LAYOUT = {"per_layer": "in_out", "per_layer_t": "out_in"}  # per-layer layout -> Dense's


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


class PerLayerCache(NamedTuple):
  """The KV cache of the per-layer layouts: layers[l] is layer l's `HeadMajorKV`; positions,
  segment_ids [B, S] and index as in `KVCache` (shared by all layers)."""
  layers: tuple[HeadMajorKV, ...]
  positions: jax.Array
  segment_ids: jax.Array
  index: jax.Array


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


# ---- one decode step, layer by layer ------------------------------------------------------------


def step_inputs(cfg: ModelConfig, params: PerLayerParams, token: jax.Array, positions: jax.Array,
                cache: PerLayerCache, long_rope) -> tuple[jax.Array, AttentionContext, Any, Any]:
  """For a step that feeds token [B] int32 at positions [B, 1]: (layer 0's input x [B, 1, D],
  the attention context, the cache's updated slot positions and segment ids [B, S])."""
  ctx, k_pos, k_seg = attention_inputs(cfg, positions, jnp.ones((token.shape[0], 1), jnp.int32),
                                       cache, long_rope)
  return transformer.embed(cfg, params.top, token[:, None]), ctx, k_pos, k_seg


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


def finish_step(cache: PerLayerCache, layers, k_pos: jax.Array, k_seg: jax.Array
                ) -> PerLayerCache:
  """The cache after a one-token step: its layers' new caches, slot metadata, index + 1."""
  return PerLayerCache(tuple(layers), k_pos, k_seg, cache.index + 1)


def decode_step(cfg: ModelConfig, params: PerLayerParams, token: jax.Array, positions: jax.Array,
                cache: PerLayerCache, long_rope) -> tuple[jax.Array, PerLayerCache]:
  """One full-depth decode step: token [B] int32 at positions [B, 1] -> (logits [B, V] float32,
  the updated cache)."""
  x, ctx, k_pos, k_seg = step_inputs(cfg, params, token, positions, cache, long_rope)
  layers = list(cache.layers)
  for layer in range(cfg.num_layers):
    x, layers[layer] = run_layer(cfg, params, layer, x, layers[layer], ctx)
  return step_logits(cfg, params, x), finish_step(cache, layers, k_pos, k_seg)
