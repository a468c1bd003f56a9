"""The phi decoder: embed -> scanned blocks (parallel or serial) -> final norm -> LM head.

    model = Transformer(cfg)
    params = model.init(jax.random.key(0), tokens)['params']
    logits = model.apply({'params': params}, tokens)                 # [B, T, V] float32
    logits, cache = model.apply({'params': params}, tokens, cache=c)  # incremental decoding

Layer weights are stacked on a leading 'layers' axis (nn.scan), so `params['layers']` leaves are
[num_layers, ...] and a range of layers can be sliced. The KV cache (decoding.KVCache, k/v
[L, B, S, K, Dh]) is threaded through the scan carry and updated in place, one layer slice at a
time.

The model is built from three pieces, and these same pieces are what layer-by-layer decoding
(phi_jax.decoding.layouts, skipdecode, early_exit) runs, as pure functions of their params:
`embed` (tokens -> layer 0's input), `block` (one layer; `block_kv`: the keys/values it would
write), and `head` (final norm -> LM head -> float32 logits).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax
from jax.ad_checkpoint import checkpoint_name
import jax.numpy as jnp

from phi_jax.models.attention import (Attention, AttentionContext, LayerKV, StackedKV,
                                      attention_inputs)
from phi_jax.models.config import ModelConfig
from phi_jax.models.layers import INIT_STD, Mlp, Norm, constrain, dense

_ACT = ("activation_batch", "activation_length", "activation_embed")


def resolve_scan_unroll(cfg: ModelConfig, backend: Optional[str] = None) -> int:
  """Layers per iteration of the layer scan: cfg.scan_unroll, or for 0 ('auto') every layer on
  CPU (no stacked residuals, no dynamic slices of stacked weights) and 1 (rolled) elsewhere."""
  if cfg.scan_unroll:
    return cfg.scan_unroll
  backend = jax.default_backend() if backend is None else backend
  return cfg.num_layers if backend == "cpu" else 1


REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "save_attn_out": jax.checkpoint_policies.save_only_these_names("attn_out"),
}


class Block(nn.Module):
  """One decoder layer. Scanned: carry (x [B, T, D], kv), per-layer inputs (layer index, mask).

  kernel_layout: the projections' weight layout (layers.Dense; 'in_out' but in decoding).
  """

  cfg: ModelConfig
  deterministic: bool = True
  kernel_layout: str = "in_out"

  def setup(self):
    cfg = self.cfg
    self.input_norm = Norm(cfg)
    self.attn = Attention(cfg, self.deterministic, self.kernel_layout)
    self.mlp = Mlp(cfg, self.kernel_layout)
    if cfg.block == "serial":
      self.mlp_norm = Norm(cfg)

  def project_kv(self, x: jax.Array, ctx: AttentionContext) -> tuple[jax.Array, jax.Array]:
    """The keys and values [B, T, K, Dh] this layer writes for its input x [B, T, D]."""
    return self.attn.project_kv(self.input_norm(x), ctx)

  @nn.compact
  def __call__(self, carry: tuple[jax.Array, Optional[LayerKV]], layer_idx: jax.Array,
               layer_on: Optional[jax.Array], ctx: AttentionContext):
    cfg = self.cfg
    x, kv = carry
    x = constrain(x, _ACT)
    drop = nn.Dropout(cfg.resid_dropout, deterministic=self.deterministic or cfg.resid_dropout == 0)
    h = self.input_norm(x)
    attn_out, kv = self.attn(h, ctx, layer_idx, kv)
    attn_out = checkpoint_name(attn_out, "attn_out")
    if cfg.block == "parallel":  # x + attn(ln(x)) + mlp(ln(x))
      y = x + (drop(attn_out) + drop(self.mlp(h)))
    else:  # x + attn(norm(x)); then + mlp(norm(.))
      y = x + drop(attn_out)
      y = y + drop(self.mlp(self.mlp_norm(y)))
    if layer_on is not None:  # [B, T] bool: where False this layer is the identity
      y = jnp.where(layer_on[..., None], y, x)
    return (constrain(y, _ACT), kv), None


class Transformer(nn.Module):
  """The phi-family decoder-only language model: `embed_tokens` -> blocks -> `logits`.

  kernel_layout: the projections' weight layout (layers.Dense). 'in_out' is the model's;
  decoding layouts (phi_jax.decoding.layouts) apply the pieces to 'out_in' weights.
  """

  cfg: ModelConfig
  kernel_layout: str = "in_out"

  def setup(self):
    cfg = self.cfg
    self.embed = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=jnp.dtype(cfg.dtype),
                          param_dtype=jnp.dtype(cfg.param_dtype),
                          embedding_init=nn.with_logical_partitioning(
                              nn.initializers.normal(INIT_STD), ("vocab", "embed")))
    self.final_norm = Norm(cfg)
    if not cfg.tie_embeddings:
      self.lm_head = dense(cfg, cfg.vocab_size, -1, ("embed", "vocab"), bias=cfg.lm_head_bias,
                           name=None, kernel_layout=self.kernel_layout)

  def embed_tokens(self, tokens: jax.Array) -> jax.Array:
    """tokens [B, T] -> the input of layer 0 [B, T, D] (embedding x embedding_multiplier)."""
    x = self.embed(tokens)
    if self.cfg.embedding_multiplier != 1.0:
      x = x * jnp.asarray(self.cfg.embedding_multiplier, x.dtype)
    return x

  def logits(self, x: jax.Array) -> jax.Array:
    """The residual stream x [B, T, D] after the last layer -> float32 logits [B, T, V]: final
    norm, LM head (or the tied embedding), logit multiplier."""
    cfg = self.cfg
    x = self.final_norm(x)
    logits = self.embed.attend(x) if cfg.tie_embeddings else self.lm_head(x)
    logits = logits.astype(jnp.float32)
    if cfg.logit_multiplier != 1.0:
      logits = logits * jnp.float32(cfg.logit_multiplier)
    return constrain(logits, ("activation_batch", "activation_length", "activation_vocab"))

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

    x = self.embed_tokens(tokens)
    if cfg.embd_dropout > 0 and not deterministic:
      x = nn.Dropout(cfg.embd_dropout)(x, deterministic=False)
    x = constrain(x, _ACT)

    ctx, k_pos, k_seg = attention_inputs(cfg, positions, segment_ids, cache, long_rope)
    kv = None if cache is None else StackedKV(cache.k, cache.v)

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
    stack = nn.scan(
        block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
        in_axes=(0, 0, nn.broadcast), length=cfg.num_layers, unroll=resolve_scan_unroll(cfg),
        metadata_params={nn.PARTITION_NAME: "layers"})
    layer_ids = jnp.arange(cfg.num_layers, dtype=jnp.int32)
    (x, kv), _ = stack(cfg, deterministic, self.kernel_layout, name="layers")(
        (x, kv), layer_ids, layer_on, ctx)

    if last_only:
      x = x[:, -1:]
    if return_hidden:
      if cache is None:
        return x
      raise ValueError("return_hidden is for full forward passes; pass cache=None")
    logits = self.logits(x)
    if cache is None:
      return logits
    new_cache = cache._replace(k=kv.k, v=kv.v, positions=k_pos, segment_ids=k_seg,
                               index=ctx.cache_index + length)
    return logits, new_cache


# ---- The pieces as pure functions of their params (layer-by-layer decoding runs these) ----------


def embed(cfg: ModelConfig, params: Mapping[str, Any], tokens: jax.Array) -> jax.Array:
  """`Transformer.embed_tokens`: tokens [B, T] -> layer 0's input [B, T, D].
  params: the model's (at least 'embed')."""
  return Transformer(cfg).apply({"params": {"embed": params["embed"]}}, tokens,
                                method=Transformer.embed_tokens)


