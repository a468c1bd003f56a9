"""`LocalTeacher`: a local model (any folder `phi_jax.convert.load.load_model` reads) through
`phi_jax.decoding.generate`."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import zlib
from typing import Any, Optional, Sequence

from phi_jax.curation.teacher.base import ResponseCache, check_request, truncate_at_stop


def _params_digest(params: Any) -> str:
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return digest.hexdigest()[:16]


def _files_digest(path: pathlib.Path) -> str:
  entries = sorted((str(p.relative_to(path)), p.stat().st_size, int(p.stat().st_mtime))
                   for p in path.rglob("*") if p.is_file())
  return hashlib.sha256(repr(entries).encode()).hexdigest()[:16]


class LocalTeacher:
  """A local model: a training workdir (`model_config.json` + `checkpoints/`), a phi_jax
  checkpoint (`config.json` + `params/`) or a Hugging Face folder (`config.json` + safetensors).

  The tokenizer comes from `tokenizer` (file or folder), else from the workdir / folder.
  Generation: `phi_jax.decoding.generate` on batches of `batch_size` prompts, stopping at the
  tokenizer's EOS; stop strings cut the decoded text afterwards (the model still spends up to
  `max_tokens` tokens). Sampling uses `jax.random.key(seed)` folded with a hash of each batch,
  so a run is repeatable; with `cache_dir`, answers are cached like the HTTP teacher's.
  """

  def __init__(self, path: Optional[str | os.PathLike] = None, *,
               tokenizer: Any = None, step: Optional[int] = None, batch_size: int = 8,
               seed: int = 0, dtype: str = "float32", add_bos: bool = False,
               top_k: Optional[int] = None, top_p: Optional[float] = None,
               cache_dir: Optional[str | os.PathLike] = None,
               model: Optional[tuple[Any, Any]] = None, name: Optional[str] = None):
    from phi_jax.data import tokenizer as tokenizers  # pylint: disable=g-import-not-at-top
    if (path is None) == (model is None):
      raise ValueError("pass exactly one of path= (a checkpoint folder) and model=(cfg, params)")
    if isinstance(tokenizer, (str, os.PathLike)):
      tokenizer = tokenizers.load(tokenizer, add_bos=add_bos)
    if model is not None:
      cfg, params = model
      origin = f"params:{_params_digest(params)}"
    else:
      cfg, params, tokenizer, origin = self._load(pathlib.Path(path), step, add_bos, tokenizer)
    if tokenizer is None:
      raise ValueError(f"No tokenizer for the local teacher {path or name}: pass tokenizer= (a "
                       "tokenizer.model / tokenizer.json file or folder)")
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    self.cfg, self.params, self.tokenizer = cfg.replace(dtype=dtype), params, tokenizer
    self.batch_size, self.seed, self.top_k, self.top_p = batch_size, seed, top_k, top_p
    self.cache = ResponseCache(cache_dir) if cache_dir else None
    self.name = f"local:{name or (pathlib.Path(path).name if path else cfg.name)}"
    tok_name = getattr(tokenizer, "path", type(tokenizer).__name__)
    self.fingerprint = json.dumps({"kind": "local", "origin": origin, "dtype": dtype,
                                   "tokenizer": tok_name, "add_bos": add_bos, "seed": seed,
                                   "top_k": top_k, "top_p": top_p}, sort_keys=True)

  @staticmethod
  def _load(path: pathlib.Path, step: Optional[int], add_bos: bool, tokenizer: Any = None):
    from phi_jax.convert import load  # pylint: disable=g-import-not-at-top
    m = load.load_model(path, tokenizer=tokenizer, step=step, add_bos=add_bos)
    if m.format == "workdir":
      which = step if step is not None else "latest"
      origin = f"run:{m.path}:{which}:{_files_digest(m.path / 'checkpoints')}"
    else:
      origin = f"dir:{m.path}:{_files_digest(m.path)}"
    return m.cfg, m.params, m.tokenizer, origin

  def _generate(self, prompts: Sequence[str], max_tokens: int, temperature: float) -> list[str]:
    import jax  # pylint: disable=g-import-not-at-top
    from phi_jax.decoding import ensure_weights, generate  # pylint: disable=g-import-not-at-top
    eos = self.tokenizer.eos_id if self.tokenizer.eos_id is not None else self.cfg.eos_id
    # The decode layout once for all batches: generate only reuses its copy for jax-array params,
    # and loaded checkpoints are numpy.
    weights = ensure_weights(self.cfg, self.params)
    out = []
    for start in range(0, len(prompts), self.batch_size):
      batch = list(prompts[start:start + self.batch_size])
      ids = [self.tokenizer.encode(p) for p in batch]
      ids = [i if i else [eos] for i in ids]  # An empty prompt starts from EOS (a boundary).
      salt = zlib.crc32("\x00".join(batch).encode("utf-8"))
      rng = jax.random.fold_in(jax.random.key(self.seed), salt)
      tokens = generate(self.cfg, weights, ids, max_new_tokens=max_tokens,
                        temperature=temperature, top_k=self.top_k, top_p=self.top_p,
                        eos_id=eos, rng=rng)
      for row in tokens:
        row = [int(t) for t in row]
        if eos is not None and eos in row:
          row = row[:row.index(eos)]
        out.append(self.tokenizer.decode(row))
    return out

  def complete(self, prompts: Sequence[str], *, max_tokens: int, temperature: float,
               stop: Optional[Sequence[str]] = None) -> list[str]:
    stop = check_request(prompts, max_tokens, temperature, stop)
    requests = [{"prompt": p, "max_tokens": max_tokens, "temperature": temperature}
                for p in prompts]
    keys = [self.cache.key(self.fingerprint, r) if self.cache is not None else None
            for r in requests]
    results = [self.cache.get(k) if k else None for k in keys]
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
      texts = self._generate([prompts[i] for i in todo], max_tokens, temperature)
      for i, text in zip(todo, texts):
        results[i] = text
        if keys[i]:
          self.cache.put(keys[i], text, requests[i])
    return [truncate_at_stop(r, stop) for r in results]
