"""Teachers: the OpenAI-compatible client against a scripted local HTTP server (retries, timeouts,
malformed answers, cache, concurrency, rate limit), the local-model teacher, `make_teacher`.

Nothing here depends on how fast the machine is: waits (backoff, Retry-After, the rate limiter)
run on a fake clock, the concurrency test holds requests on a condition rather than a sleep, and
the one real timeout (a server that never answers) has a margin of seconds over a local reply.
"""

import email.utils
import http.server
import json
import pathlib
import threading

import ml_collections
import pytest
from conftest import tiny

from phi_jax.curation import teacher as teachers
from phi_jax.data import tokenizer as tokenizers


class _Server(http.server.ThreadingHTTPServer):
  daemon_threads = True
  block_on_close = False


class _Handler(http.server.BaseHTTPRequestHandler):

  def log_message(self, *args):  # Quiet.
    pass

  def do_POST(self):  # pylint: disable=invalid-name
    state = self.server.state
    body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
    cond = state["cond"]
    with cond:
      state["calls"] += 1
      call = state["calls"]
      state["bodies"].append(body)
      state["headers"].append(dict(self.headers))
      state["in_flight"] += 1
      state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
      cond.notify_all()
      _hold(state)
    status, headers, payload, hang = state["script"](call, body)
    if hang:  # Never answers (until the test ends): the client's timeout must end the request.
      state["release"].wait()
    with cond:
      # Out of flight BEFORE the response is sent: once the client has the answer and sends its
      # next request, this one no longer counts, so in_flight never exceeds what the client has
      # outstanding.
      state["in_flight"] -= 1
    try:
      self.send_response(status)
      for k, v in headers.items():
        self.send_header(k, v)
      self.send_header("Content-Length", str(len(payload)))
      self.end_headers()
      self.wfile.write(payload)
    except (BrokenPipeError, ConnectionResetError):  # The client gave up (timeout test).
      pass


def _hold(state):
  """With state['gate'] = n: the first requests wait (under state['cond']) until n are in flight
  at once, then a moment longer in case the client sends more than it may, after which the gate
  stays open. Gives up after 10 s (a client that never sends n at once fails the test then)."""
  n, cond = state["gate"], state["cond"]
  if n is None or state["gate_open"]:
    return
  if state["in_flight"] >= n:
    # Requests beyond the bound, if the client sent any, arrive while these n are still held.
    # (This wait only sharpens the test against an over-concurrent client; it cannot fail a
    # correct one.)
    cond.wait_for(lambda: state["in_flight"] > n, timeout=0.2)
  else:
    cond.wait_for(lambda: state["gate_open"], timeout=10.0)
  state["gate_open"] = True
  cond.notify_all()


def _ok(text, hang=False):
  payload = {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"}]}
  return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode(), hang


class _FakeClock:
  """Time for the teacher's `clock`/`sleep` that moves only when a thread sleeps (thread-safe).
  Remembers each thread's last reading: right after `RateLimiter.acquire` returns, that is the
  time the request was granted at."""

  def __init__(self):
    self.now, self.sleeps = 0.0, []
    self._lock, self._last = threading.Lock(), {}

  def __call__(self) -> float:
    with self._lock:
      self._last[threading.get_ident()] = self.now
      return self.now

  def sleep(self, seconds: float) -> None:
    with self._lock:
      self.sleeps.append(seconds)
      self.now += seconds

  def last_reading(self) -> float:
    with self._lock:
      return self._last[threading.get_ident()]


def _echo(call, body):
  del call
  return _ok("answer: " + body["messages"][-1]["content"])


@pytest.fixture
def server():
  srv = _Server(("127.0.0.1", 0), _Handler)
  srv.state = {"cond": threading.Condition(), "calls": 0, "bodies": [], "headers": [],
               "in_flight": 0, "max_in_flight": 0, "script": _echo, "gate": None,
               "gate_open": False, "release": threading.Event()}
  thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                            daemon=True)
  thread.start()
  srv.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
  yield srv
  srv.state["release"].set()
  srv.shutdown()
  srv.server_close()


def _teacher(server, **kw):
  kw = {"api_key": "sk-test-SECRET", "backoff_s": 0.01, "max_backoff_s": 0.05, "max_retries": 3,
        "timeout_s": 5.0, **kw}
  return teachers.OpenAITeacher("tiny-gpt", base_url=server.url, **kw)


