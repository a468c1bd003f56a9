"""TFDS dataset builders (array_record, no TensorFlow) and `build`, which prepares one on demand.

The datasets (`BUILDERS`):
  code_corpus          .py files of a folder (default: this interpreter's standard library),
                       split into train / validation by file (code_corpus.py)
  text_corpus          prose files (e.g. Debian's python3.11-doc reST), the same machinery
                       (text_corpus.py)
  docstring_code       signature + docstring -> function body pairs from the same files, for
                       prompt_completion training (docstring_code.py)
  synthetic_textbooks  synthetic textbook sections written by `phi_jax.curation.synthetic`
  synthetic_exercises  synthetic exercises (prompt / target), the same (synthetic.py)
  filtered_corpus      the kept documents of a `python -m phi_jax.curation` pipeline, with their
                       quality scores (filtered_corpus.py)
  conversations        chat conversations from JSONL, for SFT (conversations.py)
  preferences          chosen / rejected preference pairs from JSONL, for DPO (conversations.py)
The JSONL ones (synthetic_*, filtered_corpus, conversations, preferences) share `jsonl.JsonlBuilder`
(config fingerprint, features, splits: jsonl.py).

    builder = build('code_corpus', '/tmp/tfds', max_files=30)   # stdlib .py files, 30 of them
    train = builder.as_data_source('train')                      # train[i] -> {'text': b'...', ...}

`build` is idempotent: the config name hashes the source folder, every knob and the file listing
(paths and sizes), so a second call reuses the prepared files and a changed source builds anew.
Several processes preparing the same new dataset at once race: prepare once (e.g. on process 0)
before a multi-host run.
"""

from __future__ import annotations

import os
from typing import Any

import tensorflow_datasets as tfds

from phi_jax.data.builders.code_corpus import (CodeCorpus, FileCorpusBuilder, FileCorpusConfig,
                                               list_files, split_files)
from phi_jax.data.builders.conversations import Conversations, Preferences
from phi_jax.data.builders.docstring_code import DocstringCode
from phi_jax.data.builders.filtered_corpus import FilteredCorpus
from phi_jax.data.builders.synthetic import SyntheticExercises, SyntheticTextbooks
from phi_jax.data.builders.text_corpus import TextCorpus

BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "code_corpus": CodeCorpus, "text_corpus": TextCorpus, "docstring_code": DocstringCode,
    "synthetic_textbooks": SyntheticTextbooks, "synthetic_exercises": SyntheticExercises,
    "filtered_corpus": FilteredCorpus, "conversations": Conversations,
    "preferences": Preferences}

__all__ = ["BUILDERS", "CodeCorpus", "Conversations", "DocstringCode", "FilteredCorpus",
           "FileCorpusBuilder", "FileCorpusConfig", "Preferences", "TextCorpus", "build",
           "list_files", "split_files", "SyntheticExercises", "SyntheticTextbooks"]


def build(name: str, data_dir: str | os.PathLike, *, prepare: bool = True,
          **kwargs: Any) -> tfds.core.DatasetBuilder:
  """The builder `name` (a key of `BUILDERS`) for `kwargs`, prepared under `data_dir`.

  kwargs go to the builder's `make_config`: source_dir, suffixes, exclude_dirs, max_files,
  validation_fraction, min_bytes, max_bytes for the file corpora ('synthetic_textbooks' /
  'synthetic_exercises': source_dir, the out_dir of `phi_jax.curation.synthetic`, and
  validation_fraction; 'filtered_corpus': source_dir with records.jsonl, validation_fraction,
  max_files). Files are written once (`data_dir/<name>/<folder>_<hash>/<version>/`).
  """
  if name not in BUILDERS:
    raise ValueError(f"Unknown dataset {name!r}; known: {sorted(BUILDERS)}")
  cls = BUILDERS[name]
  builder = cls(config=cls.make_config(**kwargs), data_dir=os.fspath(data_dir),
                file_format="array_record")
  if prepare:
    builder.download_and_prepare()  # A no-op when this config's files already exist.
  return builder


def leading_texts(source: Any, max_bytes: int) -> list[str]:
  """The texts of a data source (`build(...).as_data_source(split)`) in order, up to and
  including the one that brings their UTF-8 size to `max_bytes` (e.g. a tokenizer's sample)."""
  texts, used = [], 0
  for i in range(len(source)):
    text = source[i]["text"]
    text = text.decode("utf-8") if isinstance(text, bytes) else text
    texts.append(text)
    used += len(text.encode("utf-8"))
    if used >= max_bytes:
      break
  return texts
