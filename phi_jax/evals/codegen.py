"""Sampling program completions for the code benchmarks (HumanEval, MBPP).

    completions = complete(cfg, params, tok, prompts, stop=STOP, num_samples=10, temperature=0.8)
    completions[i][s]   # sample s for prompt i, cut at the first stop sequence

Prompts are sorted by length and decoded in batches with `phi_jax.decoding.generate` (one
compiled program per shape bucket). Each batch gets its own key, fold_in(key(seed), batch index),
so the samples are a function of (seed, prompts, batch_size).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax

from phi_jax.decoding import ensure_weights, generate
from phi_jax.models.config import ModelConfig


def truncate(text: str, stop: Sequence[str]) -> str:
  """`text` up to the first occurrence of any stop sequence."""
  cut = len(text)
  for s in stop:
    i = text.find(s)
    if i != -1:
      cut = min(cut, i)
  return text[:cut]


def decode_continuation(tokenizer: Any, prompt_ids: Sequence[int], new_ids: Sequence[int],
                        eos_id: int | None) -> str:
  """The text the new tokens add to the prompt. Decoding prompt + new together and removing the
  decoded prompt keeps word-boundary spaces that decoding `new_ids` alone would drop."""
  new_ids = list(new_ids)
  if eos_id is not None and eos_id in new_ids:
    new_ids = new_ids[:new_ids.index(eos_id)]
  prefix = tokenizer.decode(list(prompt_ids))
  full = tokenizer.decode(list(prompt_ids) + new_ids)
  return full[len(prefix):] if full.startswith(prefix) else tokenizer.decode(new_ids)


def complete(cfg: ModelConfig, params: Any, tokenizer: Any, prompts: Sequence[str], *,
             stop: Sequence[str], num_samples: int = 1, max_new_tokens: int = 512,
             temperature: float = 0.0, top_p: float | None = None, top_k: int | None = None,
             batch_size: int = 16, seed: int = 0, progress: bool = False) -> list[list[str]]:
  """`num_samples` completions per prompt (see module docstring).

  A prompt longer than max_seq_len - max_new_tokens tokens keeps its last tokens.
  temperature 0 is greedy decoding, which gives one distinct sample: num_samples must then be 1.
  """
  if temperature == 0 and num_samples != 1:
    raise ValueError(f"greedy decoding (temperature=0) gives identical samples; use "
                     f"num_samples=1 or a temperature > 0 (got num_samples={num_samples})")
  if num_samples < 1 or batch_size < 1:
    raise ValueError("num_samples and batch_size must be >= 1")
  room = cfg.max_seq_len - max_new_tokens
  if room < 1:
    raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the "
                     f"model's max_seq_len={cfg.max_seq_len}")
  ids = [tokenizer.encode(p)[-room:] or [tokenizer.eos_id or 0] for p in prompts]
  eos = tokenizer.eos_id if tokenizer.eos_id is not None else cfg.eos_id
  work = sorted(((i, s) for i in range(len(prompts)) for s in range(num_samples)),
                key=lambda item: (len(ids[item[0]]), item))
  out: list[list[str]] = [[""] * num_samples for _ in prompts]
  batches = [work[j:j + batch_size] for j in range(0, len(work), batch_size)]
  if progress:
    import tqdm
    batches = tqdm.tqdm(batches, desc="generating", unit="batch")
  params = ensure_weights(cfg, params)  # the decode layout once, not once per batch
  for b, batch in enumerate(batches):
    new = generate(cfg, params, [ids[i] for i, _ in batch], max_new_tokens=max_new_tokens,
                   temperature=temperature, top_k=top_k, top_p=top_p, eos_id=eos,
                   rng=jax.random.fold_in(jax.random.key(seed), b))
    for (i, s), tokens in zip(batch, new):
      out[i][s] = truncate(decode_continuation(tokenizer, ids[i], tokens, eos), stop)
  return out
