"""Sharded files for the streaming pipeline: gzip JSONL record shards and numpy side files.

    path = shard_path(folder, 3, 32)             # folder/part-00003-of-00032.jsonl.gz
    n = write_records(path, rows)                # atomic: a temp file beside it, renamed in
    for row in read_records(path): ...           # streams; memory: one line at a time
    save_array(folder / 'x.npy', array); load_array(...)

Every write goes to a temp file beside its final name and is renamed into place, so a killed
worker leaves either the whole file or none: rerunning the task rewrites it. Compression is gzip
level 1 (fast; ~4x on code), with
no name or time in the header, so the same rows give the same bytes. Records are JSON objects
with at least 'id' and 'text'.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pathlib
from typing import Any, Iterable, Iterator

import numpy as np

SUFFIX = ".jsonl.gz"


def shard_name(index: int, num_shards: int, suffix: str = SUFFIX) -> str:
  if not 0 <= index < num_shards:
    raise ValueError(f"shard index {index} not in [0, {num_shards})")
  return f"part-{index:05d}-of-{num_shards:05d}{suffix}"


def shard_path(folder: str | os.PathLike, index: int, num_shards: int,
               suffix: str = SUFFIX) -> pathlib.Path:
  return pathlib.Path(folder) / shard_name(index, num_shards, suffix)


def _tmp(path: pathlib.Path) -> pathlib.Path:
  return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def write_records(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> int:
  """Writes rows (one JSON object per line, gzip) atomically; returns how many."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp, n = _tmp(path), 0
  try:
    # No name and mtime 0 in the gzip header: the same rows give the same bytes.
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                               compresslevel=1) as z, \
        io.TextIOWrapper(z, encoding="utf-8") as f:
      for row in rows:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        n += 1
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise
  return n


def read_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
  """The records of a shard (.jsonl.gz or plain .jsonl), streamed."""
  path = pathlib.Path(path)
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rt", encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if line.strip():
        try:
          yield json.loads(line)
        except ValueError as e:
          raise ValueError(f"{path}:{n} is not valid JSON: {e}") from None


def save_array(path: str | os.PathLike, array: np.ndarray) -> None:
  """np.save, atomically."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = _tmp(path)
  try:
    buf = io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def load_array(path: str | os.PathLike) -> np.ndarray:
  return np.load(path, allow_pickle=False)


def write_json(path: str | os.PathLike, value: Any) -> None:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = _tmp(path)
  tmp.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
  os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
  return json.loads(pathlib.Path(path).read_text())


def counted(rows: Iterable[dict[str, Any]], counts: dict[str, int]) -> Iterator[dict[str, Any]]:
  """Yields `rows` while adding their documents, whitespace tokens and UTF-8 bytes (as
  `stages.counts`) to `counts`, which starts as {'documents': 0, 'whitespace_tokens': 0,
  'bytes': 0}: counts of a stream written once, without holding it."""
  for r in rows:
    text = r.get("text", "")
    counts["documents"] += 1
    counts["whitespace_tokens"] += len(text.split())
    counts["bytes"] += len(text.encode("utf-8"))
    yield r
