"""The phi decoder: embed -> scanned blocks (parallel or serial) -> final norm -> LM head.

    model = Transformer(cfg)
    params = model.init(jax.random.key(0), tokens)['params']
    logits = model.apply({'params': params}, tokens)                 # [B, T, V] float32
    logits, cache = model.apply({'params': params}, tokens, cache=c)  # incremental decoding

Layer weights are stacked on a leading 'layers' axis (nn.scan), so `params['layers']` leaves are
[num_layers, ...] and a range of layers can be sliced. The KV cache is threaded through the scan
carry and updated in place, one layer slice at a time.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
from jax.ad_checkpoint import checkpoint_name
import jax.numpy as jnp

from phi_jax.models import rotary
from phi_jax.models.attention import (Attention, AttentionContext, KVState, attention_mask,
                                      block_sparse_mask)
from phi_jax.models.config import ModelConfig
from phi_jax.models.layers import INIT_STD, Mlp, Norm, constrain, dense

_ACT = ("activation_batch", "activation_length", "activation_embed")

REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "save_attn_out": jax.checkpoint_policies.save_only_these_names("attn_out"),
}


class Block(nn.Module):
  """One decoder layer. Scanned: carry (x [B, T, D], kv), per-layer inputs (layer index, mask)."""

  cfg: ModelConfig
  deterministic: bool = True

  @nn.compact
  def __call__(self, carry: tuple[jax.Array, Optional[KVState]], layer_idx: jax.Array,
               layer_on: Optional[jax.Array], ctx: AttentionContext):
    cfg = self.cfg
    x, kv = carry
    x = constrain(x, _ACT)
    drop = nn.Dropout(cfg.resid_dropout, deterministic=self.deterministic or cfg.resid_dropout == 0)
    attn = Attention(cfg, self.deterministic, name="attn")
    h = Norm(cfg, name="input_norm")(x)
    attn_out, kv = attn(h, ctx, layer_idx, kv)
    attn_out = checkpoint_name(attn_out, "attn_out")
    if cfg.block == "parallel":  # x + attn(ln(x)) + mlp(ln(x))
      y = x + (drop(attn_out) + drop(Mlp(cfg, name="mlp")(h)))
    else:  # x + attn(norm(x)); then + mlp(norm(.))
      y = x + drop(attn_out)
      y = y + drop(Mlp(cfg, name="mlp")(Norm(cfg, name="mlp_norm")(y)))
    if layer_on is not None:  # [B, T] bool: where False this layer is the identity
      y = jnp.where(layer_on[..., None], y, x)
    return (constrain(y, _ACT), kv), None


class Transformer(nn.Module):
  """The phi-family decoder-only language model.

  scan_layers=False runs the blocks as a Python loop over per-layer params 'layers_0' ..
  'layers_{L-1}' (see `unscanned_params`) instead of a scan over the stacked 'layers' params.
  Same numbers; it is the decode-loop layout: each layer's weights are their own buffers, read in
  place, where a scan slices the stacked arrays and XLA:CPU copies the slice every step. Its
  cache may hold per-layer head-major k and v (see `unscanned_cache`), for the same reason.
  """

  cfg: ModelConfig
  scan_layers: bool = True

  @nn.compact
  def __call__(self, tokens: jax.Array, positions: Optional[jax.Array] = None,
               segment_ids: Optional[jax.Array] = None, layer_mask: Optional[jax.Array] = None,
               cache: Optional[Any] = None, deterministic: bool = True,
               long_rope: Optional[jax.Array | bool] = None, last_only: bool = False,
               return_hidden: bool = False):
    """Logits for `tokens` [B, T] (int).

    Args:
      positions: [B, T] int positions (default arange(T) per row; with a cache, continue from it).
      segment_ids: [B, T] int; tokens attend only within their segment; 0 marks padding
        (default all ones). Packed documents use 1, 2, 3, ... with positions restarting at 0.
      layer_mask: [T, L] or [B, T, L] bool; where False the layer is the identity at that position.
      cache: a `phi_jax.decoding.cache.KVCache`; the T tokens are written at `cache.index`
        and attend over every filled slot. The updated cache is returned with the logits.
      deterministic: disables dropout when True.
      long_rope: LongRoPE factor choice; None applies transformers' rule (max position + 1 >
        original length).
      last_only: compute logits only for the last position ([B, 1, V]).
      return_hidden: return the residual stream after the last layer, before the final norm,
        [B, T, D] in the compute dtype, instead of logits (features for e.g. a classifier; for
        layer k's output, apply the model to params whose 'layers' leaves are sliced [:k + 1]
        with cfg.replace(num_layers=k + 1)).

    Returns:
      float32 logits [B, T, V] (or [B, 1, V]); with a cache, (logits, new_cache).
    """
    cfg = self.cfg
    batch, length = tokens.shape
    if segment_ids is None:
      segment_ids = jnp.ones((batch, length), jnp.int32)
    if positions is None:
      start = 0 if cache is None else cache.index
      positions = jnp.broadcast_to(start + jnp.arange(length, dtype=jnp.int32), (batch, length))
    positions = positions.astype(jnp.int32)
    segment_ids = segment_ids.astype(jnp.int32)

    embed = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=jnp.dtype(cfg.dtype),
                     param_dtype=jnp.dtype(cfg.param_dtype), name="embed",
                     embedding_init=nn.with_logical_partitioning(
                         nn.initializers.normal(INIT_STD), ("vocab", "embed")))
    x = embed(tokens)
    if cfg.embedding_multiplier != 1.0:
      x = x * jnp.asarray(cfg.embedding_multiplier, x.dtype)
    if cfg.embd_dropout > 0 and not deterministic:
      x = nn.Dropout(cfg.embd_dropout)(x, deterministic=False)
    x = constrain(x, _ACT)

    ctx, k_pos, k_seg = attention_inputs(cfg, positions, segment_ids, cache, long_rope)
    index = ctx.cache_index
    kv = None if cache is None else KVState(cache.k, cache.v)

    layer_on = None
    if layer_mask is not None:
      layer_mask = jnp.asarray(layer_mask, bool)
      if layer_mask.ndim == 2:
        layer_mask = jnp.broadcast_to(layer_mask[None], (batch, *layer_mask.shape))
      if layer_mask.shape != (batch, length, cfg.num_layers):
        raise ValueError(f"layer_mask has shape {layer_mask.shape}; expected [seq, num_layers] or "
                         f"[batch, seq, num_layers] = {(batch, length, cfg.num_layers)}")
      layer_on = jnp.moveaxis(layer_mask, -1, 0)  # [L, B, T]

    block = Block
    if cfg.remat_policy != "none":
      block = nn.remat(Block, policy=REMAT_POLICIES[cfg.remat_policy], prevent_cse=False)
    if self.scan_layers:
      stack = nn.scan(
          block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
          in_axes=(0, 0, nn.broadcast), length=cfg.num_layers, unroll=cfg.scan_unroll,
          metadata_params={nn.PARTITION_NAME: "layers"})
      layer_ids = jnp.arange(cfg.num_layers, dtype=jnp.int32)
      (x, kv), _ = stack(cfg, deterministic, name="layers")((x, kv), layer_ids, layer_on, ctx)
    else:
      own = kv is not None and isinstance(kv.k, (tuple, list))  # per-layer caches
      ks, vs = [], []
      for i in range(cfg.num_layers):
        on = None if layer_on is None else layer_on[i]
        layer_kv = KVState(kv.k[i], kv.v[i]) if own else kv
        (x, layer_kv), _ = block(cfg, deterministic, name=f"layers_{i}")(
            (x, layer_kv), jnp.int32(i), on, ctx)
        if own:
          ks.append(layer_kv.k)
          vs.append(layer_kv.v)
        else:
          kv = layer_kv
      if own:
        kv = KVState(tuple(ks), tuple(vs))

    if last_only:
      x = x[:, -1:]
    if return_hidden:
      if cache is None:
        return x
      raise ValueError("return_hidden is for full forward passes; pass cache=None")
    x = Norm(cfg, name="final_norm")(x)
    if cfg.tie_embeddings:
      logits = embed.attend(x)
    else:
      logits = dense(cfg, cfg.vocab_size, -1, ("embed", "vocab"), bias=cfg.lm_head_bias,
                     name="lm_head")(x)
    logits = logits.astype(jnp.float32)
    if cfg.logit_multiplier != 1.0:
      logits = logits * jnp.float32(cfg.logit_multiplier)
    logits = constrain(logits, ("activation_batch", "activation_length", "activation_vocab"))
    if cache is None:
      return logits
    new_cache = cache._replace(k=kv.k, v=kv.v, positions=k_pos, segment_ids=k_seg,
                               index=index + length)
    return logits, new_cache


def attention_inputs(cfg: ModelConfig, positions: jax.Array, segment_ids: jax.Array,
                     cache: Optional[Any] = None, long_rope: Optional[jax.Array | bool] = None
                     ) -> tuple[AttentionContext, jax.Array, jax.Array]:
  """What every layer's attention needs for one call: (ctx, key positions, key segment ids).

  positions, segment_ids [B, T] int32 of the new tokens. Without a cache the keys are those T
  tokens; with one they are its S slots once this call's entries are written at cache.index
  (k_pos, k_seg [B, S] are then the cache's updated slot metadata).
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


# ---- The model's pieces as pure functions of its params (for layer-by-layer decoding) ----------
# They apply the same modules as `Transformer.__call__` (tests check they agree with it).


def embed_tokens(cfg: ModelConfig, params: Mapping[str, Any], tokens: jax.Array) -> jax.Array:
  """tokens [B, T] -> the input of layer 0 [B, T, D] (embedding x embedding_multiplier)."""
  x = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=jnp.dtype(cfg.dtype),
               param_dtype=jnp.dtype(cfg.param_dtype)).apply({"params": params["embed"]}, tokens)
  if cfg.embedding_multiplier != 1.0:
    x = x * jnp.asarray(cfg.embedding_multiplier, x.dtype)
  return x


