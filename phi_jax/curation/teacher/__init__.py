"""Teacher models: whatever writes the synthetic textbooks and exercises (phi-1 used GPT-3.5).

One interface, three backends:

    teacher = make_teacher(teacher_config('openai'))        # or build one directly:
    teacher = OpenAITeacher('gpt-3.5-turbo', cache_dir='/data/teacher_cache', concurrency=8,
                            requests_per_minute=3000)        # OPENAI_BASE_URL / OPENAI_API_KEY
    teacher = LocalTeacher('/workdirs/phi1_small')           # a training workdir, phi_jax
                                                             # checkpoint or HF folder
    teacher = ProceduralTeacher(seed=0)                      # offline, no language model
    texts = teacher.complete(prompts, max_tokens=512, temperature=0.8, stop=['\\n###'])

`Teacher.complete(prompts, *, max_tokens, temperature, stop=None) -> list[str]` returns one
completion per prompt, in order, cut before the first stop string. `teacher.fingerprint` names
the model and every setting that changes its answers (never the API key); the on-disk
`ResponseCache` keys each answer by a hash of (fingerprint, request), one file per entry written
atomically, so an interrupted generation re-run with the same cache pays only for what is missing.
Identical requests share one cached answer: make prompts distinct (the synthetic prompt builders
do) to get distinct samples.

`ProceduralTeacher` is not a language model: it ignores what a prompt says and answers every
prompt with an exercise from `phi_jax.curation.procedural` (seeded by the prompt), written the way
the exercise prompts of `phi_jax.curation.synthetic` ask a teacher to write one. It stands in for a
teacher on the exercise path only; `synthetic.generate_exercises` draws from it directly (with the
task family kept) instead of prompting it.

Files: `base.py` (the interface, errors, request checks, the response cache), `openai_compat.py`
(the HTTP backend, its rate limiter and retries), `local.py` (a local model); the procedural
backend, `teacher_config` and `make_teacher` are here.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Optional, Sequence

import ml_collections

from phi_jax.curation.teacher.base import (CACHE_FORMAT, ResponseCache, Teacher, TeacherError,
                                           check_request, truncate_at_stop)
from phi_jax.curation.teacher.local import LocalTeacher
from phi_jax.curation.teacher.openai_compat import (OpenAITeacher, RateLimiter,
                                                    _retry_after_seconds, parse_completion)

__all__ = ["CACHE_FORMAT", "LocalTeacher", "OpenAITeacher", "ProceduralTeacher", "RateLimiter",
           "ResponseCache", "Teacher", "TeacherError", "check_request", "make_teacher",
           "parse_completion", "teacher_config", "truncate_at_stop"]


class ProceduralTeacher:
  """Exercises from `phi_jax.curation.procedural`, no language model (see the module doc).

  `complete` answers every prompt with one exercise of `split`, drawn with a seed made from
  (seed, prompt) and formatted as a ```python block (signature, docstring, solution, asserts).
  max_tokens and temperature do not apply; stop strings still cut the text.
  """

  def __init__(self, seed: int = 0, split: str = "train",
               families: Optional[Sequence[str]] = None):
    from phi_jax.curation import procedural  # pylint: disable=g-import-not-at-top
    procedural.check_split(split, families)
    self.seed, self.split = seed, split
    self.families = tuple(families) if families else None
    self.name = f"procedural:{split}"
    self.fingerprint = json.dumps({"kind": "procedural", "version": procedural.VERSION,
                                   "seed": seed, "split": split, "families": self.families})

  def exercises(self, n: int, seed: Optional[int] = None) -> list[Any]:
    """n verified-by-construction `procedural.Exercise`s (what `generate_exercises` uses)."""
    from phi_jax.curation import procedural  # pylint: disable=g-import-not-at-top
    return procedural.generate(n, seed=self.seed if seed is None else seed, split=self.split,
                               families=self.families)

  def complete(self, prompts: Sequence[str], *, max_tokens: int, temperature: float,
               stop: Optional[Sequence[str]] = None) -> list[str]:
    from phi_jax.curation import procedural  # pylint: disable=g-import-not-at-top
    stop = check_request(prompts, max_tokens, temperature, stop)
    out = []
    for prompt in prompts:
      draw_seed = int.from_bytes(hashlib.sha256(f"{self.seed}\x00{prompt}".encode()).digest()[:8],
                                 "big")
      exercise = procedural.generate(1, seed=draw_seed, split=self.split,
                                     families=self.families)[0]
      out.append(truncate_at_stop(procedural.format_response(exercise), stop))
    return out


def teacher_config(kind: str = "openai") -> ml_collections.ConfigDict:
  """Default settings for `make_teacher` (every field of every kind; fields of other kinds are
  ignored). Override fields, e.g. `c.model = 'gpt-4o-mini'; c.cache_dir = '/data/cache'`."""
  c = ml_collections.ConfigDict()
  c.kind = kind
  # openai
  c.model = "gpt-3.5-turbo"
  c.base_url = ""  # '' = $OPENAI_BASE_URL or https://api.openai.com/v1
  c.api_key_env = "OPENAI_API_KEY"  # The key is read from this variable, never stored here.
  c.endpoint = "chat"
  c.system_prompt = ""
  c.max_retries = 6
  c.timeout_s = 120.0
  c.concurrency = 4
  c.requests_per_second = 0.0  # 0 = unlimited
  c.requests_per_minute = 0.0
  c.backoff_s = 1.0
  c.max_backoff_s = 60.0
  # openai and local
  c.cache_dir = ""  # '' = no cache (no resume)
  # local
  c.path = ""
  c.tokenizer = ""
  c.step = -1  # -1 = newest checkpoint
  c.batch_size = 8
  c.dtype = "float32"
  c.add_bos = False
  c.top_k = 0  # 0 = off
  c.top_p = 1.0  # 1 = off
  # local and procedural
  c.seed = 0
  # procedural
  c.split = "train"
  return c


def make_teacher(config: ml_collections.ConfigDict) -> Teacher:
  """The teacher `config.kind` ('openai' | 'local' | 'procedural') from a `teacher_config`."""
  c = teacher_config(config.get("kind", "openai"))
  unknown = sorted(set(config.keys()) - set(c.keys()))
  if unknown:
    raise ValueError(f"Unknown teacher config field(s) {unknown}; known: {sorted(c.keys())}")
  c.update(config)
  kind = c.kind
  if kind == "openai":
    return OpenAITeacher(
        c.model, base_url=c.base_url or None, api_key=os.environ.get(c.api_key_env) if
        c.api_key_env else None, endpoint=c.endpoint, system_prompt=c.system_prompt or None,
        cache_dir=c.cache_dir or None, max_retries=c.max_retries, timeout_s=c.timeout_s,
        concurrency=c.concurrency, requests_per_second=c.requests_per_second or None,
        requests_per_minute=c.requests_per_minute or None, backoff_s=c.backoff_s,
        max_backoff_s=c.max_backoff_s)
  if kind == "local":
    if not c.path:
      raise ValueError("teacher.kind='local' needs teacher.path: a training workdir, phi_jax "
                       "checkpoint or Hugging Face folder")
    return LocalTeacher(c.path, tokenizer=c.tokenizer or None,
                        step=None if c.step < 0 else c.step, batch_size=c.batch_size, seed=c.seed,
                        dtype=c.dtype, add_bos=c.add_bos, top_k=c.top_k or None,
                        top_p=None if c.top_p >= 1.0 else c.top_p, cache_dir=c.cache_dir or None)
  if kind == "procedural":
    return ProceduralTeacher(seed=c.seed, split=c.split)
  raise ValueError(f"teacher.kind must be 'openai', 'local' or 'procedural', got {kind!r}")
