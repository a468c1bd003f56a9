"""The distributed engine under the sharded pipeline: datatrove's executors (local, Slurm, Ray).

    engine = Engine(workers=2)                               # datatrove LocalPipelineExecutor
    engine.map('dedup.signatures', functools.partial(task, job=job), num_tasks=32,
               logging_dir=stage_dir / '_tasks' / 'signatures')

`map` runs `fn(rank)` for every rank in [0, num_tasks) on the executor and returns when all are
done. Each finished rank leaves datatrove's completion file (`logging_dir/completions/NNNNN`), so
a rerun after a crash or a kill skips the finished ranks and redoes only the others: one rank is
one shard, so a killed worker redoes its shard. `fn` must be picklable (a module-level function
or a `functools.partial` of one); it writes its own output files (atomically, `shards.py`) and
returns nothing.

Executors (`executor=`; see docs/DATA_AT_SCALE.md for the cluster runbook):
  'local'   `LocalPipelineExecutor`: `workers` processes on this machine (workers=1: in-process).
  'slurm'   `SlurmPipelineExecutor`: one Slurm array job per step, `options` are its keyword
            arguments (partition, time, cpus_per_task, mem_per_cpu_gb, venv_path, sbatch_args);
            `map` waits until the job's ranks are complete. The workdir must be on a shared
            filesystem.
  'ray'     `RayPipelineExecutor` on the Ray cluster `ray.init()` connects to (RAY_ADDRESS);
            `options`: cpus_per_task, mem_per_cpu_gb, ... The workdir must be shared.
Why datatrove (measured against Apache Beam and Ray Data): BENCHMARKS.md, docs/DATA_AT_SCALE.md.

`PeakMemory` samples the resident memory of this process and all its descendants (the workers),
for the scale test's "peak memory of the whole run".
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import threading
import time
from typing import Any, Callable, Iterator, Optional

EXECUTORS = ("local", "slurm", "ray")


class _RankTask:
  """A datatrove pipeline step (a callable `(data, rank, world_size)`) that runs `fn(rank)`."""

  def __init__(self, name: str, fn: Callable[[int], Any]):
    self.name = name
    self.fn = fn

  def __repr__(self) -> str:
    return f"phi_jax:{self.name}"

  def __call__(self, data: Any = None, rank: int = 0, world_size: int = 1) -> None:
    del data, world_size
    self.fn(rank)


def _datatrove():
  try:
    from datatrove.executor import local  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError("The sharded pipeline (config.workers >= 1) runs on datatrove: install it "
                      "with `pip install -e '.[scale]'` (or set workers=0 for the in-memory "
                      f"path): {e}") from None
  return local


@dataclasses.dataclass
class Engine:
  """Where the sharded stages' tasks run.

  Attributes:
    workers: processes running tasks at once (local executor); 1 runs them in this process.
    executor: 'local', 'slurm' or 'ray' (module docstring).
    options: keyword arguments of the Slurm / Ray executor.
    poll_s: how often `map` checks a Slurm job's completions.
    quiet: keep datatrove's per-task log lines out of stderr (they stay in logging_dir/logs/).
  """

  workers: int = 1
  executor: str = "local"
  options: dict[str, Any] = dataclasses.field(default_factory=dict)
  poll_s: float = 30.0
  quiet: bool = True

  def __post_init__(self):
    if self.executor not in EXECUTORS:
      raise ValueError(f"executor must be one of {EXECUTORS}, got {self.executor!r}")
    if self.workers < 1:
      raise ValueError(f"workers must be >= 1 for the sharded pipeline, got {self.workers}")

  def map(self, name: str, fn: Callable[[int], Any], num_tasks: int,
          logging_dir: str | os.PathLike) -> None:
    """Runs fn(rank) for rank in range(num_tasks); finished ranks of an earlier run are skipped."""
    if num_tasks < 1:
      return
    local = _datatrove()
    logging_dir = str(pathlib.Path(logging_dir).absolute())
    pipeline = [_RankTask(name, fn)]
    if self.quiet:
      os.environ.setdefault("DATATROVE_COLORIZE_LOGS", "0")
    if self.executor == "local":
      # A pool of one process for one task would only add a process: run it here.
      workers = min(self.workers, num_tasks)
      executor = local.LocalPipelineExecutor(pipeline=pipeline, tasks=num_tasks, workers=workers,
                                             logging_dir=logging_dir)
      with _quiet_loguru(self.quiet), _no_fork():
        executor.run()
    elif self.executor == "slurm":
      from datatrove.executor import slurm  # pylint: disable=g-import-not-at-top
      options = dict(self.options)
      options.setdefault("job_name", name.replace(".", "_"))
      executor = slurm.SlurmPipelineExecutor(pipeline=pipeline, tasks=num_tasks,
                                             logging_dir=logging_dir, **options)
      executor.run()  # submits; the next step needs this one's files, so wait for them
      while executor.get_incomplete_ranks(skip_completed=True):
        time.sleep(self.poll_s)
    else:
      from datatrove.executor import ray as ray_executor  # pylint: disable=g-import-not-at-top
      executor = ray_executor.RayPipelineExecutor(pipeline=pipeline, tasks=num_tasks,
                                                  workers=self.workers, logging_dir=logging_dir,
                                                  **dict(self.options))
      executor.run()
    missing = executor.get_incomplete_ranks(skip_completed=True)
    if missing:
      raise RuntimeError(f"{name}: ranks {missing[:10]} did not complete; see "
                         f"{logging_dir}/logs/ and rerun (finished ranks are kept)")


@contextlib.contextmanager
def _no_fork() -> Iterator[None]:
  """Makes `multiprocess`'s default start method forkserver while inside.

  LocalPipelineExecutor starts its worker pool with forkserver, but its `multiprocess.Manager()`
  (the rank queue) takes the library's default context, which forks this process on Linux. With
  JAX imported here (its threads running), a fork can deadlock the child, and JAX warns about it.
  """
  import multiprocess  # pylint: disable=g-import-not-at-top
  previous = multiprocess.get_start_method(allow_none=True)
  multiprocess.set_start_method("forkserver", force=True)
  try:
    yield
  finally:
    multiprocess.set_start_method(previous, force=True)


class _quiet_loguru:
  """Silences datatrove's driver-side INFO lines (launching, skipping, stats) while inside."""

  def __init__(self, quiet: bool):
    self.quiet = quiet
    self.handler: Optional[int] = None

  def __enter__(self):
    if self.quiet:
      from loguru import logger  # pylint: disable=g-import-not-at-top
      import sys  # pylint: disable=g-import-not-at-top
      logger.remove()
      self.handler = logger.add(sys.stderr, level="ERROR")
    return self

  def __exit__(self, *exc):
    return False