def logits_from_hidden(cfg: ModelConfig, params: Mapping[str, Any], x: jax.Array) -> jax.Array:
  """The residual stream x [..., D] -> float32 logits [..., V]: final norm, LM head (or the tied
  embedding), logit multiplier."""
  x = Norm(cfg).apply({"params": params["final_norm"]}, x)
  if cfg.tie_embeddings:
    logits = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=jnp.dtype(cfg.dtype),
                      param_dtype=jnp.dtype(cfg.param_dtype)).apply(
                          {"params": params["embed"]}, x, method="attend")
  else:
    logits = dense(cfg, cfg.vocab_size, -1, ("embed", "vocab"), bias=cfg.lm_head_bias,
                   name=None).apply({"params": params["lm_head"]}, x)
  logits = logits.astype(jnp.float32)
  if cfg.logit_multiplier != 1.0:
    logits = logits * jnp.float32(cfg.logit_multiplier)
  return logits


def apply_block(cfg: ModelConfig, layer_params: Mapping[str, Any], layer_idx: int, x: jax.Array,
                kv: Optional[KVState], ctx: AttentionContext) -> tuple[jax.Array, Optional[KVState]]:
  """One decoder layer, as in the unscanned model: (x [B, T, D], this layer's kv) -> new ones."""
  (x, kv), _ = Block(cfg).apply({"params": layer_params}, (x, kv), jnp.int32(layer_idx), None,
                                ctx)
  return x, kv