def test_success_request_shape_order_and_stop(server):
  server.state["script"] = lambda call, body: _ok(body["messages"][-1]["content"] + " END tail")
  t = _teacher(server, system_prompt="You write textbooks.", concurrency=3)
  prompts = [f"prompt {i}" for i in range(7)]
  assert t.complete(prompts, max_tokens=32, temperature=0.7, stop=[" END"]) == prompts
  body = server.state["bodies"][0]
  assert body["model"] == "tiny-gpt" and body["max_tokens"] == 32 and body["temperature"] == 0.7
  assert body["stop"] == [" END"]
  assert body["messages"][0] == {"role": "system", "content": "You write textbooks."}
  assert server.state["headers"][0]["Authorization"] == "Bearer sk-test-SECRET"
  assert "SECRET" not in repr(t) and "SECRET" not in t.fingerprint


def test_completions_endpoint(server):
  def script(call, body):
    del call
    return 200, {}, json.dumps({"choices": [{"text": body["prompt"][::-1]}]}).encode(), False
  server.state["script"] = script
  t = _teacher(server, endpoint="completions")
  assert t.complete(["abc", "xyz"], max_tokens=4, temperature=0.0) == ["cba", "zyx"]


def test_429_retry_after_is_honoured(server):
  def script(call, body):
    if call == 1:
      return 429, {"Retry-After": "1"}, b'{"error": "slow down"}', False
    return _echo(call, body)
  server.state["script"] = script
  clock = _FakeClock()
  t = _teacher(server, clock=clock, sleep=clock.sleep)
  assert t.complete(["p"], max_tokens=8, temperature=0.0) == ["answer: p"]
  assert server.state["calls"] == 2 and t.stats["retries"] == 1
  assert clock.sleeps == [1.0]  # Waited the server's Retry-After, not the 0.01 s backoff.
  capped = _teacher(server, clock=clock, sleep=clock.sleep, max_retry_after_s=0.5)
  server.state["calls"] = 0
  assert capped.complete(["p"], max_tokens=8, temperature=0.0) == ["answer: p"]
  assert clock.sleeps == [1.0, 0.5]  # At most max_retry_after_s.


def test_retry_after_header_forms():
  now = 1_700_000_000.0
  assert teachers._retry_after_seconds("7", now=now) == 7.0
  assert teachers._retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True),
                                       now=now) == 30.0
  assert teachers._retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True),
                                       now=now) == 0.0  # A date in the past: retry at once.
  assert teachers._retry_after_seconds("soon", now=now) is None
  assert teachers._retry_after_seconds(None) is None


def test_5xx_then_success(server):
  server.state["script"] = lambda call, body: (
      (500, {}, b"internal", False) if call <= 2 else _echo(call, body))
  clock = _FakeClock()
  t = _teacher(server, clock=clock, sleep=clock.sleep)
  assert t.complete(["q"], max_tokens=8, temperature=0.0) == ["answer: q"]
  assert server.state["calls"] == 3 and t.stats["retries"] == 2
  # Exponential backoff (0.01 s * 2**retry) times a jitter factor in [0.5, 1].
  first, second = clock.sleeps
  assert 0.005 <= first <= 0.01 and 0.01 <= second <= 0.02


def test_hang_times_out_and_retries(server):
  # The first request is never answered; the retry is answered at once. 2 s is the time the
  # client gives each request: the hung one always uses it up, the local answer needs ~1 ms.
  server.state["script"] = lambda call, body: _ok("late", hang=True) if call == 1 else _ok("fast")
  t = _teacher(server, timeout_s=2.0)
  assert t.complete(["h"], max_tokens=8, temperature=0.0) == ["fast"]
  assert server.state["calls"] == 2 and t.stats["retries"] == 1


@pytest.mark.parametrize("payload, message", [
    (b"<html>gateway</html>", "not JSON"),
    (b'{"id": "x"}', "no non-empty 'choices' list"),
    (b'{"choices": [{"message": {"content": 7}}]}', r"choices\[0\].message.content is int"),
    (b'{"choices": [{"message": {"content": null}}]}', "refusal"),
    (b'{"choices": ["text"]}', r"choices\[0\] is a str"),
])
def test_malformed_responses_fail_clearly_after_retries(server, payload, message):
  server.state["script"] = lambda call, body: (200, {}, payload, False)
  t = _teacher(server, max_retries=2)
  with pytest.raises(teachers.TeacherError, match=message) as info:
    t.complete(["m"], max_tokens=8, temperature=0.0)
  assert "after 3 attempts" in str(info.value) and server.state["calls"] == 3
  assert info.value.failures.keys() == {0}


