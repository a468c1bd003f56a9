"""Running processes side by side, each pinned to a CPU of its own with one BLAS / XLA thread.

`run_pool` runs commands that way; it is the process pool of `phi_jax.sweep --parallel` and of a
study's `study.parallel` (`phi_jax.study.arms`). Unpinned, two concurrent JAX processes each size
their thread pools to every core and contend for them. Two pinned one-thread arms of the
quickstart train 1.2x faster than the same arms one after another on both cores
(experiments/perf/study_arms.py; BENCHMARKS.md).
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import threading
import time
from typing import Callable, Mapping, Optional, Sequence

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def available() -> list[int]:
  """The CPUs this process may run on, in order."""
  if hasattr(os, "sched_getaffinity"):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


def slots(parallel: int) -> list[int]:
  """One CPU per concurrent process when there are at least `parallel` of them (and the OS can
  pin); otherwise [] (run unpinned)."""
  cpus = available()
  if parallel < 2 or len(cpus) < parallel or not hasattr(os, "sched_setaffinity"):
    return []
  return cpus[:parallel]


def one_thread_env(env: Optional[Mapping[str, str]] = None) -> dict[str, str]:
  """`env` (default: this process's) asking BLAS and XLA:CPU for one thread each."""
  out = dict(os.environ if env is None else env, **ONE_THREAD)
  flags = out.get("XLA_FLAGS", "")
  if "xla_cpu_multi_thread_eigen" not in flags:
    out["XLA_FLAGS"] = (flags + " " + XLA_ONE_THREAD).strip()
  return out


def pin(cpu: int) -> None:
  """Runs this process (and the threads it starts later) on CPU `cpu`, one BLAS / XLA thread;
  call before numpy or jax are imported. A no-op where affinity is not supported."""
  if not hasattr(os, "sched_setaffinity"):
    return
  os.sched_setaffinity(0, {cpu})
  os.environ.update(one_thread_env())


def preexec(cpu: int):
  """A subprocess.Popen `preexec_fn` that pins the child to `cpu` (pair with one_thread_env)."""
  def fn() -> None:
    os.sched_setaffinity(0, {cpu})
  return fn


class Stopped(KeyboardInterrupt):
  """Ctrl-C or SIGTERM reached `run_pool`; every running child was sent SIGTERM and waited for.
  `keys`: the jobs that were running."""

  def __init__(self, keys: list[str]):
    super().__init__(f"stopped: {', '.join(keys)}")
    self.keys = keys


def _interrupt(signum, frame):  # pylint: disable=unused-argument
  raise KeyboardInterrupt


def run_pool(jobs: Sequence[tuple[str, Sequence[str], pathlib.Path]], parallel: int, *,
             env: Optional[Mapping[str, str]] = None,
             on_start: Callable[[str, Optional[int]], None] = lambda key, cpu: None,
             on_finish: Callable[[str, int, float], None] = lambda key, code, seconds: None,
             on_stop: Callable[[int], None] = lambda running: None,
             poll_seconds: float = 0.5) -> None:
  """Runs each job (key, command, log file) as a subprocess, up to `parallel` at a time, in order;
  each pinned to a CPU of its own with one BLAS / XLA thread when `slots(parallel)` gives them.
  Output is appended to the job's log. on_start(key, cpu or None) before a job starts;
  on_finish(key, exit code, seconds) when it ends. Ctrl-C or SIGTERM (while this runs in the
  main thread): on_stop(number running), SIGTERM to every running child, wait for them, raise
  Stopped."""
  env = dict(os.environ if env is None else env)
  free = slots(parallel)
  pinned_env = one_thread_env(env) if free else env
  queue = list(jobs)
  active: dict[str, tuple[subprocess.Popen, object, float, Optional[int]]] = {}
  previous = None
  if threading.current_thread() is threading.main_thread():
    previous = signal.signal(signal.SIGTERM, _interrupt)
  try:
    while queue or active:
      while queue and len(active) < parallel:
        key, command, log_path = queue.pop(0)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        cpu = free.pop(0) if free else None
        on_start(key, cpu)
        log = open(log_path, "a")
        proc = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT,
                                env=env if cpu is None else pinned_env,
                                preexec_fn=None if cpu is None else preexec(cpu))
        active[key] = (proc, log, time.perf_counter(), cpu)
      time.sleep(poll_seconds)
      for key, (proc, log, start, cpu) in list(active.items()):
        if proc.poll() is None:
          continue
        log.close()
        del active[key]
        if cpu is not None:
          free.append(cpu)
        on_finish(key, proc.returncode, time.perf_counter() - start)
  except KeyboardInterrupt:
    on_stop(len(active))
    for proc, _, _, _ in active.values():
      if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    for proc, log, _, _ in active.values():
      proc.wait()
      log.close()
    raise Stopped(list(active)) from None
  finally:
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