def unscanned_params(params: dict[str, Any], *, transpose_kernels: bool = False) -> dict[str, Any]:
  """The params of `Transformer(cfg, scan_layers=False)` from those of the scanned model.

  The stacked 'layers' leaves [L, ...] become 'layers_0' .. 'layers_{L-1}' (copies: each layer's
  weights in a buffer of their own). With transpose_kernels, every projection kernel is stored as
  'kernel_t' = kernel.T (all axes reversed), which `layers.Dense` multiplies as the left operand
  (faster small-batch GEMMs on XLA:CPU). Same function, different layout: make it once, outside a
  decode loop.
  """
  params = dict(nn.unbox(params))
  layers = params.pop("layers")
  num_layers = jax.tree_util.tree_leaves(layers)[0].shape[0]
  for i in range(num_layers):
    params[f"layers_{i}"] = jax.tree_util.tree_map(lambda leaf: leaf[i], layers)
  if not transpose_kernels:
    return params

  def transpose(tree):
    if not isinstance(tree, Mapping):
      return tree
    out = {k: transpose(v) for k, v in tree.items() if k != "kernel"}
    if "kernel" in tree:
      out["kernel_t"] = jnp.transpose(tree["kernel"])
    return out

  return transpose(params)


def unscanned_cache(cache: Any) -> Any:
  """A KV cache for `Transformer(cfg, scan_layers=False)`: k, v [L, B, S, K, Dh] become tuples of
  L head-major [B * K, S, Dh] arrays (copies; make them once, outside a decode loop).

  Each layer then updates its own buffer in place and attends over it without first copying it
  into the [B, K, S, Dh] order of the attention einsums (which the stacked layout needs).
  """
  num_layers, batch, slots, kv_heads, head_dim = cache.k.shape

  def split(c):
    return tuple(jnp.swapaxes(c[i], 1, 2).reshape(batch * kv_heads, slots, head_dim)
                 for i in range(num_layers))

  return cache._replace(k=split(cache.k), v=split(cache.v))
