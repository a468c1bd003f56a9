"""The LM head and the next-token loss over chunks of the sequence, never the full [B, T, V] logits.

The full-logits loss (`step.cross_entropy(model(tokens), ...)`) holds the float32 logits [B, T, V]
and, in the backward, their gradient (and XLA's copies of both): at phi-1's 8 x 2048 rows per
device and 51,200 tokens that is ~3.4 GB per buffer. Here the residual stream after the last
layer, hidden [B, T, D], is split along T into chunks of `chunk` positions, and each chunk runs the
model's own head (`transformer.head`: final norm -> LM head or the tied embedding -> float32 ->
logit_multiplier) and its log-sum-exp as the body of a `lax.scan` under `jax.checkpoint`: the
forward saves nothing of a chunk and the backward recomputes its logits, so forward and backward
hold one chunk's logits [B, chunk, V] (and their gradient) at a time. The price: the head's
matmul runs once more (2 B T D V flops). On phi-1 1.3b (8 x 2048 rows per device, V 51,200) the
AOT report's temporaries fall from 17.2 to 9.9 GiB per device at chunk 128..512 alike (a
custom_vjp that saves the log-sum-exp and recomputes the logits in its backward gave 10.7 GiB).

    losses = token_losses(cfg, params, hidden, targets, chunk=256)     # [B, T] float32
    total, count = chunked_cross_entropy(cfg, params, hidden, targets, loss_mask, chunk=256)

Chunks run along T, not over the flattened B x T tokens, so the batch axis keeps its sharding
(data x fsdp) in every chunk; T is padded to a multiple of `chunk` (padded positions are computed
and dropped).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from phi_jax.models import ModelConfig
from phi_jax.models import transformer


def head_params(cfg: ModelConfig, params: Mapping[str, Any]) -> dict[str, Any]:
  """The parameters `transformer.head` reads: 'final_norm' and 'lm_head' (or 'embed' if tied)."""
  names = ("final_norm", "embed" if cfg.tie_embeddings else "lm_head")
  return {n: params[n] for n in names}


def _to_chunks(x: jax.Array, chunk: int) -> jax.Array:
  """[B, T, ...] -> [n, B, chunk, ...], T zero-padded to n x chunk."""
  batch, length = x.shape[:2]
  n = -(-length // chunk)
  pad = n * chunk - length
  if pad:
    x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
  return jnp.swapaxes(x.reshape(batch, n, chunk, *x.shape[2:]), 0, 1)


def _from_chunks(x: jax.Array, length: int) -> jax.Array:
  """[n, B, chunk, ...] -> [B, T, ...] (the padding dropped)."""
  x = jnp.swapaxes(x, 0, 1)
  return x.reshape(x.shape[0], -1, *x.shape[3:])[:, :length]


def token_losses(cfg: ModelConfig, params: Mapping[str, Any], hidden: jax.Array,
                 targets: jax.Array, chunk: int) -> jax.Array:
  """Per-token next-token losses -log softmax(head(hidden))[target], chunk by chunk.

  Args:
    cfg: the model's config (final norm, tied embeddings, lm_head bias, logit_multiplier).
    params: the model's params (at least those `head_params` picks; the rest are ignored).
    hidden: [B, T, D] the residual stream after the last layer, before the final norm
      (`Transformer(cfg).apply(..., return_hidden=True)`), in the compute dtype.
    targets: [B, T] int token ids.
    chunk: sequence positions per chunk (>= 1); each chunk's logits are [B, chunk, V].

  Returns:
    float32 [B, T], equal (up to float rounding) to
    `optax.softmax_cross_entropy_with_integer_labels(transformer.head(cfg, params, hidden),
    targets)`; differentiable with respect to params (the head's) and hidden.
  """
  if chunk < 1:
    raise ValueError(f"chunk={chunk} must be >= 1 sequence positions")
  length = hidden.shape[1]
  chunk = min(int(chunk), length)
  params = head_params(cfg, params)

  # Rematerialised: the forward keeps nothing of a chunk but its inputs (hidden and targets are
  # held anyway); the backward recomputes the chunk's logits, takes their gradient and drops them.
  @jax.checkpoint
  def chunk_losses(p, x, t):  # x [B, c, D], t [B, c] -> [B, c]
    logits = transformer.head(cfg, p, x)  # [B, c, V] float32
    picked = jnp.take_along_axis(logits, t[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - picked

  def body(_, inputs):
    return None, chunk_losses(params, *inputs)

  _, losses = jax.lax.scan(
      body, None, (_to_chunks(hidden, chunk), _to_chunks(targets.astype(jnp.int32), chunk)))
  return _from_chunks(losses, length)


def chunked_cross_entropy(cfg: ModelConfig, params: Mapping[str, Any], hidden: jax.Array,
                          targets: jax.Array, mask: jax.Array, chunk: int
                          ) -> tuple[jax.Array, jax.Array]:
  """(sum of masked token losses, number of masked tokens), as `step.cross_entropy` of the full
  logits, without them. hidden [B, T, D] (before the final norm), targets / mask [B, T]; see
  `token_losses`."""
  mask = mask.astype(jnp.float32)
  losses = token_losses(cfg, params, hidden, targets, chunk)
  return jnp.sum(losses * mask), jnp.sum(mask)
