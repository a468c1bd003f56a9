"""`filtered_corpus`: a TFDS dataset of documents that passed a `phi_jax.data` filter pipeline.

The pipeline (`python -m phi_jax.curation`, or `phi_jax.curation.quality.write_dataset`) writes the kept
documents to `OUT/records.jsonl`, one JSON object per line with a string `text`, an `id` and
optionally a float `score` (the quality classifier's), then builds this dataset from that folder:

    builder = builders.build('filtered_corpus', '/tmp/tfds', source_dir=OUT)
    builder.as_data_source('train')[0]   # {'text': b'...', 'id': b'...', 'score': 0.93, 'meta': b'{}'}

Features: text, id, score (float32; NaN when a record has none), meta (a JSON object of every other
field of the record, e.g. the source path). A training config reads it like any corpus:
`data.dataset='filtered_corpus'`, `data.source_dir=OUT`, `data.data_dir=...`.
Split into train / validation by a hash of each record's `split_key` (default: its id), the same
rule as `synthetic_*` (`phi_jax.data.builders.synthetic.split_records`). The config name hashes
records.jsonl's bytes and the knobs: a regenerated folder builds anew.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import tensorflow_datasets as tfds

from phi_jax.data.builders import jsonl
from phi_jax.data.builders.synthetic import iter_records, read_records

_FEATURES = ("text", "id", "score", "meta")


@dataclasses.dataclass(eq=False)
class FilteredCorpusConfig(jsonl.JsonlConfig):
  """source_dir: the folder holding records.jsonl; validation_fraction: expected share held out
  (at least one record); max_files: keep the first this many records (None = all; the name
  matches the other corpora's knob); fingerprint: sha256 of the file and knobs."""


def _score(value: Any) -> float:
  try:
    score = float(value)
  except (TypeError, ValueError):
    return math.nan
  return score


class FilteredCorpus(jsonl.JsonlBuilder):
  """Documents kept by a phi_jax.data filter pipeline, with their quality score."""

  RELEASE_NOTES = {"1.0.0": "Initial release: text, id, score, meta from records.jsonl."}
  CONFIG = FilteredCorpusConfig
  DESCRIPTION = ("Documents kept by a phi_jax.data pipeline (near-duplicate removal, quality "
                 "filter, decontamination), with the quality classifier's score.")

  @classmethod
  def read_records(cls, source: str) -> list[dict[str, Any]]:
    return read_records(source)

  @classmethod
  def iter_records(cls, source: str) -> Iterator[dict[str, Any]]:
    return iter_records(source)

  @classmethod
  def make_config(cls, source_dir: Optional[str | os.PathLike] = None, *,
                  validation_fraction: float = 0.02, max_files: Optional[int] = None,
                  max_bytes: Optional[int] = None) -> FilteredCorpusConfig:
    """max_bytes is accepted for the training loop's sake and must be unset (records are not
    filtered by size here: the pipeline did the filtering)."""
    if not source_dir:
      raise ValueError("filtered_corpus needs source_dir=: a folder with records.jsonl (the "
                       "'dataset' stage of `python -m phi_jax.curation` writes one)")
    if max_bytes:
      raise ValueError("filtered_corpus does not filter by max_bytes; leave data.max_bytes unset")
    jsonl.check_validation_fraction(validation_fraction)
    if max_files is not None and max_files < 2:
      raise ValueError(f"max_files must be >= 2 (train and validation), got {max_files}")
    source = os.path.abspath(os.fspath(source_dir))
    return cls._fingerprinted_config(source, validation_fraction=validation_fraction,
                                     max_files=max_files, knobs=(validation_fraction, max_files),
                                     slug=pathlib.Path(source).name, empty_slug="root")

  def _features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "text": tfds.features.Text(doc="The document."),
        "id": tfds.features.Text(doc="Its id in the pipeline (source path, record id)."),
        "score": tfds.features.Scalar(np.float32, doc="Quality score; NaN if none."),
        "meta": tfds.features.Text(doc="JSON object of the record's other fields."),
    })

  def _generate_examples(self, records: Sequence[dict[str, Any]]
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    for record in records:
      extra = {k: v for k, v in record.items() if k not in _FEATURES}
      yield str(record["id"]), {"text": record["text"], "id": str(record["id"]),
                                "score": np.float32(_score(record.get("score"))),
                                "meta": json.dumps(extra, sort_keys=True, ensure_ascii=False)}
