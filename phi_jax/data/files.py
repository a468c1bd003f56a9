"""Whole-file text writes that are all or nothing: a temp file beside the target, renamed over it.

    files.write_text(workdir / 'report.md', text)
    with files.atomic_open(out / 'records.jsonl') as f:   # streamed, e.g. one JSON per line
      for row in rows:
        f.write(json.dumps(row) + '\n')

A reader sees the old file or the new one, never half of one; if the write raises, the target is
left as it was and the temp file is removed. The temp name is unique (process id and a random
suffix: threads and processes writing the same target do not share one) and the file gets the
usual permissions (umask). The parent folder must exist. In `data`, the lowest layer, so every
package can use it; folders written all or nothing are `convert.checkpoint_io.atomic_directory`.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
from typing import Iterator, TextIO


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[TextIO]:
  """A UTF-8 text file to write; on a clean exit it replaces `path`, on an error it is deleted."""
  path = pathlib.Path(path)
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
  try:
    with open(tmp, "x", encoding="utf-8") as f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_text(path: str | os.PathLike, text: str) -> None:
  """Writes `text` (UTF-8) to `path` all or nothing (see the module docstring)."""
  with atomic_open(path) as f:
    f.write(text)
