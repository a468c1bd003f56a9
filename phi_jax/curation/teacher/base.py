"""The teacher interface every backend implements, its errors, request checks and the on-disk
response cache."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Any, Mapping, Optional, Protocol, Sequence

from phi_jax.data import files

CACHE_FORMAT = 1  # Bump to invalidate every cache entry (changes the keys).


class TeacherError(RuntimeError):
  """A request failed for good (after retries where retrying made sense).

  `failures` maps the index of each failed prompt to its error message; `results` (when the
  batch was partly answered) holds the completions in prompt order, None where it failed.
  """

  def __init__(self, message: str, failures: Optional[Mapping[int, str]] = None,
               results: Optional[Sequence[Optional[str]]] = None):
    super().__init__(message)
    self.failures = dict(failures or {})
    self.results = list(results) if results is not None else None


class Teacher(Protocol):
  """What the synthetic-data stages need of a teacher."""

  name: str
  fingerprint: str  # Identifies the model and settings in cache keys; never contains secrets.

  def complete(self, prompts: Sequence[str], *, max_tokens: int, temperature: float,
               stop: Optional[Sequence[str]] = None) -> list[str]: ...


def truncate_at_stop(text: str, stop: Optional[Sequence[str]]) -> str:
  """`text` up to (not including) the earliest occurrence of any stop string."""
  cut = len(text)
  for s in stop or ():
    if s:
      i = text.find(s)
      if i != -1:
        cut = min(cut, i)
  return text[:cut]


def check_request(prompts: Sequence[str], max_tokens: int, temperature: float,
                  stop: Optional[Sequence[str]]) -> list[str]:
  """Validates the arguments of `Teacher.complete` (shared by every backend) -> the stop list."""
  if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
    raise TypeError("prompts must be a list of strings")
  if not isinstance(max_tokens, int) or max_tokens < 1:
    raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
  if temperature < 0:
    raise ValueError(f"temperature must be >= 0, got {temperature}")
  if isinstance(stop, str):
    raise TypeError("stop must be a list of strings, not a string")
  return list(stop or [])


class ResponseCache:
  """Completions on disk: `directory/<key[:2]>/<key>.json`, each written to a temp file and
  renamed into place, so a crash never leaves a half-written entry."""

  def __init__(self, directory: str | os.PathLike):
    self.directory = pathlib.Path(directory)
    self.directory.mkdir(parents=True, exist_ok=True)

  @staticmethod
  def key(fingerprint: str, request: Mapping[str, Any]) -> str:
    blob = json.dumps([CACHE_FORMAT, fingerprint, request], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()

  def _path(self, key: str) -> pathlib.Path:
    return self.directory / key[:2] / f"{key}.json"

  def get(self, key: str) -> Optional[str]:
    try:
      entry = json.loads(self._path(key).read_text("utf-8"))
      return entry["completion"] if isinstance(entry.get("completion"), str) else None
    except (OSError, ValueError, AttributeError):  # Missing or unreadable: ask again.
      return None

  def put(self, key: str, completion: str, request: Mapping[str, Any]) -> None:
    path = self._path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(path, json.dumps({"completion": completion, "request": request},
                                      ensure_ascii=False))

  def count(self) -> int:
    """Entries on disk."""
    return sum(1 for _ in self.directory.glob("*/*.json"))
