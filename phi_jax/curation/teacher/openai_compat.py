"""`OpenAITeacher`: any OpenAI-compatible `/chat/completions` or `/completions` endpoint, standard
library only: a sliding-window rate limiter, retries with jittered backoff that honour
Retry-After, a thread pool, and the response cache."""

from __future__ import annotations

import collections
import email.utils
import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent import futures
from typing import Any, Callable, Mapping, Optional, Sequence

from phi_jax.curation.teacher.base import (ResponseCache, TeacherError, check_request,
                                           truncate_at_stop)


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
