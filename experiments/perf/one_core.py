"""Pin this process to one CPU core, before numpy, torch or jax are imported.

Threads inherit the affinity mask, so every library then runs on that core. Also asks the BLAS
libraries and XLA:CPU for one thread (`--xla_cpu_multi_thread_eigen=false`; in jax 0.10
`intra_op_parallelism_threads` is not an XLA flag). Returns the core.
"""

import os
from typing import Optional


def pin(cpu: Optional[int] = None) -> int:
  allowed = sorted(os.sched_getaffinity(0))
  cpu = allowed[-1] if cpu is None else cpu
  os.sched_setaffinity(0, {cpu})
  for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = "1"
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_multi_thread_eigen" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
  return cpu
