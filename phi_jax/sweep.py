"""Run a config's hyperparameter sweep: one `python -m phi_jax.main` subprocess per run.

    python -m phi_jax.sweep --config=configs/phi1.py:tiny --workdir=workdirs/lr_sweep \\
        [--parallel=2] [--metrics=loss,eval_loss] [--config.total_steps=40 ...] [--dry_run]

The config module defines the runs next to the config they vary (big_vision style):

    def sweep(arg):              # or sweep(); arg is the text after ':' in --config
      return [{'optimizer.learning_rate': lr} for lr in (3e-4, 1e-3, 3e-3)]

Each run is a dict of dotted overrides; it gets its own workdir DIR/<slug> (e.g.
DIR/learning_rate=0.001) and runs main with `--config.KEY=VALUE` flags, so a crash in one run does
not take down the sweep (its output is in DIR/<slug>/sweep_run.log). `--config.KEY=VALUE` flags given
to the sweep apply to every run. Up to --parallel runs at a time. Every run's config is parsed from
its flags (phi_jax.config_args, the parser main uses) before anything starts. Runs share one
prepared dataset, DIR/data, unless the config sets data.data_dir (prepared once, here, before any
run starts).

Rerunning the same command continues the sweep: a finished run (summary.json with stopped_by null and
step == total_steps) is skipped, an unfinished one resumes from its newest checkpoint (main resumes
by itself). Ctrl-C / SIGTERM forward SIGTERM to the running runs, which checkpoint and stop.

At the end DIR holds sweep.csv and sweep.md (one row per run: overrides, final loss, eval loss,
steps, status) and sweep.png (each --metrics against step, one line per run, from metrics.jsonl).

A study config (one with `arms`, e.g. configs/quickstart.py, whose sweep() is over seeds) sweeps
whole studies: DIR/<slug> is a study directory, finished when its results.json exists and every
arm reached total_steps, and the table's `study` column gives each arm's pass@1 per measured set
(experiments/tinycoder/report.py aggregates such a sweep across seeds).
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import inspect
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Mapping, Optional, Sequence

import ml_collections

from phi_jax.config_args import load_config, override_flags, parse_overrides  # noqa: F401

_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]+")


# ---- configs and overrides ---------------------------------------------------------------------

def load_module(path: str | os.PathLike) -> Any:
  """Imports a config file (configs/FILE.py) as a module (for its `sweep()`)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise ValueError(f"config file {str(path)!r} does not exist")
  spec = importlib.util.spec_from_file_location(f"_phi_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"{path} defines no get_config(arg)")
  return module


def split_spec(spec: str) -> tuple[str, str]:
  """'configs/phi1.py:size=350m' -> ('configs/phi1.py', 'size=350m')."""
  path, _, arg = spec.partition(":")
  return path, arg


# ---- runs --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Run:
  overrides: dict[str, Any]
  slug: str
  workdir: pathlib.Path
  total_steps: int
  config: Optional[ml_collections.ConfigDict] = None  # with every override applied
  command: list[str] = dataclasses.field(default_factory=list)  # the main subprocess
  status: str = "pending"
  seconds: float = 0.0


def _fmt(value: Any) -> str:
  return f"{value:g}" if isinstance(value, float) else str(value)


def slugs(runs: Sequence[Mapping[str, Any]]) -> list[str]:
  """Directory names: 'learning_rate=0.001,num_layers=2' (leaf names unless two keys share one)."""
  keys = {k for run in runs for k in run}
  leaves = [k.split(".")[-1] for k in keys]
  short = {k: k.split(".")[-1] if leaves.count(k.split(".")[-1]) == 1 else k for k in keys}
  out = []
  for run in runs:
    text = ",".join(f"{short[k]}={_fmt(v)}" for k, v in run.items()) or "base"
    out.append(_UNSAFE.sub("_", text)[:200])
  if len(set(out)) != len(out):
    dupes = sorted({s for s in out if out.count(s) > 1})
    raise ValueError(f"the sweep has duplicate runs {dupes}; make each dict of overrides distinct")
  return out


def read_summary(workdir: pathlib.Path) -> Optional[dict[str, Any]]:
  try:
    return json.loads((workdir / "summary.json").read_text())
  except (OSError, ValueError):
    return None


def read_study(workdir: pathlib.Path) -> Optional[dict[str, Any]]:
  """A study run's results.json (phi_jax.study.report), or None."""
  try:
    return json.loads((workdir / "results.json").read_text())
  except (OSError, ValueError):
    return None


def is_finished(workdir: pathlib.Path, total_steps: int) -> bool:
  """summary.json says the run reached total_steps and was not stopped by a signal; a study
  (a config with arms): its results.json exists and every arm's summary.json says so."""
  study = read_study(workdir)
  if study is not None:
    return all(is_finished(workdir / arm, total_steps) for arm in study["arms"])
  summary = read_summary(workdir)
  return bool(summary) and summary.get("stopped_by") is None and summary.get("step") == total_steps


def read_metrics(workdir: pathlib.Path) -> list[dict[str, Any]]:
  """metrics.jsonl, the last record per (step, kind) kept (a resumed run re-logs some steps)."""
  path = workdir / "metrics.jsonl"
  if not path.exists():
    return []
  records: dict[tuple[int, tuple[str, ...]], dict[str, Any]] = {}
  for line in path.read_text().splitlines():
    try:
      record = json.loads(line)
    except ValueError:
      continue  # a line cut by a kill
    records[(record.get("step", 0), tuple(sorted(record)))] = record
  return sorted(records.values(), key=lambda r: r.get("step", 0))


def _last(records: list[dict[str, Any]], key: str) -> Optional[float]:
  values = [r[key] for r in records if key in r]
  return values[-1] if values else None


def _study_cell(study: dict[str, Any]) -> str:
  """'arm: pass@1 per measured set; ...' of a study's results.json."""
  parts = []
  for arm in study["arms"]:
    sets = study["results"][arm]["sets"]
    parts.append(f"{arm}: " + ", ".join(f"{name} {100 * r['pass@1']:.1f}%"
                                         for name, r in sets.items()))
  return "; ".join(parts)


def result_row(run: Run) -> dict[str, Any]:
  """One table row: run, overrides, final_loss, eval_loss, step, total_steps, status, study
  (a study's pass@1 per arm and set; its losses are per arm, in its own report)."""
  study = read_study(run.workdir)
  if study is not None:
    steps = [s.get("step", 0) for s in study["summaries"].values()]
    return {"run": run.slug,
            "overrides": ";".join(f"{k}={_fmt(v)}" for k, v in run.overrides.items()),
            "final_loss": None, "eval_loss": None, "step": min(steps, default=0),
            "total_steps": run.total_steps, "status": run.status, "study": _study_cell(study)}
  summary = read_summary(run.workdir) or {}
  records = read_metrics(run.workdir)
  steps = [r["step"] for r in records if "step" in r]
  final, evals = summary.get("final_loss"), summary.get("eval_loss")
  return {"run": run.slug,
          "overrides": ";".join(f"{k}={_fmt(v)}" for k, v in run.overrides.items()),
          "final_loss": _last(records, "loss") if final is None else final,
          "eval_loss": _last(records, "eval_loss") if evals is None else evals,
          "step": summary.get("step", max(steps, default=0)), "total_steps": run.total_steps,
          "status": run.status, "study": None}


def write_table(rows: list[dict[str, Any]],
                directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
  """sweep.csv and sweep.md in `directory`."""
  fields = ["run", "overrides", "final_loss", "eval_loss", "step", "total_steps", "status"]
  if any(row.get("study") for row in rows):
    fields.append("study")
  csv_path, md_path = directory / "sweep.csv", directory / "sweep.md"
  with open(csv_path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)

  def cell(v: Any) -> str:
    return "" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

  lines = ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
  lines += ["| " + " | ".join(cell(row[f]) for f in fields) + " |" for row in rows]
  md_path.write_text("\n".join(lines) + "\n")
  return csv_path, md_path


def plot(runs: Sequence[Run], metrics: Sequence[str], path: pathlib.Path) -> Optional[pathlib.Path]:
  """Each metric against step, one line per run (one panel per metric); None if nothing to plot."""
  curves = {m: [] for m in metrics}
  for run in runs:
    records = read_metrics(run.workdir)
    for m in metrics:
      points = [(r["step"], r[m]) for r in records if isinstance(r.get(m), (int, float))]
      if points:
        curves[m].append((run.slug, points))
  if not any(curves.values()):
    return None
  from phi_jax.train.report import new_figure, save_figure  # pylint: disable=g-import-not-at-top
  fig = new_figure((6 * len(metrics), 4))
  axes = fig.subplots(1, len(metrics), squeeze=False)
  for ax, m in zip(axes[0], metrics):
    for label, points in curves[m]:
      ax.plot(*zip(*points), "o-" if len(points) < 4 else "-", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(m)
    ax.grid(alpha=0.3)
    if curves[m]:
      ax.legend(fontsize=8)
  save_figure(fig, path)
  return path


def _prepare_data(configs: Sequence[ml_collections.ConfigDict]) -> None:
  """Builds each distinct dataset once, before parallel runs would race to build it (a study's:
  those of its arms without a mixture; a mixture is made in each study's own DIR/data)."""
  from absl import logging as absl_logging
  import tensorflow_datasets as tfds
  from phi_jax.data import builders  # heavy imports only when something runs
  from phi_jax.train import inputs
  absl_logging.set_verbosity(absl_logging.ERROR)  # as main does: no TFDS config chatter
  tfds.disable_progress_bar()
  from phi_jax.study import arms  # pylint: disable=g-import-not-at-top
  expanded = []
  for config in configs:
    if config.get("arms"):
      expanded += [arms.arm_config(config, name, "", {}) for name in arms.check(config)
                   if "mixture" not in config.arms[name]]
    else:
      expanded.append(config)
  done = set()
  for config in expanded:
    kwargs = inputs._builder_kwargs(config.data)  # pylint: disable=protected-access
    key = (config.data.dataset, config.data.data_dir, tuple(sorted(kwargs.items())))
    if key not in done:
      done.add(key)
      print(f"[sweep] preparing {config.data.dataset} in {config.data.data_dir}", flush=True)
      builders.build(config.data.dataset, config.data.data_dir, **kwargs)


def _raise_interrupt(signum, frame):  # pylint: disable=unused-argument
  raise KeyboardInterrupt


def plan_sweep(spec: str, workdir: str | os.PathLike, *,
               runs: Optional[list[dict[str, Any]]] = None,
               overrides: Sequence[str] | Mapping[str, Any] = ()) -> list[Run]:
  """The runs of a sweep, each with its checked config and main command; nothing is started.

  Args mean what they do in `run_sweep`.
  """
  path, arg = split_spec(spec)
  path = str(pathlib.Path(path).absolute())
  spec = f"{path}:{arg}" if arg else path
  workdir = pathlib.Path(workdir).absolute()
  common = dict(overrides if isinstance(overrides, Mapping) else parse_overrides(overrides))
  if runs is None:
    module = load_module(path)
    if not hasattr(module, "sweep"):
      raise ValueError(f"{path} defines no sweep(); add `def sweep(arg): return [{{'optimizer."
                       "learning_rate': 1e-3}, ...]` or pass runs=")
    takes_arg = bool(inspect.signature(module.sweep).parameters)
    runs = list(module.sweep(arg) if takes_arg else module.sweep())
  if not runs:
    raise ValueError(f"the sweep of {spec} has no runs")
  if not load_config(spec, common).data.data_dir:  # one prepared dataset for all runs
    common["data.data_dir"] = str(workdir / "data")
  planned = []
  for run_overrides, slug in zip(runs, slugs(runs)):
    merged = {**common, **run_overrides}
    # Every run's config is parsed, before anything starts, from the very flags main will get.
    config = load_config(spec, merged)
    command = [sys.executable, "-m", "phi_jax.main", f"--config={spec}",
               f"--workdir={workdir / slug}", *override_flags(merged)]
    planned.append(Run(dict(run_overrides), slug, workdir / slug, int(config.total_steps),
                       config=config, command=command))
  return planned


def _finish(run: Run, returncode: int) -> None:
  """Sets the status of a run whose process ended, and prints a line about it."""
  if returncode:
    run.status = f"failed (exit {returncode})"
  elif is_finished(run.workdir, run.total_steps):
    run.status = "done"
  else:
    run.status = f"stopped ({(read_summary(run.workdir) or {}).get('stopped_by') or 'unfinished'})"
  row = result_row(run)
  num = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
  measured = (f"pass@1 {row['study']}" if row["study"] else
              f"loss {num(row['final_loss'])}, eval loss {num(row['eval_loss'])}")
  print(f"[sweep] {run.slug}: {run.status} after {run.seconds:.0f} s, step {row['step']}, "
        f"{measured}", flush=True)


def run_sweep(spec: str, workdir: str | os.PathLike, *, runs: Optional[list[dict[str, Any]]] = None,
              overrides: Sequence[str] | Mapping[str, Any] = (), parallel: int = 1,
              metrics: Sequence[str] = ("loss", "eval_loss"),
              env: Optional[Mapping[str, str]] = None,
              dry_run: bool = False, poll_seconds: float = 0.5) -> list[dict[str, Any]]:
  """Runs (or continues) the sweep; returns the table rows. See the module docstring.

  Args:
    spec: 'configs/FILE.py[:ARG]'.
    workdir: the sweep's directory; run i goes to workdir/<slug i>.
    runs: dicts of dotted overrides; default: the config module's `sweep(arg)` (or `sweep()`).
    overrides: applied to every run ('KEY=VALUE' strings or a dict).
    parallel: runs at a time.
    metrics: metrics.jsonl keys to plot.
    env: environment of the runs (default: this process's).
    dry_run: print the commands of the runs still to do without starting them.
  """
  if parallel < 1:
    raise ValueError(f"parallel must be >= 1, got {parallel}")
  workdir = pathlib.Path(workdir).absolute()
  planned = plan_sweep(spec, workdir, runs=runs, overrides=overrides)
  todo = []
  for run in planned:
    if is_finished(run.workdir, run.total_steps):
      run.status = "done (skipped)"
      print(f"[sweep] {run.slug}: finished earlier, skipped", flush=True)
    else:
      todo.append(run)
  if dry_run:
    print("\n".join(" ".join(run.command) for run in todo))
    return [result_row(run) for run in planned]
  workdir.mkdir(parents=True, exist_ok=True)
  if todo:
    _prepare_data([run.config for run in todo])

  env = dict(os.environ if env is None else env)
  active: dict[str, tuple[Run, subprocess.Popen, Any, float]] = {}
  queue = list(todo)
  previous = None
  if threading.current_thread() is threading.main_thread():  # SIGTERM -> the Ctrl-C path below
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
  try:
    while queue or active:
      while queue and len(active) < parallel:
        run = queue.pop(0)
        run.workdir.mkdir(parents=True, exist_ok=True)
        log = open(run.workdir / "sweep_run.log", "a")
        print(f"[sweep] start {run.slug} ({len(todo) - len(queue)}/{len(todo)}): log in "
              f"{run.workdir / 'sweep_run.log'}", flush=True)
        proc = subprocess.Popen(run.command, stdout=log, stderr=subprocess.STDOUT, env=env)
        active[run.slug] = (run, proc, log, time.perf_counter())
      time.sleep(poll_seconds)
      for slug, (run, proc, log, start) in list(active.items()):
        if proc.poll() is not None:
          log.close()
          del active[slug]
          run.seconds = time.perf_counter() - start
          _finish(run, proc.returncode)
  except KeyboardInterrupt:
    print(f"[sweep] interrupted: stopping {len(active)} run(s) at their next step (they "
          "checkpoint); rerun the same command to continue", flush=True)
    for run, proc, log, _ in active.values():
      if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    for run, proc, log, _ in active.values():
      proc.wait()
      log.close()
      run.status = "interrupted"
    raise
  finally:
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
    rows = [result_row(run) for run in planned]
    csv_path, md_path = write_table(rows, workdir)
    png = plot(planned, list(metrics), workdir / "sweep.png")
    print(f"[sweep] table: {md_path} and {csv_path}" + (f"; plot: {png}" if png else ""),
          flush=True)
  return rows


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The CLI; see the module docstring. Returns the exit status (1 if any run failed)."""
  import argparse
  parser = argparse.ArgumentParser(prog="python -m phi_jax.sweep",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", required=True, help="configs/FILE.py[:ARG] defining sweep()")
  parser.add_argument("--workdir", required=True, help="the sweep's directory")
  parser.add_argument("--parallel", type=int, default=1, help="runs at a time (default 1)")
  parser.add_argument("--metrics", default="loss,eval_loss", help="metrics to plot (a,b,...)")
  parser.add_argument("--dry_run", action="store_true", help="print the run commands and exit")
  args, extra = parser.parse_known_args(argv)
  bad = [o for o in extra if not o.startswith("--config.")]
  if bad:
    parser.error(f"unrecognised arguments {bad}; fields for every run are --config.KEY=VALUE")
  try:
    rows = run_sweep(args.config, args.workdir, overrides=[o[len("--config."):] for o in extra],
                     parallel=args.parallel, metrics=[m for m in args.metrics.split(",") if m],
                     dry_run=args.dry_run)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except KeyboardInterrupt:
    return 130
  if not args.dry_run:
    print((pathlib.Path(args.workdir) / "sweep.md").read_text())
  return 1 if any(r["status"].startswith("failed") for r in rows) else 0


if __name__ == "__main__":
  sys.exit(main())