def test_malformed_once_then_success(server):
  server.state["script"] = lambda call, body: (
      (200, {}, b"{", False) if call == 1 else _echo(call, body))
  assert _teacher(server).complete(["z"], max_tokens=8, temperature=0.0) == ["answer: z"]


def test_exhausted_retries_and_client_errors(server):
  server.state["script"] = lambda call, body: (503, {}, b"overloaded", False)
  with pytest.raises(teachers.TeacherError, match="failed after 3 attempts.*HTTP 503: overloaded"):
    _teacher(server, max_retries=2).complete(["a"], max_tokens=8, temperature=0.0)
  assert server.state["calls"] == 3
  server.state["script"] = lambda call, body: (401, {}, b'{"error": "bad key"}', False)
  with pytest.raises(teachers.TeacherError, match="HTTP 401.*not retried.*bad key") as info:
    _teacher(server).complete(["a"], max_tokens=8, temperature=0.0)
  assert server.state["calls"] == 4 and "SECRET" not in str(info.value)


def test_connection_refused_is_retried_then_reported():
  t = teachers.OpenAITeacher("m", base_url="http://127.0.0.1:9/v1", api_key="", max_retries=1,
                             backoff_s=0.01, timeout_s=1.0)
  with pytest.raises(teachers.TeacherError, match="after 2 attempts.*connection error"):
    t.complete(["a"], max_tokens=4, temperature=0.0)


def test_cache_resumes_without_http_calls(server, tmp_path):
  prompts = [f"topic {i}" for i in range(6)]
  first = _teacher(server, cache_dir=tmp_path / "cache")
  out = first.complete(prompts[:4], max_tokens=16, temperature=1.0)  # "interrupted" after 4
  assert server.state["calls"] == 4
  second = _teacher(server, cache_dir=tmp_path / "cache")
  assert second.complete(prompts, max_tokens=16, temperature=1.0)[:4] == out
  assert server.state["calls"] == 6 and second.stats["cache_hits"] == 4
  third = _teacher(server, cache_dir=tmp_path / "cache", api_key="another-key")
  third.complete(prompts, max_tokens=16, temperature=1.0)
  assert server.state["calls"] == 6 and third.stats["http_calls"] == 0  # Key not in the cache key.
  third.complete(prompts[:1], max_tokens=16, temperature=0.5)  # Another request: asked again.
  assert server.state["calls"] == 7
  files = list((tmp_path / "cache").glob("*/*.json"))
  assert len(files) == 7 and not any("SECRET" in f.read_text() for f in files)


def test_partial_failure_keeps_the_successes(server, tmp_path):
  server.state["script"] = lambda call, body: (
      (400, {}, b"bad prompt", False) if "bad" in body["messages"][-1]["content"]
      else _echo(call, body))
  t = _teacher(server, cache_dir=tmp_path)
  with pytest.raises(teachers.TeacherError, match="1 of 3 requests failed; prompt 1") as info:
    t.complete(["ok 0", "bad", "ok 2"], max_tokens=8, temperature=0.0)
  assert list(info.value.failures) == [1]
  assert info.value.results == ["answer: ok 0", None, "answer: ok 2"]
  calls = server.state["calls"]
  assert t.complete(["ok 0", "ok 2"], max_tokens=8, temperature=0.0) == ["answer: ok 0",
                                                                          "answer: ok 2"]
  assert server.state["calls"] == calls


@pytest.mark.parametrize("concurrency", [2, 4])
def test_concurrency_overlaps_requests(server, concurrency):
  # The server holds the first requests until `concurrency` are in flight at once (or 10 s), so
  # overlap does not depend on how fast the threads start; it counts a request out of flight
  # before answering it, so the count is what the client has outstanding. Used (>= 2) and
  # bounded (<= the setting): exactly the setting.
  server.state["script"] = lambda call, body: _ok("x")
  server.state["gate"] = concurrency
  t = _teacher(server, concurrency=concurrency, timeout_s=30.0)
  assert t.complete([f"c{i}" for i in range(12)], max_tokens=4, temperature=0.0) == ["x"] * 12
  assert server.state["calls"] == 12 and server.state["max_in_flight"] == concurrency


def test_rate_limit_is_honoured(server):
  # A fake clock: the limiter's waits advance it, so the test checks which requests the limiter
  # let go at which (fake) time, never how fast the machine ran them.
  clock = _FakeClock()
  t = _teacher(server, concurrency=4, requests_per_second=5, clock=clock, sleep=clock.sleep)
  grants, lock, acquire = [], threading.Lock(), t.limiter.acquire

  def recording_acquire():
    acquire()
    with lock:
      grants.append(clock.last_reading())  # The time this request was granted at.
  t.limiter.acquire = recording_acquire
  t.complete([f"r{i}" for i in range(12)], max_tokens=4, temperature=0.0)
  assert server.state["calls"] == len(grants) == 12 and t.limiter.waits > 0
  grants.sort()
  # No 6 requests inside one second; 12 at 5/s need three 1 s windows.
  assert all(grants[i + 5] - grants[i] >= 1.0 - 1e-9 for i in range(len(grants) - 5))
  assert grants[10] >= 2.0 - 1e-9


