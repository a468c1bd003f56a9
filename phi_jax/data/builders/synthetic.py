"""`synthetic_textbooks` / `synthetic_exercises`: TFDS datasets of teacher-written data.

`phi_jax.curation.synthetic.generate_textbooks` / `generate_exercises` write the kept examples to
`OUT/records.jsonl` (one JSON object per line) and then build one of these from that folder:

    builder = builders.build('synthetic_textbooks', '/tmp/tfds', source_dir=OUT)
    builder.as_data_source('train')[0]   # {'text': b'...', 'topic': b'recursion', ...}

Features (all text; the pipeline trains on 'text'):
  synthetic_textbooks  text, id, topic, audience, style, subject, teacher, teacher_prompt, meta
  synthetic_exercises  text (= prompt + target), id, prompt (signature + docstring), target (the
                       body: use format='prompt_completion' to train on it alone), tests (assert
                       lines, newline-separated), entry_point, family, topic, teacher,
                       teacher_prompt, meta
`meta` is a JSON object of every other field of the record (the prompt's remaining constraints).
Split into train / validation by a hash of each record's `split_key` (default: its id;
procedural exercises use their parameterisation, so variants of one task stay on one side).
The config name hashes records.jsonl's bytes and the knobs: a regenerated folder builds anew.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any, Iterator, Optional, Sequence

from phi_jax.data.builders import jsonl
from phi_jax.data.builders.jsonl import RECORDS_FILE, split_records

__all__ = ["RECORDS_FILE", "SyntheticConfig", "SyntheticExercises", "SyntheticTextbooks",
           "iter_records", "read_records", "split_records"]


@dataclasses.dataclass(eq=False)
class SyntheticConfig(jsonl.JsonlConfig):
  """source_dir: the folder holding records.jsonl; validation_fraction: expected share held out
  (at least one record); fingerprint: sha256 of the file and knobs (set by `make_config`);
  max_files: always None (every record)."""


def iter_records(source_dir: str | os.PathLike) -> Iterator[dict[str, Any]]:
  """The records of `source_dir/records.jsonl` one at a time, with a clear error for a bad line."""
  path = pathlib.Path(source_dir) / RECORDS_FILE
  if not path.is_file():
    raise ValueError(f"{path} does not exist: write it with phi_jax.curation.synthetic."
                     "generate_textbooks / generate_exercises (source_dir= is their out_dir)")
  for n, record in jsonl.iter_jsonl(path):
    if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not record.get(
        "id"):
      raise ValueError(f"{path}:{n}: each record needs a string 'text' and an 'id'")
    yield record


def read_records(source_dir: str | os.PathLike) -> list[dict[str, Any]]:
  """`iter_records`' records as a list."""
  return list(iter_records(source_dir))


class _SyntheticBuilder(jsonl.JsonlBuilder, skip_registration=True):
  """Base: reads records.jsonl; subclasses name their features."""

  CONFIG = SyntheticConfig
  DESCRIPTION = ""

  @classmethod
  def read_records(cls, source: str) -> list[dict[str, Any]]:
    return read_records(source)

  @classmethod
  def iter_records(cls, source: str) -> Iterator[dict[str, Any]]:
    return iter_records(source)

  @classmethod
  def make_config(cls, source_dir: Optional[str | os.PathLike] = None, *,
                  validation_fraction: float = 0.02) -> SyntheticConfig:
    if not source_dir:
      raise ValueError(f"{cls.name} needs source_dir=: the out_dir of phi_jax.curation.synthetic")
    source = os.path.abspath(os.fspath(source_dir))
    jsonl.check_validation_fraction(validation_fraction)
    return cls._fingerprinted_config(source, validation_fraction=validation_fraction,
                                     knobs=validation_fraction, slug=pathlib.Path(source).name,
                                     empty_slug="root")

  def _example(self, record: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k in self.FEATURES:
      if k == "meta":
        continue
      v = record.get(k, "")
      out[k] = "\n".join(v) if isinstance(v, list) else str(v)
    extra = {k: v for k, v in record.items() if k not in self.FEATURES}
    out["meta"] = json.dumps(extra, sort_keys=True, ensure_ascii=False)
    return out

  def _generate_examples(self, records: Sequence[dict[str, Any]]
                         ) -> Iterator[tuple[str, dict[str, str]]]:
    for record in records:
      yield str(record["id"]), self._example(record)


class SyntheticTextbooks(_SyntheticBuilder):
  """Teacher-written textbook passages with the prompt's topic / audience / style."""

  FEATURES = ("text", "id", "topic", "audience", "style", "subject", "teacher", "teacher_prompt",
              "meta")
  DESCRIPTION = ("Synthetic textbook passages (phi-1 CodeTextbook / phi-1.5 style) written by a "
                 "teacher model from topic x audience x style prompts; 'text' is the passage.")


class SyntheticExercises(_SyntheticBuilder):
  """Exercises: signature + docstring -> body, with their asserts (CodeExercises style)."""

  FEATURES = ("text", "id", "prompt", "target", "tests", "entry_point", "family", "topic",
              "teacher", "teacher_prompt", "meta")
  DESCRIPTION = ("Synthetic Python exercises (phi-1 CodeExercises style): 'prompt' is a function "
                 "signature and docstring, 'target' its body, 'text' both; 'tests' are asserts "
                 "that passed in the sandbox.")
