"""The run's inputs from `config.data`: the TFDS dataset (built on first use), the tokenizer
(loaded, or trained on the training split and kept in the workdir), and the grain iterators."""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import shutil
from typing import Any, Optional

import jax
import ml_collections

from phi_jax.data import builders, pipeline
from phi_jax.data import tokenizer as tokenizers


@dataclasses.dataclass
class Inputs:
  tokenizer: Any
  train_iter: Any  # grain DatasetIterator of per-process batches (checkpointed with the state)
  eval_batches: list[dict[str, Any]]
  data_config: pipeline.DataConfig
  encode_chat: Optional[Any] = None  # messages -> (ids, assistant mask): data.chat_template's


def _builder_kwargs(data: ml_collections.ConfigDict) -> dict[str, Any]:
  """The builder arguments the config sets (an empty or 0 field: the builder's default)."""
  kwargs = {}
  for key in ("source_dir", "max_files", "validation_fraction", "max_bytes"):
    value = data[key]
    if value not in (None, "", 0):
      kwargs[key] = value
  return kwargs


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def make_tokenizer(data: ml_collections.ConfigDict, train_source, workdir: pathlib.Path,
                   init_from: str = ""):
  """config.data.tokenizer: a path to load, or '' to use the tokenizer of `init_from` (a training
  workdir or a HF folder) if any, else to train a SentencePiece BPE model of
  `tokenizer_vocab_size` on up to `tokenizer_train_bytes` of training text (once per workdir)."""
  if data.tokenizer:
    return tokenizers.load(data.tokenizer)
  if init_from:
    found = tokenizers.find(init_from)
    if found is None:
      raise ValueError(f"init_from={init_from!r} has no tokenizer (tokenizer/sp.model, "
                       "tokenizer.model or tokenizer.json); set config.data.tokenizer")
    if isinstance(found, tokenizers.SentencePieceTokenizer) and jax.process_index() == 0:
      own = workdir / "tokenizer" / "sp.model"  # the run keeps its tokenizer, like a fresh one
      if not own.exists():
        own.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found.path, f"{own}.tmp")
        os.replace(f"{own}.tmp", own)
    return found
  prefix = workdir / "tokenizer" / "sp"
  model = pathlib.Path(f"{prefix}.model")
  if not model.exists() and jax.process_index() == 0:
    budget = int(data.tokenizer_train_bytes)

    def texts():
      used = 0
      for i in range(len(train_source)):
        text = train_source[i]["text"]
        text = text.decode("utf-8") if isinstance(text, bytes) else text
        yield text
        used += len(text)
        if used >= budget:
          return

    print(f"Training a SentencePiece tokenizer ({data.tokenizer_vocab_size} tokens) on "
          f"<= {budget / 1e6:.1f} MB of training text", flush=True)
    tokenizers.train_sentencepiece(texts(), prefix, vocab_size=data.tokenizer_vocab_size)
  _sync("tokenizer")
  return tokenizers.load(model)


def make_inputs(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
                with_eval: bool = True) -> Inputs:
  """The dataset (prepared on first use), tokenizer and iterators of `config.data`; the held-out
  batches only `with_eval`."""
  workdir = pathlib.Path(workdir)
  data = config.data
  data_dir = data.data_dir or str(workdir / "data")
  kwargs = _builder_kwargs(data)
  if jax.process_index() == 0:  # prepare once; the other processes then read it
    builders.build(data.dataset, data_dir, **kwargs)
  _sync("dataset")
  builder = builders.build(data.dataset, data_dir, prepare=False, **kwargs)
  tokenizer = make_tokenizer(data, builder.as_data_source("train"), workdir,
                             config.init_from)
  seed = data.seed
  data_config = pipeline.DataConfig(
      name=data.dataset, data_dir=data_dir, split="train", seq_len=data.seq_len,
      batch_size=data.batch_size, seed=config.seed if seed is None else seed,
      num_epochs=data.num_epochs, builder_kwargs=kwargs, worker_count=data.worker_count,
      format=data.format)
  encode_chat = None
  if data.format in ("chat", "preference"):
    from phi_jax import chat  # pylint: disable=g-import-not-at-top
    template = chat.load_template(data.chat_template)  # fails here on a bad template
    encode_chat = functools.partial(chat.encode_with_assistant_mask, template=template,
                                    tokenizer=tokenizer)
  train_iter = pipeline.make_iterator(data_config, tokenizer, encode_chat=encode_chat)
  eval_batches: list[dict[str, Any]] = []
  if with_eval:
    eval_batches = pipeline.make_eval_batches(data_config, tokenizer,
                                              max_batches=data.eval_batches,
                                              encode_chat=encode_chat)
  return Inputs(tokenizer, train_iter, eval_batches, data_config, encode_chat)