def test_rate_limiter_counts_with_a_fake_clock():
  now = [0.0]
  sleeps = []
  def sleep(dt):
    sleeps.append(dt)
    now[0] += dt
  limiter = teachers.RateLimiter(requests_per_second=10, requests_per_minute=3,
                                 clock=lambda: now[0], sleep=sleep)
  for _ in range(7):
    limiter.acquire()
  assert now[0] == pytest.approx(120.0)  # 3 per minute: grants at 0, 0, 0, 60, 60, 60, 120.
  slow = teachers.RateLimiter(requests_per_second=0.5, clock=lambda: now[0], sleep=sleep)
  start = now[0]
  for _ in range(3):
    slow.acquire()
  assert now[0] - start == pytest.approx(4.0)  # One request per 2 s.


def test_truncate_at_stop():
  assert teachers.truncate_at_stop("a\n###b##c", ["##", "\n"]) == "a"
  assert teachers.truncate_at_stop("abc", None) == "abc"
  assert teachers.truncate_at_stop("abc", ["", "z"]) == "abc"


def test_make_teacher(monkeypatch, tmp_path):
  monkeypatch.setenv("OPENAI_BASE_URL", "http://example.invalid/v1")
  monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
  config = teachers.teacher_config("openai")
  config.model = "m1"
  config.cache_dir = str(tmp_path)
  config.requests_per_minute = 60.0
  t = make = teachers.make_teacher(config)
  assert isinstance(make, teachers.OpenAITeacher)
  assert t.url == "http://example.invalid/v1/chat/completions"
  assert t._api_key == "sk-env" and t.cache is not None and "sk-env" not in t.fingerprint
  with pytest.raises(ValueError, match="Unknown teacher config field.*modle"):
    teachers.make_teacher(ml_collections.ConfigDict({"kind": "openai", "modle": "x"}))
  with pytest.raises(ValueError, match="teacher.kind must be"):
    teachers.make_teacher(ml_collections.ConfigDict({"kind": "gpt"}))
  with pytest.raises(ValueError, match="needs teacher.path"):
    teachers.make_teacher(ml_collections.ConfigDict({"kind": "local"}))
  assert isinstance(teachers.make_teacher(ml_collections.ConfigDict({"kind": "procedural"})),
                    teachers.ProceduralTeacher)


TEXT = [f"def function_{i}(x, y):\n    return x * {i} + y  # item {i}\n" for i in range(200)]


@pytest.fixture(scope="module")
def local_teacher_dir(tmp_path_factory):
  from phi_jax.convert import hf
  root = tmp_path_factory.mktemp("local_teacher")
  sp = tokenizers.train_sentencepiece(TEXT, root / "sp", vocab_size=300)
  cfg, params = tiny("tiny-parallel", vocab_size=300)
  hf.save(cfg, params, root / "model")
  (root / "model" / "tokenizer.model").write_bytes(pathlib.Path(sp.path).read_bytes())
  return root / "model"


def test_local_teacher_generates_and_respects_stop(local_teacher_dir, tmp_path):
  t = teachers.LocalTeacher(local_teacher_dir, batch_size=4, cache_dir=tmp_path)
  prompts = ["def function_3(x, y):", "def", "return x"]
  full = t.complete(prompts, max_tokens=12, temperature=0.0)
  assert len(full) == 3 and all(isinstance(s, str) for s in full)
  assert any(len(s) > 2 for s in full)
  text = max(full, key=len)
  stop = text[len(text) // 2:len(text) // 2 + 2]  # A string the greedy output contains.
  cut = t.complete(prompts, max_tokens=12, temperature=0.0, stop=[stop])
  for a, b in zip(full, cut):
    assert b == a[:a.find(stop)] if stop in a else b == a
  assert stop not in cut[full.index(text)]
  assert len(list(tmp_path.glob("*/*.json"))) == 3  # Cached once, reused with the stop string.
  sampled = t.complete(prompts, max_tokens=12, temperature=1.0)
  assert len(sampled) == 3 and sampled == t.complete(prompts, max_tokens=12, temperature=1.0)
