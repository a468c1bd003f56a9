"""Post-training examples as the pipeline packs them: chat conversations (SFT) and preference pairs
(DPO). `pipeline.make_dataset` uses these for data.format 'chat' and 'preference'.

The data layer does not know chat templates (phi_jax.chat sits above it): the caller passes
`encode_chat(messages) -> (ids, assistant_mask)`, e.g.
`functools.partial(chat.encode_with_assistant_mask, template='phi-3', tokenizer=tok)`.

chat: a record {'messages': [{'role', 'content'}, ...]} (a list, or its JSON text as the
`conversations` dataset stores it) -> ids, mask = encode_chat(messages); per token

    input = ids[t],  target = ids[t + 1],  loss_mask = mask[t + 1]

so exactly the assistant tokens (each reply's content and its end-of-turn token) are targets. The
template writes every special token (no EOS is appended). Conversations are packed whole, first-fit
(as prompt_completion); one longer than seq_len keeps its first seq_len tokens.

preference: a record {'prompt': str or 'messages': [...], 'chosen': str, 'rejected': str} -> two
sequences, prompt + chosen and prompt + rejected, packed together as ONE unit (the pair is never
split across rows or batches). With 'prompt', a completion's ids are those that follow the prompt
in the joint encoding, then EOS (as prompt_completion); with 'messages', each sequence is
encode_chat(messages + [{'role': 'assistant', 'content': completion}]) and only the final reply
(the last run of its assistant mask) is a target. A sequence longer than seq_len // 2 loses prompt
tokens from the left (keeping one), then completion tokens from the right. Batch features, in
addition to the five of every format:

    segment_ids      2k - 1 = the chosen sequence of the row's k-th pair, 2k = its rejected one
    positions        restart at 0 at each sequence
    loss_mask        1 on the completion's targets only
    reference_logps  [B, T] float32: a precomputed reference log-prob of each sequence (the
                     record's 'reference_logps' = [chosen, rejected]) on the sequence's first
                     token, 0 elsewhere; all 0 without one. Summed per segment it is the
                     reference's sequence log-prob.

Each sequence has >= 2 tokens (a prompt token and a target), so a row holds at most seq_len // 4
pairs (MAX_PAIRS_DIVISOR).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping, Optional, Sequence

import grain
import numpy as np

EncodeChat = Callable[[Sequence[Mapping[str, Any]]], tuple[list[int], list[int]]]
MAX_PAIRS_DIVISOR = 4  # pairs per row <= seq_len // 4
PAIR_COLUMNS = 6  # input, target, loss_mask, half (0 chosen, 1 rejected), position, ref bits


def _need_encoder(encode_chat: Optional[EncodeChat], fmt: str) -> EncodeChat:
  if encode_chat is None:
    raise ValueError(f"data.format={fmt!r} with messages needs encode_chat= (messages -> (ids, "
                     "assistant mask)), e.g. functools.partial(phi_jax.chat."
                     "encode_with_assistant_mask, template='phi-3', tokenizer=tok); the training "
                     "loop passes it from config.data.chat_template")
  return encode_chat


def messages_of(record: Any, required: bool = True) -> Optional[list[dict[str, Any]]]:
  """The record's 'messages' as a list of dicts (a list, or JSON text of one); None when absent
  or empty and not `required`."""
  value = record.get("messages") if isinstance(record, Mapping) else None
  if isinstance(value, bytes):
    value = value.decode("utf-8")
  if isinstance(value, str):
    value = json.loads(value) if value.strip() else None
  if value is None or (isinstance(value, (list, tuple)) and not value):
    if required:
      keys = list(record)[:8] if isinstance(record, Mapping) else type(record).__name__
      raise ValueError("a chat record needs 'messages': a non-empty list of {'role', 'content'} "
                       f"dicts; got {keys}")
    return None
  if not isinstance(value, (list, tuple)):
    raise ValueError(f"'messages' must be a list of {{'role', 'content'}} dicts, got "
                     f"{type(value).__name__}")
  return [dict(m) for m in value]


def _text(record: Mapping[str, Any], key: str) -> str:
  if key not in record:
    raise ValueError(f"a preference record needs {key!r}; got keys {list(record)[:8]}")
  value = record[key]
  return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


class TokenizeChat(grain.transforms.Map):
  """{'messages'} -> {'tokens': [n, 3] int32}: input, target, loss_mask (module doc);
  n <= seq_len."""

  def __init__(self, encode_chat: Optional[EncodeChat], seq_len: int):
    self.encode_chat = _need_encoder(encode_chat, "chat")
    self.seq_len = seq_len

  def map(self, record: Any) -> dict[str, np.ndarray]:
    ids, mask = self.encode_chat(messages_of(record))
    if len(ids) != len(mask) or not ids:
      raise ValueError(f"encode_chat returned {len(ids)} ids and {len(mask)} mask values; "
                       "expected equally many, at least one")
    ids = np.asarray(ids, np.int32)[:self.seq_len]
    mask = np.asarray(mask, np.int32)[:self.seq_len]
    tokens = np.zeros((len(ids), 3), np.int32)
    tokens[:, 0] = ids
    tokens[:-1, 1] = ids[1:]
    tokens[:-1, 2] = mask[1:]
    return {"tokens": tokens}


def _last_run(mask: Sequence[int]) -> np.ndarray:
  """The mask with only its last contiguous run of ones kept."""
  mask = np.asarray(mask, np.int32)
  ones = np.flatnonzero(mask)
  out = np.zeros_like(mask)
  if len(ones):
    end = ones[-1] + 1
    start = end
    while start > 0 and mask[start - 1]:
      start -= 1
    out[start:end] = 1
  return out


class TokenizePair(grain.transforms.Map):
  """{'prompt' | 'messages', 'chosen', 'rejected'[, 'reference_logps']} -> {'tokens': [n, 6]
  int32}: the chosen then the rejected sequence (module doc), n <= seq_len."""

  def __init__(self, tokenizer: Any, seq_len: int, encode_chat: Optional[EncodeChat] = None,
               prompt_key: str = "prompt"):
    self.tokenizer, self.seq_len, self.prompt_key = tokenizer, seq_len, prompt_key
    self.encode_chat = encode_chat
    self.eos_id = getattr(tokenizer, "eos_id", None)

  def _sequence(self, record: Mapping[str, Any], completion: str) -> tuple[list[int], np.ndarray]:
    """(ids, target mask over ids: 1 on the ids that are completion tokens)."""
    messages = messages_of(record, required=False)
    if messages is not None:
      encode = _need_encoder(self.encode_chat, "preference")
      ids, mask = encode(messages + [{"role": "assistant", "content": completion}])
      return list(ids), _last_run(mask)
    if self.eos_id is None:
      raise ValueError(f"The tokenizer {self.tokenizer!r} has no eos_id: completions end with EOS")
    prompt_text = _text(record, self.prompt_key)
    prompt = list(self.tokenizer.encode(prompt_text))
    if not prompt:
      raise ValueError("a preference record has an empty prompt: at least one prompt token is "
                       "needed to predict the completion from")
    joint = list(self.tokenizer.encode(prompt_text + completion))
    if joint[:len(prompt)] == prompt and len(joint) > len(prompt):
      target = joint[len(prompt):]
    else:
      target = list(self.tokenizer.encode(completion))
    ids = prompt + target + [self.eos_id]
    return ids, np.asarray([0] * len(prompt) + [1] * (len(target) + 1), np.int32)

  def _fit(self, ids: list[int], mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    budget = self.seq_len // 2
    ids = np.asarray(ids, np.int32)
    ones = np.flatnonzero(mask)
    if not len(ones) or ones[0] == 0:
      raise ValueError("a preference sequence needs at least one prompt token followed by at "
                       "least one completion token")
    first = ones[0]  # prompt = ids[:first]
    if len(ids) > budget:
      cut = min(first - 1, len(ids) - budget)  # drop prompt tokens from the left, keep one
      ids, mask = ids[cut:], mask[cut:]
      ids, mask = ids[:budget], mask[:budget]
    return ids, mask

  def map(self, record: Any) -> dict[str, np.ndarray]:
    if not isinstance(record, Mapping):
      raise ValueError(f"a preference record must be a mapping, got {type(record).__name__}")
    refs = record.get("reference_logps")
    refs = (np.zeros(2, np.float32) if refs is None else
            np.asarray(refs, np.float32).reshape(2))
    parts = []
    for half, key in enumerate(("chosen", "rejected")):
      ids, mask = self._fit(*self._sequence(record, _text(record, key)))
      n = len(ids)
      tokens = np.zeros((n, PAIR_COLUMNS), np.int32)
      tokens[:, 0] = ids
      tokens[:-1, 1] = ids[1:]
      tokens[:-1, 2] = mask[1:]
      tokens[:, 3] = half
      tokens[:, 4] = np.arange(n)
      tokens[0, 5] = refs[half:half + 1].view(np.int32)[0]
      parts.append(tokens)
    return {"tokens": np.concatenate(parts)}


def pair_features(tokens: np.ndarray, packed_segment_ids: np.ndarray) -> dict[str, np.ndarray]:
  """Packed preference tokens [B, T, 6] and the packer's segment ids [B, T] (one per pair) ->
  the batch features of the module doc."""
  real = packed_segment_ids > 0
  half = tokens[..., 3]
  return {"inputs": tokens[..., 0], "targets": tokens[..., 1],
          "segment_ids": np.where(real, 2 * packed_segment_ids - 1 + half, 0).astype(np.int32),
          "positions": np.where(real, tokens[..., 4], 0).astype(np.int32),
          "loss_mask": (tokens[..., 2] * real).astype(np.float32),
          "reference_logps": np.where(real, np.ascontiguousarray(tokens[..., 5]).view(np.float32),
                                      0).astype(np.float32)}


def one_pair_per_row(pairs: Sequence[np.ndarray], seq_len: int,
                     rows: Optional[int] = None) -> dict[str, np.ndarray]:
  """TokenizePair outputs ([n, 6] each) as a batch of one pair per row, padded to `rows` rows
  (default len(pairs)) of seq_len: what reference log-probs are precomputed on."""
  rows = len(pairs) if rows is None else rows
  tokens = np.zeros((rows, seq_len, PAIR_COLUMNS), np.int32)
  segment_ids = np.zeros((rows, seq_len), np.int32)
  for i, pair in enumerate(pairs):
    tokens[i, :len(pair)] = pair
    segment_ids[i, :len(pair)] = 1
  return pair_features(tokens, segment_ids)


class WithReference(Sequence):
  """`source` with record i given 'reference_logps' = values[i] ([chosen, rejected])."""

  def __init__(self, source: Sequence[Any], values: np.ndarray):
    if len(source) != len(values):
      raise ValueError(f"{len(values)} reference log-prob pairs for {len(source)} records")
    self.source, self.values = source, np.asarray(values, np.float32)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, i):
    return {**self.source[i], "reference_logps": self.values[i]}


__all__ = ["EncodeChat", "MAX_PAIRS_DIVISOR", "TokenizeChat", "TokenizePair", "WithReference",
           "messages_of", "one_pair_per_row", "pair_features"]
