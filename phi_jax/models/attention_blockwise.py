"""Blockwise (flash-style) attention in plain JAX: O(T) memory, every backend, exact softmax.

    out = blockwise_attention(q, k, v, mask_fn, mask_args, causal, settings, dropout_key)

The keys are visited in blocks of `key_block` with an online softmax (running max m, running
sum l and a float32 accumulator per query), the queries in blocks of `query_block`; a block's
mask is computed from its indices by `mask_fn`, so no [.., T, S] tensor is ever built. A
`jax.custom_vjp` stores only the output and the log-sum-exp per query and recomputes each
block's probabilities in the backward pass (FlashAttention-2's algorithm), so the backward is
O(T) too. Key blocks that the causal slot order hides from a whole query block are skipped, in
the forward and in the backward (a `fori_loop` over a traced range).

Shapes: B batch, T queries, S keys, K kv heads, G query heads per kv head, Dh head_dim.
  q [B, T, K, G, Dh]; k, v [B, S, K, Dh]; out [B, T, K, G, Dh] in q's dtype.

mask_fn(mask_args, qi, ki) -> bool, broadcastable to [B, K, G, len(qi), len(ki)]: which keys
  ki [bk] the queries qi [bq] see (int32 indices into T and S; indices past the end, in a padded
  last block, are clipped by mask_fn's gathers and masked out here). mask_args: a pytree of
  arrays (it gets no gradient).
causal: (q_order [T], k_order [S]) int32, both non-decreasing, with the promise that a key whose
  k_order is greater than a query's q_order is masked (cache slots); or None (no skipping).

Numerics, matched to the 'xla' implementation (attention.attend): scores and softmax in float32,
masked scores set to float32's most negative value, probabilities cast to the compute dtype
before they weight the values. A query that sees no key at all (a padding query) gets the plain
mean of the S values, which is exactly what the 'xla' softmax over S equal masked scores gives
(and its gradient: dv += dout / S, nothing to q and k).

Dropout (settings.dropout_rate > 0): each block's keep-mask is drawn from
fold_in(fold_in(dropout_key, query block), key block) and drawn again in the backward. It is not
bitwise the mask the 'xla' path draws (that one is one [B, K, G, T, S] draw), but has the same
distribution: every probability kept independently with 1 - rate and scaled by 1 / (1 - rate),
the softmax normaliser taken before dropout. Padding queries get no dropout.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

MASK_VALUE = float(jnp.finfo(jnp.float32).min)

MaskFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class BlockwiseSettings:
  """The static part of a call. scale: multiplies q k^T; query_block / key_block: block sizes
  (clipped to T and S); dropout_rate: attention dropout (0: none); dtype: of the probabilities
  that weight the values (the compute dtype)."""
  scale: float
  query_block: int = 512
  key_block: int = 512
  dropout_rate: float = 0.0
  dtype: str = "float32"


def _pad_axis(x: jax.Array, axis: int, size: int) -> jax.Array:
  pad = size - x.shape[axis]
  if pad == 0:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, pad)
  return jnp.pad(x, widths)


def _blocks(n: int, block: int) -> tuple[int, int]:
  """(block size, number of blocks) covering n."""
  block = max(1, min(block, n))
  return block, -(-n // block)


def _key_block_range(causal, num_q: int, num_k: int, bq: int, bk: int, qb: jax.Array):
  """Key blocks [lo, hi) that query block qb may see (all without causal information)."""
  if causal is None:
    return 0, num_k
  q_order, k_order = causal
  last_q = jnp.minimum(qb * bq + bq - 1, q_order.shape[0] - 1)
  visible = jnp.searchsorted(k_order, q_order[last_q], side="right")  # keys with order <= q's
  return 0, jnp.clip((visible + bk - 1) // bk, 0, num_k)


def _query_block_range(causal, num_q: int, num_k: int, bq: int, bk: int, kb: jax.Array):
  """Query blocks [lo, hi) that may see key block kb."""
  if causal is None:
    return 0, num_q
  q_order, k_order = causal
  first_k = jnp.minimum(kb * bk, k_order.shape[0] - 1)
  first_q = jnp.searchsorted(q_order, k_order[first_k], side="left")  # queries with order >= k's
  return jnp.clip(first_q // bq, 0, num_q), num_q


def _block_scores(st: BlockwiseSettings, mask_fn: MaskFn, mask_args, q_blk, k_blk, qi, ki,
                  num_keys: int):
  """Masked float32 scores [B, K, G, bq, bk] of a (query block, key block) pair, and the mask."""
  s = jnp.einsum("btkgd,bskd->bkgts", q_blk, k_blk, preferred_element_type=jnp.float32)
  s = s.astype(jnp.float32) * jnp.float32(st.scale)
  mask = mask_fn(mask_args, qi, ki) & (ki < num_keys)
  return jnp.where(mask, s, MASK_VALUE)


def _keep(st: BlockwiseSettings, key, qb, kb, shape):
  """The dropout keep-mask of block (qb, kb), or None without dropout."""
  if st.dropout_rate <= 0.0:
    return None
  key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(key), qb), kb)
  return jax.random.bernoulli(key, 1.0 - st.dropout_rate, shape)


def _forward(st: BlockwiseSettings, mask_fn: MaskFn, q, k, v, mask_args, causal, key):
  """(out [B, T, K, G, Dh], residuals)."""
  batch, length, kv_heads, groups, head_dim = q.shape
  num_keys = k.shape[1]
  bq, nq = _blocks(length, st.query_block)
  bk, nk = _blocks(num_keys, st.key_block)
  qp = _pad_axis(q, 1, bq * nq)
  kp, vp = _pad_axis(k, 1, bk * nk), _pad_axis(v, 1, bk * nk)
  dtype = jnp.dtype(st.dtype)

  def query_block(qb):
    q_blk = jax.lax.dynamic_slice_in_dim(qp, qb * bq, bq, axis=1)
    qi = qb * bq + jnp.arange(bq, dtype=jnp.int32)

    def key_step(kb, carry):
      m, l, acc = carry
      k_blk = jax.lax.dynamic_slice_in_dim(kp, kb * bk, bk, axis=1)
      v_blk = jax.lax.dynamic_slice_in_dim(vp, kb * bk, bk, axis=1)
      ki = kb * bk + jnp.arange(bk, dtype=jnp.int32)
      s = _block_scores(st, mask_fn, mask_args, q_blk, k_blk, qi, ki, num_keys)
      m_new = jnp.maximum(m, s.max(axis=-1))
      p = jnp.exp(s - m_new[..., None])
      corr = jnp.exp(m - m_new)
      l = l * corr + p.sum(axis=-1)
      keep = _keep(st, key, qb, kb, p.shape)
      if keep is not None:
        p = jnp.where(keep, p / (1.0 - st.dropout_rate), 0.0)
      pv = jnp.einsum("bkgts,bskd->bkgtd", p.astype(dtype), v_blk.astype(dtype),
                      preferred_element_type=jnp.float32)
      return m_new, l, acc * corr[..., None] + pv.astype(jnp.float32)

    shape = (batch, kv_heads, groups, bq)
    init = (jnp.full(shape, MASK_VALUE, jnp.float32), jnp.zeros(shape, jnp.float32),
            jnp.zeros((*shape, head_dim), jnp.float32))
    lo, hi = _key_block_range(causal, nq, nk, bq, bk, qb)
    m, l, acc = jax.lax.fori_loop(lo, hi, key_step, init)
    seen = m > MASK_VALUE  # the query saw at least one key
    out = acc / jnp.where(seen, l, 1.0)[..., None]
    lse = jnp.where(seen, m + jnp.log(jnp.where(seen, l, 1.0)), jnp.inf)
    return out, lse, seen

  out, lse, seen = jax.lax.map(query_block, jnp.arange(nq, dtype=jnp.int32))
  # [nq, B, K, G, bq, ...] -> [B, K, G, T, ...]
  out = jnp.moveaxis(out, 0, 3).reshape(batch, kv_heads, groups, nq * bq, head_dim)[..., :length, :]
  lse = jnp.moveaxis(lse, 0, 3).reshape(batch, kv_heads, groups, nq * bq)[..., :length]
  seen = jnp.moveaxis(seen, 0, 3).reshape(batch, kv_heads, groups, nq * bq)[..., :length]
  mean_v = jnp.mean(v.astype(jnp.float32), axis=1)  # [B, K, Dh]: what a padding query gets
  out = jnp.where(seen[..., None], out, mean_v[:, :, None, None, :])
  out = jnp.transpose(out, (0, 3, 1, 2, 4)).astype(q.dtype)  # [B, T, K, G, Dh]
  return out, (q, k, v, out, lse, seen, mask_args, causal, key)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _attention(st, mask_fn, q, k, v, mask_args, causal, key):
  return _forward(st, mask_fn, q, k, v, mask_args, causal, key)[0]


def _attention_fwd(st, mask_fn, q, k, v, mask_args, causal, key):
  return _forward(st, mask_fn, q, k, v, mask_args, causal, key)


def _attention_bwd(st, mask_fn, res, dout):
  q, k, v, out, lse, seen, mask_args, causal, key = res
  batch, length, kv_heads, groups, head_dim = q.shape
  num_keys = k.shape[1]
  bq, nq = _blocks(length, st.query_block)
  bk, nk = _blocks(num_keys, st.key_block)
  dtype = jnp.dtype(st.dtype)
  seen_t = jnp.transpose(seen, (0, 3, 1, 2))[..., None]  # [B, T, K, G, 1]
  dout_f = dout.astype(jnp.float32)
  # Padding queries: out = mean(v), so dv += sum of their dout / S; nothing flows to q, k.
  dv_pad = jnp.sum(jnp.where(seen_t, 0.0, dout_f), axis=(1, 3)) / num_keys  # [B, K, Dh]
  do = jnp.where(seen_t, dout_f, 0.0)
  delta = jnp.einsum("btkgd,btkgd->bkgt", do, out.astype(jnp.float32))  # rowsum(dP * P)
  qp = _pad_axis(q, 1, bq * nq)
  dop = _pad_axis(do.astype(q.dtype), 1, bq * nq)
  lsep = _pad_axis(lse, 3, bq * nq)
  deltap = _pad_axis(delta, 3, bq * nq)
  kp, vp = _pad_axis(k, 1, bk * nk), _pad_axis(v, 1, bk * nk)

  def key_block(dq, kb):
    k_blk = jax.lax.dynamic_slice_in_dim(kp, kb * bk, bk, axis=1)
    v_blk = jax.lax.dynamic_slice_in_dim(vp, kb * bk, bk, axis=1)
    ki = kb * bk + jnp.arange(bk, dtype=jnp.int32)

    def query_step(qb, carry):
      dq, dk_blk, dv_blk = carry
      q_blk = jax.lax.dynamic_slice_in_dim(qp, qb * bq, bq, axis=1)
      do_blk = jax.lax.dynamic_slice_in_dim(dop, qb * bq, bq, axis=1)
      lse_blk = jax.lax.dynamic_slice_in_dim(lsep, qb * bq, bq, axis=3)
      delta_blk = jax.lax.dynamic_slice_in_dim(deltap, qb * bq, bq, axis=3)
      qi = qb * bq + jnp.arange(bq, dtype=jnp.int32)
      s = _block_scores(st, mask_fn, mask_args, q_blk, k_blk, qi, ki, num_keys)
      p = jnp.exp(s - lse_blk[..., None])  # [B, K, G, bq, bk]; 0 where masked or unseen
      dp = jnp.einsum("btkgd,bskd->bkgts", do_blk, v_blk.astype(do_blk.dtype),
                      preferred_element_type=jnp.float32).astype(jnp.float32)
      keep = _keep(st, key, qb, kb, p.shape)
      pd = p
      if keep is not None:
        pd = jnp.where(keep, p / (1.0 - st.dropout_rate), 0.0)
        dp = jnp.where(keep, dp / (1.0 - st.dropout_rate), 0.0)
      dv_blk = dv_blk + jnp.einsum("bkgts,btkgd->bskd", pd.astype(dtype), do_blk.astype(dtype),
                                   preferred_element_type=jnp.float32)
      ds = (p * (dp - delta_blk[..., None]) * jnp.float32(st.scale)).astype(q.dtype)
      dq_blk = jnp.einsum("bkgts,bskd->btkgd", ds, k_blk.astype(q.dtype),
                          preferred_element_type=jnp.float32)
      dq = jax.lax.dynamic_update_slice_in_dim(
          dq, jax.lax.dynamic_slice_in_dim(dq, qb * bq, bq, axis=1) + dq_blk, qb * bq, axis=1)
      dk_blk = dk_blk + jnp.einsum("bkgts,btkgd->bskd", ds, q_blk,
                                   preferred_element_type=jnp.float32)
      return dq, dk_blk, dv_blk

    zeros = jnp.zeros((batch, bk, kv_heads, head_dim), jnp.float32)
    lo, hi = _query_block_range(causal, nq, nk, bq, bk, kb)
    dq, dk_blk, dv_blk = jax.lax.fori_loop(lo, hi, query_step, (dq, zeros, zeros))
    return dq, (dk_blk, dv_blk)

  dq0 = jnp.zeros((batch, bq * nq, kv_heads, groups, head_dim), jnp.float32)
  dq, (dk, dv) = jax.lax.scan(key_block, dq0, jnp.arange(nk, dtype=jnp.int32))
  # [nk, B, bk, K, Dh] -> [B, S, K, Dh]
  dk = jnp.moveaxis(dk, 0, 1).reshape(batch, nk * bk, kv_heads, head_dim)[:, :num_keys]
  dv = jnp.moveaxis(dv, 0, 1).reshape(batch, nk * bk, kv_heads, head_dim)[:, :num_keys]
  dv = dv + dv_pad[:, None]
  return (dq[:, :length].astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype),
          None, None, None)


_attention.defvjp(_attention_fwd, _attention_bwd)


def blockwise_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask_fn: MaskFn,
                        mask_args: Any, causal: Optional[tuple[jax.Array, jax.Array]],
                        settings: BlockwiseSettings,
                        dropout_key: Optional[jax.Array] = None) -> jax.Array:
  """softmax(q k^T * scale, masked) v, blockwise; see the module docstring for the arguments.

  q [B, T, K, G, Dh], k, v [B, S, K, Dh] -> [B, T, K, G, Dh]. dropout_key: a PRNG key (raw
  uint32 [2] or typed), needed when settings.dropout_rate > 0.
  """
  if q.ndim != 5 or k.ndim != 4 or k.shape != v.shape or q.shape[0] != k.shape[0] \
      or q.shape[2] != k.shape[2] or q.shape[4] != k.shape[3]:
    raise ValueError(f"blockwise_attention expects q [B, T, K, G, Dh] and k, v [B, S, K, Dh]; "
                     f"got q {q.shape}, k {k.shape}, v {v.shape}")
  if settings.dropout_rate > 0.0:
    if dropout_key is None:
      raise ValueError("blockwise_attention with dropout_rate > 0 needs a dropout_key")
    if jnp.issubdtype(dropout_key.dtype, jax.dtypes.prng_key):
      dropout_key = jax.random.key_data(dropout_key)
  else:
    dropout_key = None
  return _attention(settings, mask_fn, q, k, v, mask_args, causal, dropout_key)
