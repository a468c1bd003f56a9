"""Perplexity and bits per byte on texts or on a split of a phi_jax dataset.

    result = evaluate_dataset(cfg, params, tok, 'text_corpus', '/tmp/tfds', split='validation',
                              limit=200, seq_len=512)
    result['perplexity'], result['bits_per_byte']

The texts go through the training pipeline's evaluation batches (`pipeline.make_eval_batches`:
documents tokenized, EOS appended, packed into rows of seq_len, every document once), so the
numbers are the training loop's eval loss on the same data. The summed terms are those of its loss
mask: each token of a document predicted from the earlier tokens of the document (not the first
token), plus the closing EOS; a document that spans two rows continues without the earlier context.

    perplexity    = exp(nats / tokens)
    bits_per_byte = nats / (ln 2 * UTF-8 bytes of the texts evaluated)
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from phi_jax.data import pipeline
from phi_jax.evals import scoring


def evaluate_texts(cfg, params, tokenizer, texts: Sequence[str], *, seq_len: int = 512,
                   batch_size: int = 8) -> dict[str, Any]:
  """{'nats', 'tokens', 'bytes', 'documents', 'loss' (nats per token), 'perplexity',
  'bits_per_byte'} over `texts`."""
  texts = [t.decode("utf-8") if isinstance(t, bytes) else t for t in texts]
  if not texts:
    raise ValueError("no texts to evaluate")
  seq_len = min(seq_len, cfg.max_seq_len)
  config = pipeline.DataConfig(name="texts", split="eval", seq_len=seq_len, batch_size=batch_size)
  batches = pipeline.make_eval_batches(config, tokenizer, split="eval",
                                       source=[{"text": t} for t in texts],
                                       process_index=0, process_count=1)
  fn = scoring.target_logprobs_fn(cfg)
  nats, tokens = 0.0, 0
  for batch in batches:
    logp = np.asarray(fn(params, batch["inputs"], batch["targets"], batch["segment_ids"],
                         batch["positions"]), np.float64)
    nats -= float((logp * batch["loss_mask"]).sum())
    tokens += int(batch["loss_mask"].sum())
  n_bytes = sum(len(t.encode("utf-8")) for t in texts)
  loss = nats / max(tokens, 1)
  return {"nats": nats, "tokens": tokens, "bytes": n_bytes, "documents": len(texts),
          "loss": loss, "perplexity": math.exp(loss),
          "bits_per_byte": nats / (math.log(2) * max(n_bytes, 1))}


def dataset_texts(name: str, data_dir: str | os.PathLike, *, split: str = "validation",
                  limit: Optional[int] = None, text_key: str = "text",
                  builder_kwargs: Optional[Mapping[str, Any]] = None) -> list[str]:
  """The first `limit` documents of a `phi_jax.data.builders` dataset split (prepared if needed)."""
  config = pipeline.DataConfig(name=name, data_dir=os.fspath(data_dir), split=split,
                               builder_kwargs=dict(builder_kwargs or {}))
  source = pipeline.load_source(config)
  n = len(source) if limit is None else min(limit, len(source))
  out = []
  for i in range(n):
    record = source[i]
    text = record[text_key] if isinstance(record, Mapping) else record
    out.append(text.decode("utf-8") if isinstance(text, bytes) else text)
  return out


def evaluate_dataset(cfg, params, tokenizer, name: str, data_dir: str | os.PathLike, *,
                     split: str = "validation", limit: Optional[int] = None, seq_len: int = 512,
                     batch_size: int = 8,
                     builder_kwargs: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
  """`evaluate_texts` on the first `limit` documents of a dataset split."""
  texts = dataset_texts(name, data_dir, split=split, limit=limit, builder_kwargs=builder_kwargs)
  return {"dataset": name, "split": split,
          **evaluate_texts(cfg, params, tokenizer, texts, seq_len=seq_len, batch_size=batch_size)}
