"""`code_corpus`: a TFDS dataset of source files in a local folder (default: this Python's stdlib).

Written as `array_record` without TensorFlow; read back with `builder.as_data_source(split)`,
whose records are `{'text': bytes, 'path': bytes}`.

    builder = builders.build('code_corpus', '/tmp/tfds', max_files=30)
    ds = builder.as_data_source('train')           # ds[i]['text'] -> b'import os\\n...'

This module also holds `FileCorpusConfig` / `FileCorpusBuilder`, the folder-of-files machinery that
`text_corpus` shares: file listing, size and encoding filters, and the split of files into `train` /
`validation` by a hash of each file's relative path (held out by file, stable when files are added).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import os
import pathlib
import re
import sysconfig
from typing import Any, Iterator, Optional, Sequence

from absl import logging
from etils import epath
import tensorflow_datasets as tfds

_NAME_CHARS = re.compile(r"[^a-z0-9]+")


@dataclasses.dataclass(eq=False)
class FileCorpusConfig(tfds.core.BuilderConfig):
  """What to read. Make one with `<Builder>.make_config(...)`: its name hashes every field below
  plus the file listing (relative paths and sizes), so changed sources never reuse stale data.

  Attributes:
    source_dir: root folder to walk ('' = the builder's default source).
    suffixes: file name endings to keep (case-insensitive).
    exclude_dirs: directory names skipped anywhere in the tree (hidden dirs and `__pycache__`
      are always skipped).
    max_files: keep this many (readable) files, chosen by path hash (a stable, spread-out sample).
    validation_fraction: expected fraction of files held out for `validation`; at least one file.
    min_bytes / max_bytes: skip files smaller / larger than this (empty or huge files).
    fingerprint: sha256 prefix of the listing; filled in by `make_config`.
  """

  source_dir: str = ""
  suffixes: tuple[str, ...] = ()
  exclude_dirs: tuple[str, ...] = ()
  max_files: Optional[int] = None
  validation_fraction: float = 0.02
  min_bytes: int = 1
  max_bytes: int = 1_000_000
  fingerprint: str = ""


def _path_hash(relpath: str, salt: str = "split") -> float:
  """Uniform in [0, 1), stable across machines and Python runs; independent for each salt."""
  digest = hashlib.sha256(f"{salt}:{relpath}".encode("utf-8")).digest()
  return int.from_bytes(digest[:8], "big") / 2.0**64


def list_files(config: FileCorpusConfig) -> list[tuple[str, int]]:
  """Sorted `(relative_path, size)` of the files `config` selects (before decoding checks)."""
  root = pathlib.Path(config.source_dir)
  if not root.is_dir():
    raise ValueError(f"source_dir {str(root)!r} is not a directory")
  suffixes = tuple(s.lower() for s in config.suffixes)
  excluded = set(config.exclude_dirs)
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames
                         if d not in excluded and d != "__pycache__" and not d.startswith("."))
    for filename in filenames:
      if not filename.lower().endswith(suffixes) or filename.startswith("."):
        continue
      path = pathlib.Path(dirpath) / filename
      try:
        size = path.stat().st_size
      except OSError:
        continue
      if path.is_file() and config.min_bytes <= size <= config.max_bytes:
        found.append((path.relative_to(root).as_posix(), size))
  found.sort()
  if config.max_files is not None:  # The first max_files readable files in a hash order.
    sample = []
    for item in sorted(found, key=lambda item: _path_hash(item[0], "sample")):
      if len(sample) == config.max_files:
        break
      if read_text(root, item[0]) is not None:
        sample.append(item)
    found = sorted(sample)
  return found


def read_text(root: str | os.PathLike, relpath: str) -> Optional[str]:
  """The file as UTF-8 text, or None when it cannot be read or decoded (then it is skipped)."""
  try:
    return (pathlib.Path(root) / relpath).read_bytes().decode("utf-8")
  except (OSError, UnicodeDecodeError) as e:
    logging.warning("Skipping %s: %s", relpath, e)
    return None


def split_files(relpaths: Sequence[str], validation_fraction: float) -> dict[str, list[str]]:
  """{'train': [...], 'validation': [...]}: a file is held out when its path hash is below
  `validation_fraction`; if none is, the file with the smallest hash is. Needs >= 2 files."""
  if len(relpaths) < 2:
    raise ValueError(f"Need at least 2 files to make train and validation splits, "
                     f"got {len(relpaths)}")
  hashes = {p: _path_hash(p) for p in relpaths}
  validation = {p for p in relpaths if hashes[p] < validation_fraction}
  if not validation:
    validation = {min(relpaths, key=hashes.__getitem__)}
  if len(validation) == len(relpaths):
    validation.discard(max(relpaths, key=hashes.__getitem__))
  return {"train": sorted(set(relpaths) - validation), "validation": sorted(validation)}


class FileCorpusBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base: one example per file, features `text` and `path` (relative, posix)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release: one example per file, split by path hash."}
  DEFAULT_SUFFIXES: tuple[str, ...] = ()
  DEFAULT_EXCLUDE_DIRS: tuple[str, ...] = ()
  DEFAULT_MAX_BYTES = 1_000_000
  DESCRIPTION = ""

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    # TFDS 4.9.10 finds this through `importlib_resources`, a backport it installs only on
    # Python < 3.9: the inherited property fails for any builder defined inside a package.
    return epath.Path(inspect.getfile(cls))

  @classmethod
  def default_source_dir(cls) -> str:
    raise ValueError(f"{cls.name} has no default source: pass source_dir=")

  @classmethod
  def make_config(cls, source_dir: Optional[str | os.PathLike] = None, *,
                  suffixes: Optional[Sequence[str]] = None,
                  exclude_dirs: Optional[Sequence[str]] = None, max_files: Optional[int] = None,
                  validation_fraction: float = 0.02, min_bytes: int = 1,
                  max_bytes: Optional[int] = None) -> FileCorpusConfig:
    """Validates the knobs, lists the files, and names the config `<folder>_<hash>`."""
    source = os.path.abspath(os.fspath(source_dir) if source_dir else cls.default_source_dir())
    if not 0.0 <= validation_fraction < 1.0:
      raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if max_files is not None and max_files < 2:
      raise ValueError(f"max_files must be >= 2 (train and validation), got {max_files}")
    max_bytes = cls.DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    if not 0 <= min_bytes <= max_bytes:
      raise ValueError(f"Need 0 <= min_bytes <= max_bytes, got {min_bytes}, {max_bytes}")
    config = FileCorpusConfig(
        name="unnamed", source_dir=source,
        suffixes=tuple(suffixes if suffixes is not None else cls.DEFAULT_SUFFIXES),
        exclude_dirs=tuple(exclude_dirs if exclude_dirs is not None else cls.DEFAULT_EXCLUDE_DIRS),
        max_files=max_files, validation_fraction=float(validation_fraction),
        min_bytes=int(min_bytes), max_bytes=int(max_bytes))
    if not config.suffixes:
      raise ValueError("suffixes must name at least one file ending, e.g. ('.py',)")
    files = list_files(config)
    if not files:
      raise ValueError(f"No {'/'.join(config.suffixes)} files of {min_bytes}..{max_bytes} bytes "
                       f"under {source} (excluding dirs {list(config.exclude_dirs)})")
    split_files([p for p, _ in files], config.validation_fraction)  # Fail early if < 2 files.
    knobs = {f.name: getattr(config, f.name) for f in dataclasses.fields(FileCorpusConfig)
             if f.name in ("source_dir", "suffixes", "exclude_dirs", "max_files",
                           "validation_fraction", "min_bytes", "max_bytes")}
    digest = hashlib.sha256(repr((sorted(knobs.items()), files)).encode()).hexdigest()
    slug = _NAME_CHARS.sub("_", pathlib.Path(source).name.lower()).strip("_")[:40] or "root"
    return dataclasses.replace(
        config, name=f"{slug}_{digest[:12]}", fingerprint=digest,
        description=(f"{len(files)} files from {source}; knobs {knobs}"))

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "text": tfds.features.Text(doc="The file's UTF-8 contents."),
            "path": tfds.features.Text(doc="Path relative to source_dir, '/'-separated."),
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[str, dict[str, str]]]]:
    del dl_manager  # Nothing to download.
    config = self.builder_config
    if not isinstance(config, FileCorpusConfig) or not config.fingerprint:
      raise ValueError(f"{self.name}: make the config with {type(self).__name__}.make_config(...)")
    relpaths = [p for p, _ in list_files(config) if read_text(config.source_dir, p) is not None]
    splits = split_files(relpaths, config.validation_fraction)
    return {name: self._generate_examples(files) for name, files in splits.items()}

  def _generate_examples(self, relpaths: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    for relpath in relpaths:
      text = read_text(self.builder_config.source_dir, relpath)
      if text is not None:
        yield relpath, {"text": text, "path": relpath}


class CodeCorpus(FileCorpusBuilder):
  """Python source files; default source: the running interpreter's standard library."""

  DEFAULT_SUFFIXES = (".py",)
  DEFAULT_EXCLUDE_DIRS = ("test", "tests", "idle_test", "site-packages")
  DESCRIPTION = ("Python source files, one example per file (default: the running interpreter's "
                 "standard library, without test/tests/idle_test/site-packages). Split into "
                 "train/validation by a hash of the relative path.")

  @classmethod
  def default_source_dir(cls) -> str:
    return sysconfig.get_paths()["stdlib"]
