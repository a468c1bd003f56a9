"""Log-probabilities of given tokens under the model: the one jitted function behind the
multiple-choice and perplexity evaluations.

    fn = target_logprobs_fn(cfg)
    logp = fn(params, inputs, targets, segment_ids, positions)    # [B, T] float32

inputs/targets/segment_ids/positions are [B, T] int32 (packed rows: segment 0 is padding, each
piece restarts its positions at 0, attention never crosses segments). logp[b, t] is
log softmax(logits[b, t])[targets[b, t]]; callers mask what they need. Compiled once per (B, T).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from phi_jax.models import Transformer
from phi_jax.models.config import ModelConfig


@functools.lru_cache(maxsize=16)
def target_logprobs_fn(cfg: ModelConfig) -> Callable:
  model = Transformer(cfg)

  @jax.jit
  def fn(params, inputs, targets, segment_ids, positions):
    logits = model.apply({"params": params}, inputs, positions=positions, segment_ids=segment_ids)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]

  return fn


def pack(lengths: list[int], length: int) -> tuple[list[list[int]], list[tuple[int, int]]]:
  """First-fit (longest first) packing of pieces of the given lengths (each <= length) into rows.

  Returns (the piece indices in each row, (row, offset) of each piece).
  """
  rows: list[list[int]] = []
  room: list[int] = []
  where: list[tuple[int, int]] = [(0, 0)] * len(lengths)
  for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
    n = lengths[i]
    if n > length:
      raise ValueError(f"piece {i} has {n} tokens > the row length {length}")
    for r, free in enumerate(room):
      if free >= n:
        where[i] = (r, length - free)
        rows[r].append(i)
        room[r] -= n
        break
    else:
      where[i] = (len(rows), 0)
      rows.append([i])
      room.append(length - n)
  return rows, where


def sequence_logprobs(cfg: ModelConfig, params, sequences: list[list[int]],
                      score_from: list[int], *, batch_size: int = 8,
                      row_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """For each token sequence, the sum of log p(seq[t] | seq[:t]) over t >= score_from[i] (and
  t >= 1), and how many tokens that is.

  A sequence of n tokens takes n - 1 slots (inputs seq[:-1], targets seq[1:]); sequences are
  packed several to a row of `row_length` slots (default: the smallest power of two >= 16 that
  holds the longest, at most cfg.max_seq_len) and scored `batch_size` rows per call.
  Returns (sums [N] float64, counts [N] int64).
  """
  if not sequences:
    return np.zeros(0), np.zeros(0, np.int64)
  if min(len(s) for s in sequences) < 2:
    raise ValueError("every sequence needs >= 2 tokens (a context token and a scored token)")
  slots = [len(s) - 1 for s in sequences]
  if max(slots) > cfg.max_seq_len:
    raise ValueError(f"a sequence has {max(slots) + 1} tokens > max_seq_len + 1 = "
                     f"{cfg.max_seq_len + 1}; truncate it first")
  if row_length is None:
    row_length = 16
    while row_length < max(slots):
      row_length *= 2
    row_length = min(row_length, cfg.max_seq_len)
  rows, where = pack(slots, row_length)
  fn = target_logprobs_fn(cfg)
  sums = np.zeros(len(sequences))
  counts = np.zeros(len(sequences), np.int64)
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    shape = (batch_size, row_length)
    inputs, targets, seg, pos = (np.zeros(shape, np.int32) for _ in range(4))
    for r, members in enumerate(chunk):
      for s, i in enumerate(members, 1):
        seq, off, n = sequences[i], where[i][1], slots[i]
        inputs[r, off:off + n] = seq[:-1]
        targets[r, off:off + n] = seq[1:]
        seg[r, off:off + n] = s
        pos[r, off:off + n] = np.arange(n)
    logp = np.asarray(fn(params, inputs, targets, seg, pos), np.float64)
    for r, members in enumerate(chunk):
      for i in members:
        off, n = where[i][1], slots[i]
        first = max(score_from[i], 1)  # token t is the target of slot t - 1
        sums[i] = logp[r, off + first - 1:off + n].sum()
        counts[i] = n + 1 - first
  return sums, counts
