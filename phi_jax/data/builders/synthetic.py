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
import hashlib
import inspect
import json
import os
import pathlib
import re
from typing import Any, Iterator, Optional, Sequence

from etils import epath
import tensorflow_datasets as tfds

RECORDS_FILE = "records.jsonl"
_NAME_CHARS = re.compile(r"[^a-z0-9]+")


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
  """source_dir: the folder holding records.jsonl; validation_fraction: expected share held out
  (at least one record); fingerprint: sha256 of the file and knobs (set by `make_config`)."""

  source_dir: str = ""
  validation_fraction: float = 0.02
  fingerprint: str = ""


def _unit_hash(text: str) -> float:
  digest = hashlib.sha256(f"split:{text}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def read_records(source_dir: str | os.PathLike) -> list[dict[str, Any]]:
  """The records of `source_dir/records.jsonl`, with a clear error for a bad line."""
  path = pathlib.Path(source_dir) / RECORDS_FILE
  if not path.is_file():
    raise ValueError(f"{path} does not exist: write it with phi_jax.curation.synthetic."
                     "generate_textbooks / generate_exercises (source_dir= is their out_dir)")
  records = []
  with path.open(encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except ValueError as e:
        raise ValueError(f"{path}:{n} is not valid JSON: {e}") from None
      if not isinstance(record, dict) or not isinstance(record.get("text"), str) or not record.get(
          "id"):
        raise ValueError(f"{path}:{n}: each record needs a string 'text' and an 'id'")
      records.append(record)
  return records


def split_records(records: Sequence[dict[str, Any]],
                  validation_fraction: float) -> dict[str, list[dict[str, Any]]]:
  """{'train', 'validation'} by a hash of `split_key` (or `id`); both non-empty (needs >= 2)."""
  if len(records) < 2:
    raise ValueError(f"Need at least 2 records for train and validation, got {len(records)}")
  key = lambda r: str(r.get("split_key") or r["id"])
  validation = [r for r in records if _unit_hash(key(r)) < validation_fraction]
  if not validation:
    validation = [min(records, key=lambda r: _unit_hash(key(r)))]
  held = {key(r) for r in validation}
  train = [r for r in records if key(r) not in held]
  if not train:  # Everything hashed low: keep the highest-hashing group for training.
    top = key(max(records, key=lambda r: _unit_hash(key(r))))
    train = [r for r in records if key(r) == top]
    validation = [r for r in records if key(r) != top]
  return {"train": train, "validation": validation}


class _SyntheticBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base: reads records.jsonl; subclasses name their features."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  FEATURES: tuple[str, ...] = ()
  DESCRIPTION = ""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # As in FileCorpusBuilder: TFDS 4.9.10's default needs a backport absent on Python >= 3.9.
    return epath.Path(inspect.getfile(cls))

  @classmethod
  def make_config(cls, source_dir: Optional[str | os.PathLike] = None, *,
                  validation_fraction: float = 0.02) -> SyntheticConfig:
    if not source_dir:
      raise ValueError(f"{cls.name} needs source_dir=: the out_dir of phi_jax.curation.synthetic")
    source = os.path.abspath(os.fspath(source_dir))
    if not 0.0 <= validation_fraction < 1.0:
      raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    records = read_records(source)
    split_records(records, validation_fraction)  # Fail early with < 2 records.
    data = (pathlib.Path(source) / RECORDS_FILE).read_bytes()
    digest = hashlib.sha256(data + repr(validation_fraction).encode()).hexdigest()
    slug = _NAME_CHARS.sub("_", pathlib.Path(source).name.lower()).strip("_")[:40] or "root"
    return SyntheticConfig(name=f"{slug}_{digest[:12]}", source_dir=source,
                           validation_fraction=float(validation_fraction), fingerprint=digest,
                           description=f"{len(records)} records from {source}")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({k: tfds.features.Text() for k in self.FEATURES}),
        supervised_keys=None)

  def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[str, dict[str, str]]]]:
    del dl_manager  # Nothing to download.
    config = self.builder_config
    if not isinstance(config, SyntheticConfig) or not config.fingerprint:
      raise ValueError(f"{self.name}: make the config with {type(self).__name__}.make_config(...)")
    splits = split_records(read_records(config.source_dir), config.validation_fraction)
    return {name: self._generate_examples(records) for name, records in splits.items()}

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
