"""Pinning processes to CPUs: concurrent runs on a small machine each get a core of their own.

A small model's train step does not keep two cores busy (XLA:CPU's GEMMs of a few hundred
columns split poorly across threads), so on a 2-core machine two runs pinned to one core each do
more work than the same runs one after another on both, and far more than two unpinned runs that
contend for both cores (measured 2026-12-02 on the 2-core machine: a d160 model trained at 31-34
GFLOP/s pinned, against ~20 GFLOP/s each for two unpinned runs). Used by
`phi_jax.sweep --parallel` and by a study's `study.parallel` (`phi_jax.study.arms`).
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

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
  os.environ.update(one_thread_env({k: v for k, v in os.environ.items()}))


def preexec(cpu: int):
  """A subprocess.Popen `preexec_fn` that pins the child to `cpu` (pair with one_thread_env)."""
  def fn() -> None:
    os.sched_setaffinity(0, {cpu})
  return fn
