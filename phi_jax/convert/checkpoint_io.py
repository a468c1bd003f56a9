"""phi_jax's own checkpoint format: OUT/config.json (the ModelConfig) + OUT/params (orbax).

    checkpoint_io.save_model(cfg, params, '/ckpt/phi-2')     # atomic: temp dir, then rename
    cfg, params = checkpoint_io.load_model('/ckpt/phi-2')    # params: nested dict of numpy arrays

`atomic_directory` is the shared "write a folder all or nothing" helper (also used by
`phi_jax.convert.hf.save`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
import uuid
from typing import Any, Iterator

import orbax.checkpoint as ocp

from phi_jax.models.config import ModelConfig

CONFIG_FILE = "config.json"
PARAMS_DIR = "params"
_TUPLE_FIELDS = ("rope_short_factor", "rope_long_factor")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields an empty temp dir beside `path`; when the block succeeds it becomes `path`.

  An existing `path` is moved aside, replaced, then deleted. If the block (or the swap) raises,
  the temp dir is removed and `path` is left exactly as it was.
  """
  path = pathlib.Path(path).absolute()
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
  try:
    yield tmp
    old = None
    if path.exists() or path.is_symlink():
      old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
      os.rename(path, old)
    try:
      os.rename(tmp, path)
    except BaseException:
      if old is not None:
        os.rename(old, path)
      raise
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if old is not None:
    shutil.rmtree(old, ignore_errors=True)


def config_to_json(cfg: ModelConfig) -> str:
  """The ModelConfig as JSON (`dataclasses.asdict`; tuples become lists)."""
  return json.dumps(dataclasses.asdict(cfg), indent=2)


def config_from_json(text: str) -> ModelConfig:
  """Inverse of `config_to_json`; unknown keys raise a ValueError listing them."""
  raw: dict[str, Any] = json.loads(text)
  known = {f.name for f in dataclasses.fields(ModelConfig)}
  unknown = sorted(set(raw) - known)
  if unknown:
    raise ValueError(f"config.json has keys that ModelConfig does not know: {unknown}; "
                     "was it written by a newer phi_jax?")
  for key in _TUPLE_FIELDS:
    if raw.get(key) is not None:
      raw[key] = tuple(raw[key])
  return ModelConfig(**raw).validate()


def save_model(cfg: ModelConfig, params: Any, out_dir: str | os.PathLike) -> None:
  """Writes out_dir/config.json and out_dir/params (orbax StandardCheckpointer), atomically."""
  with atomic_directory(out_dir) as tmp:
    (tmp / CONFIG_FILE).write_text(config_to_json(cfg))
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(tmp / PARAMS_DIR, params)
      ckptr.wait_until_finished()


def load_model(out_dir: str | os.PathLike) -> tuple[ModelConfig, Any]:
  """Reads a folder written by `save_model` -> (cfg, params as a nested dict of numpy arrays)."""
  out_dir = pathlib.Path(out_dir).absolute()
  config_path, params_path = out_dir / CONFIG_FILE, out_dir / PARAMS_DIR
  if not config_path.is_file() or not params_path.is_dir():
    raise ValueError(f"{out_dir} is not a phi_jax checkpoint: expected {CONFIG_FILE} and "
                     f"{PARAMS_DIR}/ inside (write one with phi_jax.convert.checkpoint_io.save_model)")
  cfg = config_from_json(config_path.read_text())
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(params_path)
  return cfg, params
