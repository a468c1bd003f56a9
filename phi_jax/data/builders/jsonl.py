"""The shared base of the TFDS datasets read from one JSONL file: `synthetic_*` (synthetic.py),
`filtered_corpus` (filtered_corpus.py), `conversations` / `preferences` (conversations.py).

A subclass of `JsonlBuilder` names its config class (`CONFIG`), its features (`FEATURES`, all
text, or its own `_features`), how to read and check its records (`read_records`; `iter_records`
to stream them, for files that can be large; `source_chunks` if the file is not
source_dir/records.jsonl) and its examples (`_generate_examples`). Its `make_config` checks its
own arguments, then returns `_fingerprinted_config(...)`: the config named `<slug>_<sha256[:12]>` of the file's bytes and
the knobs, so the prepared files (data_dir/<dataset>/<config name>/<version>/) are reused while
file and knobs stay the same and a changed one builds anew.

Records are split into train / validation by a hash of each record's `split_key` (default: its
id): `split_records`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import itertools
import json
import pathlib
import re
from typing import Any, Iterator, Optional, Sequence

from etils import epath
import tensorflow_datasets as tfds

RECORDS_FILE = "records.jsonl"
_NAME_CHARS = re.compile(r"[^a-z0-9]+")
_CHUNK_BYTES = 1 << 20


def file_chunks(path: pathlib.Path) -> Iterator[bytes]:
  """The bytes of `path` in chunks of 1 MiB (memory: one chunk, whatever the file's size)."""
  with path.open("rb") as f:
    while chunk := f.read(_CHUNK_BYTES):
      yield chunk


def iter_jsonl(path: pathlib.Path) -> Iterator[tuple[int, Any]]:
  """(line number from 1, parsed value) of each non-blank line of `path`; a line that is not
  JSON raises a ValueError naming path:line."""
  with path.open(encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        value = json.loads(line)
      except ValueError as e:
        raise ValueError(f"{path}:{n} is not valid JSON: {e}") from None
      yield n, value


def _unit_hash(text: str) -> float:
  digest = hashlib.sha256(f"split:{text}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


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


@dataclasses.dataclass(eq=False)
class JsonlConfig(tfds.core.BuilderConfig):
  """source_dir: the JSONL file or its folder (absolute); validation_fraction: expected share
  held out (at least one record); max_files: the first N records (None = all); fingerprint:
  sha256 of the file and knobs (set by `make_config`)."""

  source_dir: str = ""
  validation_fraction: float = 0.02
  max_files: Optional[int] = None
  fingerprint: str = ""


def check_validation_fraction(validation_fraction: float) -> None:
  if not 0.0 <= validation_fraction < 1.0:
    raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")


class JsonlBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base: records of one JSONL file, split by `split_records`; see the module docstring."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  CONFIG: type[JsonlConfig] = JsonlConfig
  FEATURES: tuple[str, ...] = ()  # text features, for the default `_features`
  DESCRIPTION: Optional[str] = None  # None: the class docstring

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # As in FileCorpusBuilder: TFDS 4.9.10's default needs a backport absent on Python >= 3.9.
    return epath.Path(inspect.getfile(cls))

  @classmethod
  def read_records(cls, source: str) -> list[dict[str, Any]]:
    """The checked records of `source` (a config's source_dir)."""
    raise NotImplementedError(f"{cls.__name__} must define read_records")

  @classmethod
  def iter_records(cls, source: str) -> Iterator[dict[str, Any]]:
    """The checked records of `source` one at a time (default: `read_records`' list); builders
    whose files can be large stream them, so making a config holds one record at a time."""
    yield from cls.read_records(source)

  @classmethod
  def source_chunks(cls, source: str) -> Iterator[bytes]:
    """The bytes the fingerprint hashes, in chunks: source/records.jsonl's."""
    return file_chunks(pathlib.Path(source) / RECORDS_FILE)

  @classmethod
  def _fingerprinted_config(cls, source: str, *, validation_fraction: float,
                            max_files: Optional[int] = None, knobs: Any, slug: str,
                            empty_slug: str) -> JsonlConfig:
    """The config of `source`'s first `max_files` records, named `<slug>_<digest[:12]>` (slug:
    lower-case [a-z0-9_] of `slug`, at most 40 chars, `empty_slug` if none are left), where
    digest = sha256(source bytes + repr(knobs)). Reads (streams) the records first, so a bad file
    or fewer than 2 records fails here rather than when the dataset is prepared; memory: one
    record and one chunk of the file at a time (a corpus of any size)."""
    num_records = sum(1 for _ in itertools.islice(cls.iter_records(source), max_files))
    if num_records < 2:
      raise ValueError(f"Need at least 2 records for train and validation, got {num_records}")
    h = hashlib.sha256()
    for chunk in cls.source_chunks(source):
      h.update(chunk)
    h.update(repr(knobs).encode())
    digest = h.hexdigest()
    slug = _NAME_CHARS.sub("_", slug.lower()).strip("_")[:40] or empty_slug
    return cls.CONFIG(name=f"{slug}_{digest[:12]}", source_dir=source,
                      validation_fraction=float(validation_fraction), max_files=max_files,
                      fingerprint=digest, description=f"{num_records} records from "
                      f"{source or 'the built-in demo set'}")

  def _features(self) -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({k: tfds.features.Text() for k in self.FEATURES})

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=self.__doc__ if self.DESCRIPTION is None else self.DESCRIPTION,
        features=self._features(), supervised_keys=None)

  def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[str, dict[str, Any]]]]:
    del dl_manager  # Nothing to download.
    config = self.builder_config
    if not isinstance(config, self.CONFIG) or not config.fingerprint:
      raise ValueError(f"{self.name}: make the config with {type(self).__name__}.make_config(...)")
    records = self.read_records(config.source_dir)[:config.max_files]
    splits = split_records(records, config.validation_fraction)
    return {name: self._generate_examples(rows) for name, rows in splits.items()}
