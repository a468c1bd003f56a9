"""Sandboxed execution of untrusted Python programs (model completions plus their tests).

    result = execute("assert 1 + 1 == 2", timeout_s=5)     # ExecResult(status='passed', ...)
    results = execute_many(programs, workers=8)              # same order as `programs`
    iso = isolation()                                        # Isolation(level, reason, ...)
    execute_many(programs, require_isolation="namespaces")   # IsolationError if weaker here

Every program runs in a fresh working directory, with closed stdin, a scrubbed environment, and
limits on wall time, CPU time, address space, processes (threads count), file size and open files.
How much more isolation it gets depends on what the machine allows; `isolation()` probes once and
picks the strongest level that works (or the one named by `$PHI_JAX_SANDBOX` / `isolation_level=`):

  namespaces  (root)   new network, PID, mount, IPC and UTS namespaces (`unshare`); the program
                       runs as a per-run unprivileged uid; every mount is read-only and /tmp,
                       /var/tmp, /dev/shm are private tmpfs; the interpreter's folders, wherever
                       they are (under /root, a 0700 `mktemp -d` folder, /tmp), are bind-mounted
                       back read-only at their own paths with the rest of their private parent
                       hidden (sandbox_procs.exposed); killing the namespace's init kills every
                       descendant.
  userns      (user)   the same namespaces inside an unprivileged user namespace, with every
                       capability dropped; the program keeps the caller's uid outside.
  uid         (root)   no namespaces: a per-run uid (so RLIMIT_NPROC is exact and `kill(-1)` as
                       that uid reaps every descendant) plus the audit-hook guard (sandbox_guard).
  rlimits     (user)   rlimits, a new session, descendants found by an environment token, and the
                       audit-hook guard. Best effort: see README "Sandbox threat model".

No fallback is silent: the chosen level and why the stronger ones are unavailable are logged
(`execute_many`: every call) and kept in `Isolation.reason`, which the HumanEval/MBPP/procedural
results record ('isolation'); `require_isolation=` (or `$PHI_JAX_SANDBOX_REQUIRE`) refuses to run
below a level.

Per-run uids come from sandbox_procs.UID_BASE .. UID_BASE + UID_POOL - 1, leased with a lock
file each, so concurrent evaluators (threads or processes) never share one.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
import math
import os
import pathlib
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import logging
import threading
import time
from typing import Optional, Sequence

from phi_jax.evals import sandbox_procs as procs

_log = logging.getLogger(__name__)
LEVELS = ("namespaces", "userns", "uid", "rlimits")   # strongest first
_HERE = pathlib.Path(__file__).resolve().parent
_INIT = str(_HERE / "sandbox_init.py")
_GUARD = str(_HERE / "sandbox_guard.py")
_UNSHARE_FLAGS = ["--net", "--pid", "--mount", "--ipc", "--uts", "--fork", "--kill-child",
                  "--mount-proc"]
_DRAIN_S = 1.0   # after the program ended or was killed: time for its output pipes to close
_DESCRIPTIONS = {
    "namespaces": "network/PID/mount/IPC/UTS namespaces, per-run uid, read-only filesystem with "
                  "private /tmp, rlimits",
    "userns": "unprivileged user namespace with network/PID/mount/IPC/UTS namespaces, no "
              "capabilities, read-only filesystem with private /tmp, rlimits (caller's uid)",
    "uid": "per-run uid, rlimits, audit-hook guard (no network namespace: sockets blocked "
           "in-process only)",
    "rlimits": "rlimits, new session, audit-hook guard (caller's uid; best effort)",
}


@dataclasses.dataclass(frozen=True)
class ExecResult:
  """The outcome of one program.

  status: 'passed' (exit 0 within the limits, and the sentinel line printed if one was asked
  for), 'failed' (ran and exited non-zero or was killed by a signal other than a time limit),
  'timeout' (wall or CPU time limit) or 'error' (the sandbox could not run it).
  returncode: the program's exit code, negative for a signal; None if it never ran to an end.
  stdout/stderr: decoded, at most `output_bytes` each (head and tail kept, middle elided).
  """
  status: str
  passed: bool
  returncode: Optional[int]
  stdout: str
  stderr: str
  reason: str
  duration_s: float
  cpu_s: Optional[float]
  isolation: str


@dataclasses.dataclass(frozen=True)
class Isolation:
  """The level programs run at, and why that one.

  reason: 'strongest level', 'named by ...', or why each stronger level is unavailable here.
  fell_back: a stronger level exists but does not work here (needs root, no `unshare`, ...).
  degraded: a stronger level that should work here (its requirements are met) failed its probe,
  i.e. something is broken rather than merely absent.
  """
  level: str
  description: str
  reason: str
  fell_back: bool = False
  degraded: bool = False

  @property
  def best_effort(self) -> bool:
    return self.level in ("uid", "rlimits")

  def as_dict(self) -> dict:
    """For results JSON: {'level', 'reason', 'description', 'fell_back', 'degraded',
    'best_effort'}."""
    return {"level": self.level, "reason": self.reason, "description": self.description,
            "fell_back": self.fell_back, "degraded": self.degraded,
            "best_effort": self.best_effort}

  def __str__(self) -> str:
    return f"{self.level}: {self.description} [{self.reason}]"


class _Capture:
  """Keeps the first and last `limit // 2` bytes of a stream and counts the rest."""

  def __init__(self, limit: int):
    self.half = max(limit // 2, 1)
    self.head = bytearray()
    self.tail = bytearray()
    self.total = 0

  def add(self, data: bytes) -> None:
    self.total += len(data)
    room = self.half - len(self.head)
    if room > 0:
      self.head += data[:room]
      data = data[room:]
    if data:
      self.tail += data
      del self.tail[:-self.half]

  def text(self) -> str:
    omitted = self.total - len(self.head) - len(self.tail)
    middle = f"\n...[{omitted} bytes omitted]...\n".encode() if omitted else b""
    return (bytes(self.head) + middle + bytes(self.tail)).decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# One run


@dataclasses.dataclass(frozen=True)
class _Limits:
  timeout_s: float
  memory_mb: int
  cpu_s: float
  max_processes: int
  file_mb: int
  output_bytes: int


def _rlimits(level: str, limits: _Limits) -> dict[str, tuple[int, int]]:
  import resource
  cpu = max(1, math.ceil(limits.cpu_s))
  nproc = limits.max_processes
  if level in ("rlimits", "userns") and os.geteuid() != 0:
    # RLIMIT_NPROC counts every thread of the uid: leave room for the caller's own.
    me = os.getuid()
    nproc += sum(1 for _, u in procs.procs() if u == me) * 4
  hard_nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
  if hard_nproc != resource.RLIM_INFINITY:
    nproc = min(nproc, hard_nproc)
  mem = limits.memory_mb << 20
  files = limits.file_mb << 20
  return {"CPU": (cpu, cpu + 1), "AS": (mem, mem), "FSIZE": (files, files),
          "NPROC": (nproc, nproc), "NOFILE": (256, 256), "CORE": (0, 0)}


def _program_env(workdir: str, token: Optional[str]) -> dict[str, str]:
  env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir,
         "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0",
         "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
         "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
  if token:
    env[procs.TOKEN_VAR] = token
  return env


def _error(reason: str, start: float, level: str) -> ExecResult:
  return ExecResult("error", False, None, "", "", reason, time.monotonic() - start, None, level)


@functools.lru_cache(maxsize=None)
def _guard_source() -> str:
  return pathlib.Path(_GUARD).read_text(encoding="utf-8")


def _run(program: str, level: str, limits: _Limits, sentinel: Optional[str],
         python: str) -> ExecResult:
  start = time.monotonic()
  uid, lock_fd, host_workdir, token = None, None, None, None
  try:
    if level in ("namespaces", "uid"):
      uid, lock_fd = procs.lease_uid()
      if level == "uid" and lock_fd is None:
        return _error(f"level 'uid' needs the uids {procs.UID_BASE}+{procs.UID_POOL} mapped",
                      start, level)
      if level == "uid":
        procs.reap_uid(uid)  # leftovers of an evaluator that crashed while holding this uid
    if level in ("uid", "rlimits"):
      host_workdir = tempfile.mkdtemp(prefix="phi_jax_sandbox_")
      if uid is not None:
        os.chown(host_workdir, uid, uid)
      token = secrets.token_hex(16) if level == "rlimits" else None
    workdir = host_workdir or "/tmp/sandbox"
    # The guard goes in as source (-c): the per-run uid may not be able to read the checkout.
    argv = ([python, "-s", "main.py"] if host_workdir is None
            else [python, "-s", "-c", _guard_source(), "main.py"])
    spec = {"level": level, "uid": uid, "gid": uid, "workdir": host_workdir,
            "tmpfs_mb": limits.file_mb + 8, "rlimits": _rlimits(level, limits), "argv": argv,
            "env": _program_env(workdir, token), "program": program,
            "alarm_s": math.ceil(limits.timeout_s) + 2,
            "expose": procs.exposed(python, level) if level in ("namespaces", "userns") else {}}
    return _launch(spec, level, limits, sentinel, start, uid, token)
  except (OSError, RuntimeError, subprocess.SubprocessError) as e:
    return _error(f"sandbox failed: {type(e).__name__}: {e}", start, level)
  finally:
    if level == "uid" and uid is not None:
      procs.clean_shared_tmp(uid)
    if host_workdir:
      shutil.rmtree(host_workdir, ignore_errors=True)
    if lock_fd is not None:
      os.close(lock_fd)


def _launch(spec: dict, level: str, limits: _Limits, sentinel: Optional[str], start: float,
            uid: Optional[int], token: Optional[str]) -> ExecResult:
  status_r, status_w = os.pipe()
  cmd = [sys.executable, "-I", "-S", _INIT, str(status_w)]
  if level == "namespaces":
    cmd = [shutil.which("unshare") or "unshare", *_UNSHARE_FLAGS, *cmd]
  elif level == "userns":
    cmd = [shutil.which("unshare") or "unshare", "--user", "--map-root-user", *_UNSHARE_FLAGS, *cmd]
  try:
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, pass_fds=(status_w,), start_new_session=True,
                            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
  except OSError as e:
    os.close(status_r)
    return _error(f"could not start the sandbox: {e}", start, level)
  finally:
    os.close(status_w)

  def kill_all() -> None:
    if level in ("namespaces", "userns"):
      for child in procs.children(proc.pid):  # the namespace's init: killing it empties it
        try:
          os.kill(child, signal.SIGKILL)
        except OSError:
          pass
    try:
      os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
      pass
    if level == "uid":
      procs.reap_uid(uid)
    elif level == "rlimits":
      procs.reap_token(token)

  out, err, status = _Capture(limits.output_bytes), _Capture(limits.output_bytes), bytearray()
  timed_out = False
  try:
    timed_out = _pump(proc, status_r, json.dumps(spec).encode(), out, err, status,
                      start + limits.timeout_s, kill_all)
  finally:
    kill_all()
    try:
      proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      pass
    os.close(status_r)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
      try:
        stream.close()
      except OSError:
        pass
  return _classify(status, out, err, timed_out, limits, sentinel, start, level, proc.returncode)


def _pump(proc: subprocess.Popen, status_r: int, spec: bytes, out: _Capture, err: _Capture,
          status: bytearray, deadline: float, kill_all) -> bool:
  """Feeds the spec, reads stdout/stderr/status until all close. Returns whether it timed out.

  When the launcher closes the status pipe (the program ended) or the wall limit passes, every
  process of the run is killed and the output pipes get `_DRAIN_S` more to reach end of file;
  whatever is still buffered in them then is read before giving up, so what the program wrote is
  kept however late this thread got to run (a loaded machine delays the reader, not the data).
  """
  sel = selectors.DefaultSelector()
  os.set_blocking(proc.stdin.fileno(), False)
  sel.register(proc.stdin, selectors.EVENT_WRITE)
  sel.register(proc.stdout, selectors.EVENT_READ, out)
  sel.register(proc.stderr, selectors.EVENT_READ, err)
  sel.register(status_r, selectors.EVENT_READ, status)
  view, timed_out, finished = memoryview(spec), False, False

  def take(key, data: bytes) -> None:
    if key.data is status:
      status.extend(data[:max(0, (1 << 16) - len(status))])
    else:
      key.data.add(data)

  try:
    while len(sel.get_map()) > 0:
      remaining = deadline - time.monotonic()
      if remaining <= 0:
        if finished:
          break
        timed_out, finished = True, True
        kill_all()
        deadline = time.monotonic() + _DRAIN_S
        continue
      for key, _ in sel.select(remaining):
        if key.fileobj is proc.stdin:
          try:
            view = view[os.write(proc.stdin.fileno(), view[:65536]):]
          except (BrokenPipeError, BlockingIOError) as e:
            view = view[:0] if isinstance(e, BrokenPipeError) else view
          if not view:
            sel.unregister(proc.stdin)
            proc.stdin.close()
          continue
        data = os.read(key.fd, 65536)
        if not data:
          sel.unregister(key.fileobj)
          if key.fileobj is status_r and not finished:
            finished = True
            kill_all()
            deadline = time.monotonic() + _DRAIN_S
        else:
          take(key, data)
    for key in list(sel.get_map().values()):  # drain what is buffered, without waiting
      if key.fileobj is proc.stdin:
        continue
      os.set_blocking(key.fd, False)
      for _ in range(256):  # bounded: a writer that survived the kill could write forever
        try:
          data = os.read(key.fd, 65536)
        except BlockingIOError:
          break
        if not data:
          break
        take(key, data)
  finally:
    sel.close()
  return timed_out


def _classify(status: bytearray, out: _Capture, err: _Capture, timed_out: bool, limits: _Limits,
              sentinel: Optional[str], start: float, level: str,
              launcher_code: Optional[int]) -> ExecResult:
  events = []
  for line in bytes(status).decode(errors="replace").splitlines():
    try:
      events.append(json.loads(line))
    except json.JSONDecodeError:
      pass
  setup = next((e for e in events if e.get("event") == "setup_error"), None)
  exit_ = next((e for e in events if e.get("event") == "exit"), None)
  code = exit_.get("code") if exit_ else None
  cpu = exit_.get("cpu_s") if exit_ else None
  stdout, stderr = out.text(), err.text()
  if timed_out:
    status_, reason = "timeout", f"wall time limit of {limits.timeout_s:g} s"
  elif exit_ is not None and exit_.get("alarm") and code == -signal.SIGKILL:
    status_, reason = "timeout", (f"wall time limit of {limits.timeout_s:g} s (the launcher's "
                                  "own alarm: the evaluator did not stop it in time)")
  elif setup is not None:
    status_, reason = "error", f"sandbox setup failed: {setup.get('message')}"
  elif exit_ is None:
    status_, reason = "error", f"sandbox ended without a result (launcher exit {launcher_code})"
  elif code == -signal.SIGXCPU or (code == -signal.SIGKILL and cpu is not None
                                   and cpu >= math.ceil(limits.cpu_s) - 0.05):
    status_, reason = "timeout", f"CPU time limit of {math.ceil(limits.cpu_s)} s"
  elif code == 0:
    if sentinel is not None and sentinel not in stdout.splitlines():
      status_, reason = "failed", "exited 0 without printing the sentinel (tests did not finish)"
    else:
      status_, reason = "passed", "exit 0"
  elif code < 0:
    status_, reason = "failed", f"killed by {signal.Signals(-code).name}"
  else:
    status_, reason = "failed", f"exit code {code}"
  return ExecResult(status_, status_ == "passed", code, stdout, stderr, reason,
                    time.monotonic() - start, cpu, level)


# ---------------------------------------------------------------------------------------------
# Levels


def default_python() -> str:
  """The interpreter programs run with: the real file behind this process's base interpreter
  (a venv's `python` is a link to it). Programs need only the standard library, so the venv (and
  the checkout) need not be reachable from inside the sandbox; the base interpreter's own folders
  are exposed to the run wherever they live (sandbox_procs.exposed)."""
  return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _available(level: str, python: str) -> str:
  """'' if `level` can be tried here, else why not."""
  root = os.geteuid() == 0
  if level in ("namespaces", "uid") and not root:
    return "needs root"
  if level == "userns" and root:
    return ("not used as root: it would map the program to the real root (capabilities "
            "dropped); root gets 'namespaces' or 'uid' instead")
  if level in ("namespaces", "userns") and shutil.which("unshare") is None:
    return "util-linux `unshare` is not on PATH"
  if level == "uid" and not procs.uid_pool_mapped():
    return f"uids {procs.UID_BASE}+{procs.UID_POOL} are not mapped in this user namespace"
  try:
    if level == "uid" and procs.exposed(python, "uid"):
      return (f"the interpreter {python} is under a directory other uids cannot enter "
              f"({', '.join(procs.exposed(python, 'uid'))}) and this level has no mount "
              "namespace to expose it in; pass python= an interpreter outside it")
    if level in ("namespaces", "uid") and procs.unreadable(python):
      return (f"the per-run uid cannot read the interpreter: {', '.join(procs.unreadable(python))}"
              "; make them readable by others (chmod o+rX) or pass python= another interpreter")
    if level in ("namespaces", "userns"):
      procs.exposed(python, level)
  except (OSError, RuntimeError, subprocess.SubprocessError) as e:
    return str(e)
  return ""


@functools.lru_cache(maxsize=None)
def _probe(level: str, python: str) -> str:
  """'' if a trivial program passes at this level, else what went wrong. The limits are generous
  (a loaded machine must not make a working level look broken); a broken one fails fast."""
  why = _available(level, python)
  if why:
    return why
  limits = _Limits(120.0, 1024, 30.0, 16, 16, 4096)
  result = _run("print('sandbox ok')", level, limits, "sandbox ok", python)
  if result.passed:
    return ""
  return f"{result.reason}; stderr: {result.stderr.strip()[-300:]}"


_probe_lock = threading.Lock()
_logged: set[Isolation] = set()


class IsolationError(RuntimeError):
  """The sandbox cannot give the isolation that was asked for (a named or required level)."""


def _strength(level: str) -> int:
  """0 for the strongest level; larger is weaker."""
  return LEVELS.index(level)


def _check_level(level: str, what: str) -> str:
  if level not in LEVELS:
    raise ValueError(f"unknown sandbox level {level!r} for {what}; expected one of {LEVELS}"
                     + (" or 'auto'" if what == "isolation_level" else ""))
  return level


def isolation(level: str = "auto", *, python: Optional[str] = None,
              require: Optional[str] = None) -> Isolation:
  """The isolation programs get, and why.

  level: 'auto' (default; or `$PHI_JAX_SANDBOX` when set) picks the strongest level that runs a
  trivial program here (probed once per process and interpreter); a named level must work.
  require: the weakest level accepted (default `$PHI_JAX_SANDBOX_REQUIRE`, else any): 'auto'
  falling back below it raises instead of running programs with less isolation.
  Raises IsolationError saying why each stronger level does not work here.
  """
  python = python or default_python()
  requested = "isolation_level"
  if level == "auto" and os.environ.get("PHI_JAX_SANDBOX"):
    level, requested = os.environ["PHI_JAX_SANDBOX"], "$PHI_JAX_SANDBOX"
  if level != "auto":
    _check_level(level, "isolation_level")
  if require is None and os.environ.get("PHI_JAX_SANDBOX_REQUIRE"):
    require = os.environ["PHI_JAX_SANDBOX_REQUIRE"]
  if require is not None:
    _check_level(require, "require_isolation")
  with _probe_lock:
    chosen = _resolve(level, python, requested)
  if require is not None and _strength(chosen.level) > _strength(require):
    raise IsolationError(
        f"the sandbox gives level '{chosen.level}' here, weaker than the required "
        f"'{require}' ({chosen.reason}). Fix what stops the stronger levels (e.g. run as root "
        f"with util-linux `unshare`), or accept a weaker level with require_isolation= / "
        f"--require_isolation / $PHI_JAX_SANDBOX_REQUIRE.")
  return chosen


@functools.lru_cache(maxsize=None)
def _resolve(level: str, python: str, requested: str) -> Isolation:
  """isolation() without the requirement check; cached (callers hold _probe_lock)."""
  if level != "auto":
    why = _probe(level, python)
    if why:
      raise IsolationError(f"sandbox level '{level}' (named by {requested}) does not work here: "
                           f"{why}")
    return Isolation(level, _DESCRIPTIONS[level], f"named by {requested}={level!r}")
  reasons, degraded = [], False
  for candidate in LEVELS:
    why = _probe(candidate, python)
    if not why:
      reason = ("strongest level" if not reasons
                else "stronger levels unavailable: " + "; ".join(reasons))
      return Isolation(candidate, _DESCRIPTIONS[candidate], reason, bool(reasons), degraded)
    reasons.append(f"{candidate}: {why}")
    degraded = degraded or not _available(candidate, python)
  raise IsolationError("no sandbox level works here: " + "; ".join(reasons))


def log_isolation(iso: Isolation, *, once: bool = False) -> None:
  """Logs the level and why: WARNING when it fell back or is best effort, else INFO.
  once: only the first time this process sees `iso`."""
  if once and iso in _logged:
    return
  _logged.add(iso)
  weak = iso.degraded or iso.best_effort
  _log.log(logging.WARNING if weak else logging.INFO, "sandbox isolation: %s (%s)", iso.level,
           iso.reason)


def execute(program: str, *, timeout_s: float = 10.0, memory_mb: int = 1024,
            cpu_s: Optional[float] = None, max_processes: int = 16, file_mb: int = 16,
            output_bytes: int = 1 << 16, sentinel: Optional[str] = None,
            isolation_level: str = "auto", require_isolation: Optional[str] = None,
            python: Optional[str] = None) -> ExecResult:
  """Runs `program` (Python source) in the sandbox and reports how it ended.

  timeout_s: wall-clock limit; cpu_s: CPU-time limit (default: timeout_s, rounded up).
  memory_mb: address-space limit per process (so at most max_processes x memory_mb in all).
  max_processes: processes + threads of the run. file_mb: largest file (and at the namespace
  levels the private /tmp's size). output_bytes: kept per stream.
  sentinel: if given, 'passed' also requires this exact line on stdout, which proves the program
  reached its end (a harness prints it after its checks; see humaneval.py).
  isolation_level / require_isolation: as `isolation(level, require=)`; the chosen level and why
  are logged the first time this process uses it (`execute_many` logs them on every call).
  python: the interpreter programs run with (default: `default_python()`).
  Never raises for anything the program does; sandbox failures come back as status 'error'.
  Raises IsolationError if the named or required isolation is not available here.
  """
  if timeout_s <= 0 or memory_mb <= 0 or max_processes <= 0 or file_mb <= 0:
    raise ValueError("timeout_s, memory_mb, max_processes and file_mb must be positive")
  python = python or default_python()
  iso = isolation(isolation_level, python=python, require=require_isolation)
  log_isolation(iso, once=True)
  level = iso.level
  limits = _Limits(float(timeout_s), int(memory_mb), float(cpu_s or timeout_s), int(max_processes),
                   int(file_mb), int(output_bytes))
  return _run(program, level, limits, sentinel, python)


def execute_many(programs: Sequence[str], *, workers: Optional[int] = None,
                 sentinels: Optional[Sequence[Optional[str]]] = None, progress: bool = False,
                 **kwargs) -> list[ExecResult]:
  """`execute` over many programs on `workers` threads (default: CPU count), in input order.

  sentinels: one per program (or None). kwargs go to `execute`. Logs the isolation level and why
  (once per call); each result's `.isolation` names its level.
  """
  if sentinels is not None and len(sentinels) != len(programs):
    raise ValueError(f"{len(sentinels)} sentinels for {len(programs)} programs")
  sentinels = sentinels if sentinels is not None else [None] * len(programs)
  log_isolation(isolation(kwargs.get("isolation_level", "auto"), python=kwargs.get("python"),
                          require=kwargs.get("require_isolation")))  # probes once per process
  workers = max(1, workers or os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    futures = [pool.submit(execute, p, sentinel=s, **kwargs) for p, s in zip(programs, sentinels)]
    if progress:
      import tqdm
      for _ in tqdm.tqdm(concurrent.futures.as_completed(futures), total=len(futures),
                         desc="executing", unit="program"):
        pass
    return [f.result() for f in futures]