class PeakMemory:
  """Samples the summed RSS (and CPU time) of this process and its descendants every `interval_s`
  in a thread.

  RSS counts pages shared between processes (forked copy-on-write pages, shared libraries) once
  per process, so the sum is an upper bound of the memory the run really used.
  """

  def __init__(self, interval_s: float = 0.2):
    import psutil  # pylint: disable=g-import-not-at-top
    self._psutil = psutil
    self.interval_s = interval_s
    self.peak_bytes = 0
    self.peak_processes = 0
    self._cpu: dict[int, float] = {}
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)

  def sample(self) -> int:
    me = self._psutil.Process()
    total, procs = 0, [me]
    try:
      procs += me.children(recursive=True)
    except self._psutil.Error:
      pass
    count = 0
    for p in procs:
      try:
        total += p.memory_info().rss
        cpu = p.cpu_times()
        self._cpu[p.pid] = max(self._cpu.get(p.pid, 0.0), cpu.user + cpu.system)
        count += 1
      except self._psutil.Error:
        pass
    if total > self.peak_bytes:
      self.peak_bytes, self.peak_processes = total, count
    return total

  @property
  def cpu_seconds(self) -> float:
    """User + system CPU seconds of the sampled processes (each one's last sample)."""
    return sum(self._cpu.values())

  def _loop(self) -> None:
    while not self._stop.wait(self.interval_s):
      self.sample()

  def __enter__(self) -> "PeakMemory":
    self.sample()
    self._thread.start()
    return self

  def __exit__(self, *exc) -> bool:
    self._stop.set()
    self._thread.join()
    self.sample()
    return False