def head(cfg: ModelConfig, params: Mapping[str, Any], x: jax.Array, *,
         kernel_layout: str = "in_out") -> jax.Array:
  """`Transformer.logits`: the residual stream x [B, T, D] -> float32 logits [B, T, V].
  params: the model's (at least 'final_norm' and 'lm_head', or 'embed' when tied)."""
  names = ("final_norm", "embed" if cfg.tie_embeddings else "lm_head")
  return Transformer(cfg, kernel_layout).apply({"params": {n: params[n] for n in names}}, x,
                                               method=Transformer.logits)


def block(cfg: ModelConfig, layer_params: Mapping[str, Any], layer_idx: int, x: jax.Array,
          kv: Optional[LayerKV], ctx: AttentionContext, *, kernel_layout: str = "in_out"
          ) -> tuple[jax.Array, Optional[LayerKV]]:
  """One decoder layer (`Block`, deterministic): (x [B, T, D], its cache) -> the new ones.
  layer_params: one layer's params (no leading layer axis)."""
  (x, kv), _ = Block(cfg, kernel_layout=kernel_layout).apply(
      {"params": layer_params}, (x, kv), jnp.int32(layer_idx), None, ctx)
  return x, kv


def block_kv(cfg: ModelConfig, layer_params: Mapping[str, Any], x: jax.Array,
             ctx: AttentionContext, *, kernel_layout: str = "in_out"
             ) -> tuple[jax.Array, jax.Array]:
  """`Block.project_kv`: the keys and values [B, T, K, Dh] one layer writes for its input x
  [B, T, D] (its input norm, k/v projections and rotary), without running the layer."""
  return Block(cfg, kernel_layout=kernel_layout).apply({"params": layer_params}, x, ctx,
                                                       method=Block.project_kv)
