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
"""

from __future__ import annotations

import collections
import email.utils
import hashlib
import http.client
import json
import logging
import os
import pathlib
import random
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from concurrent import futures
from typing import Any, Callable, Mapping, Optional, Protocol, Sequence

import ml_collections

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
    fd, tmp = tempfile.mkstemp(prefix=f".{key[:8]}.", dir=path.parent)
    try:
      with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"completion": completion, "request": request}, f, ensure_ascii=False)
      os.replace(tmp, path)
    except BaseException:
      pathlib.Path(tmp).unlink(missing_ok=True)
      raise

  def count(self) -> int:
    """Entries on disk."""
    return sum(1 for _ in self.directory.glob("*/*.json"))


class RateLimiter:
  """At most `requests_per_second` in any 1 s window and `requests_per_minute` in any 60 s
  window (sliding windows; thread-safe). A fractional rate r < 1 allows 1 request per 1/r s."""

  def __init__(self, requests_per_second: Optional[float] = None,
               requests_per_minute: Optional[float] = None, *,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep):
    self._windows = []  # (max requests, period in seconds, deque of grant times)
    for rate, period in ((requests_per_second, 1.0), (requests_per_minute, 60.0)):
      if rate is None or rate == 0:
        continue
      if rate < 0:
        raise ValueError(f"request rates must be > 0 (or None / 0 = unlimited), got {rate}")
      count, span = (int(rate), period) if rate >= 1 else (1, period / rate)
      self._windows.append((count, span, collections.deque()))
    self._clock, self._sleep = clock, sleep
    self._lock = threading.Lock()
    self.waits = 0  # How many times a caller had to wait (for tests and logs).

  def acquire(self) -> None:
    """Blocks until a request may start, then records it."""
    while True:
      with self._lock:
        now = self._clock()
        delay = 0.0
        for count, span, grants in self._windows:
          while grants and grants[0] <= now - span:
            grants.popleft()
          if len(grants) >= count:
            delay = max(delay, grants[0] + span - now)
        if delay <= 0:
          for _, _, grants in self._windows:
            grants.append(now)
          return
        self.waits += 1
      self._sleep(delay)


def _retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
  """Retry-After as seconds (delta-seconds or an HTTP date, counted from `now`, a Unix time;
  default: time.time()), or None when absent / unreadable."""
  if not value:
    return None
  try:
    return max(0.0, float(value))
  except ValueError:
    pass
  try:
    when = email.utils.parsedate_to_datetime(value)
  except (TypeError, ValueError):
    return None
  return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _Malformed(ValueError):
  """A 200 response that does not have the expected shape."""


def parse_completion(body: bytes, endpoint: str) -> str:
  """The text of `choices[0]` of an OpenAI-style response; `_Malformed` names what is wrong."""
  try:
    data = json.loads(body)
  except ValueError:
    snippet = body[:120].decode("utf-8", errors="replace")
    raise _Malformed(f"response is not JSON (starts with {snippet!r})") from None
  if not isinstance(data, dict):
    raise _Malformed(f"response JSON is a {type(data).__name__}, expected an object")
  if "error" in data and "choices" not in data:
    raise _Malformed(f"response is an error object: {str(data['error'])[:300]}")
  choices = data.get("choices")
  if not isinstance(choices, list) or not choices:
    raise _Malformed(f"response has no non-empty 'choices' list (keys: {sorted(data)})")
  choice = choices[0]
  if not isinstance(choice, dict):
    raise _Malformed(f"choices[0] is a {type(choice).__name__}, expected an object")
  if endpoint == "chat":
    message = choice.get("message")
    if not isinstance(message, dict):
      raise _Malformed(f"choices[0] has no 'message' object (keys: {sorted(choice)})")
    text, where = message.get("content"), "choices[0].message.content"
  else:
    text, where = choice.get("text"), "choices[0].text"
  if not isinstance(text, str):
    raise _Malformed(f"{where} is {type(text).__name__}, expected a string"
                     + (" (a refusal or a tool call?)" if text is None else ""))
  return text


class OpenAITeacher:
  """An OpenAI-compatible HTTP endpoint: `POST {base_url}/chat/completions` (endpoint='chat')
  or `POST {base_url}/completions` (endpoint='completions'), standard library only.

  Args:
    model: the model name sent in each request.
    base_url: default `$OPENAI_BASE_URL`, else https://api.openai.com/v1.
    api_key: default `$OPENAI_API_KEY` (None: no Authorization header, e.g. a local server). It is
      sent as a bearer token and never logged, cached or part of the fingerprint.
    system_prompt: chat only: a system message before each prompt.
    cache_dir: where answers are cached (None: no cache, no resume).
    max_retries: retries after the first attempt on 429, 5xx, connection errors, timeouts and
      malformed 200 responses. Other 4xx fail at once (a wrong model name or key does not heal).
    timeout_s: per-request socket timeout.
    concurrency: requests in flight at once (a thread pool).
    requests_per_second / requests_per_minute: client-side rate limits (None = unlimited).
    backoff_s / max_backoff_s: retry n waits backoff_s * 2**n (capped), times a jitter factor in
      [0.5, 1]; a Retry-After header, when present, is waited instead (capped at max_retry_after_s).
    extra_body: more request fields (e.g. {'top_p': 0.95, 'seed': 1}); part of the fingerprint.
    clock / sleep: the time source and wait the rate limiter and retry waits use (default
      time.monotonic / time.sleep); tests pass a fake pair so that no test waits on the wall.
  """

  def __init__(self, model: str, *, base_url: Optional[str] = None,
               api_key: Optional[str] = None, endpoint: str = "chat",
               system_prompt: Optional[str] = None, cache_dir: Optional[str | os.PathLike] = None,
               max_retries: int = 6, timeout_s: float = 120.0, concurrency: int = 4,
               requests_per_second: Optional[float] = None,
               requests_per_minute: Optional[float] = None, backoff_s: float = 1.0,
               max_backoff_s: float = 60.0, max_retry_after_s: float = 300.0,
               extra_body: Optional[Mapping[str, Any]] = None,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep):
    if endpoint not in ("chat", "completions"):
      raise ValueError(f"endpoint must be 'chat' or 'completions', got {endpoint!r}")
    if not model:
      raise ValueError("model is required (the name the endpoint serves, e.g. 'gpt-3.5-turbo')")
    if concurrency < 1 or max_retries < 0 or timeout_s <= 0:
      raise ValueError(f"need concurrency >= 1, max_retries >= 0, timeout_s > 0; got "
                       f"{concurrency}, {max_retries}, {timeout_s}")
    self.model, self.endpoint, self.system_prompt = model, endpoint, system_prompt
    self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL")
                     or "https://api.openai.com/v1").rstrip("/")
    self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
    self.url = self.base_url + ("/chat/completions" if endpoint == "chat" else "/completions")
    self.cache = ResponseCache(cache_dir) if cache_dir else None
    self.max_retries, self.timeout_s, self.concurrency = max_retries, timeout_s, concurrency
    self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
    self.max_retry_after_s = max_retry_after_s
    self.extra_body = dict(extra_body or {})
    self._sleep = sleep
    self.limiter = RateLimiter(requests_per_second, requests_per_minute, clock=clock, sleep=sleep)
    self.name = f"openai:{model}"
    self.fingerprint = json.dumps({"kind": "openai", "url": self.url, "model": model,
                                   "system": system_prompt, "extra": self.extra_body},
                                  sort_keys=True)
    self._lock = threading.Lock()
    self.stats = collections.Counter()  # http_calls, cache_hits, retries, completions

  def __repr__(self) -> str:  # Never shows the key.
    return f"OpenAITeacher(model={self.model!r}, url={self.url!r}, cache={self.cache is not None})"

  def _body(self, prompt: str, max_tokens: int, temperature: float,
            stop: Sequence[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens,
                            "temperature": temperature, **self.extra_body}
    if self.endpoint == "chat":
      messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
      body["messages"] = messages + [{"role": "user", "content": prompt}]
    else:
      body["prompt"] = prompt
    if stop:
      body["stop"] = list(stop)
    return body

  def _count(self, name: str, n: int = 1) -> None:
    with self._lock:
      self.stats[name] += n

  def _post(self, body: Mapping[str, Any]) -> tuple[int, Mapping[str, str], bytes]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if self._api_key:
      headers["Authorization"] = f"Bearer {self._api_key}"
    request = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"),
                                     headers=headers, method="POST")
    self._count("http_calls")
    try:
      with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
        return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
      with e:
        return e.code, e.headers, e.read()

  def _backoff(self, attempt: int, retry_after: Optional[float]) -> float:
    if retry_after is not None:
      return min(retry_after, self.max_retry_after_s)
    return min(self.max_backoff_s, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)

  def _request(self, body: Mapping[str, Any]) -> str:
    """One completion, retried as documented; raises TeacherError naming the last problem."""
    last = "no attempt made"
    for attempt in range(self.max_retries + 1):
      retry_after = None
      self.limiter.acquire()
      try:
        status, headers, payload = self._post(body)
      except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, resets
        reason = getattr(e, "reason", e)
        last = (f"connection error or timeout (limit {self.timeout_s}s): "
                f"{type(reason).__name__}: {reason}")
      else:
        if status == 200:
          try:
            return parse_completion(payload, self.endpoint)
          except _Malformed as e:
            last = f"malformed response: {e}"
        elif status == 429 or status >= 500:
          retry_after = _retry_after_seconds(headers.get("Retry-After") if headers else None)
          last = f"HTTP {status}: {payload[:300].decode('utf-8', errors='replace')}"
        else:
          raise TeacherError(
              f"HTTP {status} from {self.url} (not retried: a client error; check the model name, "
              f"API key and request): {payload[:500].decode('utf-8', errors='replace')}")
      if attempt < self.max_retries:
        self._count("retries")
        logging.info("teacher request failed (%s); retry %d/%d", last, attempt + 1,
                     self.max_retries)
        self._sleep(self._backoff(attempt, retry_after))
    raise TeacherError(f"request to {self.url} failed after {self.max_retries + 1} attempts; "
                       f"last error: {last}")

  def _one(self, body: dict[str, Any], stop: Sequence[str]) -> str:
    key = self.cache.key(self.fingerprint, body) if self.cache is not None else None
    if key is not None:
      cached = self.cache.get(key)
      if cached is not None:
        self._count("cache_hits")
        return truncate_at_stop(cached, stop)
    text = self._request(body)
    if key is not None:
      self.cache.put(key, text, body)
    self._count("completions")
    return truncate_at_stop(text, stop)  # Servers that ignore `stop` are cut here.

  def complete(self, prompts: Sequence[str], *, max_tokens: int, temperature: float,
               stop: Optional[Sequence[str]] = None) -> list[str]:
    """Completions in prompt order. Every request runs (and is cached) even when another fails;
    then a TeacherError lists the failures and carries the other results."""
    stop = check_request(prompts, max_tokens, temperature, stop)
    bodies = [self._body(p, max_tokens, temperature, stop) for p in prompts]
    results: list[Optional[str]] = [None] * len(bodies)
    failures: dict[int, str] = {}
    with futures.ThreadPoolExecutor(max_workers=self.concurrency) as pool:
      jobs = {pool.submit(self._one, body, stop): i for i, body in enumerate(bodies)}
      for job in futures.as_completed(jobs):
        try:
          results[jobs[job]] = job.result()
        except TeacherError as e:
          failures[jobs[job]] = str(e)
    if failures:
      first = min(failures)
      raise TeacherError(f"{len(failures)} of {len(prompts)} requests failed; prompt {first}: "
                         f"{failures[first]}", failures, results)
    return results  # type: ignore[return-value]


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
    from phi_jax.decoding import generate  # pylint: disable=g-import-not-at-top
    eos = self.tokenizer.eos_id if self.tokenizer.eos_id is not None else self.cfg.eos_id
    out = []
    for start in range(0, len(prompts), self.batch_size):
      batch = list(prompts[start:start + self.batch_size])
      ids = [self.tokenizer.encode(p) for p in batch]
      ids = [i if i else [eos] for i in ids]  # An empty prompt starts from EOS (a boundary).
      salt = zlib.crc32("\x00".join(batch).encode("utf-8"))
      rng = jax.random.fold_in(jax.random.key(self.seed), salt)
      tokens = generate(self.cfg, self.params, ids, max_new_tokens=max_tokens,
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
