"""Run a config's hyperparameter sweep: one `python -m phi_jax.main` subprocess per run.

    python -m phi_jax.sweep --config=configs/phi1.py:tiny --workdir=workdirs/lr_sweep \\
        [--parallel=2] [--metrics=loss,eval_loss] [--config.total_steps=40 ...] [--dry_run]
        [--fit=eval_loss --fit_by=mixture --fit_points=evals]

The config module defines the runs next to the config they vary (big_vision style):

    def sweep(arg):              # or sweep(); arg is the text after ':' in --config
      return [{'optimizer.learning_rate': lr} for lr in (3e-4, 1e-3, 3e-3)]

Each run is a dict of dotted overrides; it gets its own workdir DIR/<slug> (e.g.
DIR/learning_rate=0.001) and runs main with `--config.KEY=VALUE` flags, so a crash in one run
does not take down the sweep (its output is in DIR/<slug>/sweep_run.log). `--config.KEY=VALUE`
flags given to the sweep apply to every run. Up to --parallel runs at a time, each pinned to a CPU
of its own (one XLA thread) when the machine has --parallel of them (`phi_jax.cpus`). Every run's config
is parsed from its flags (phi_jax.config_args, the parser main uses) before anything starts. Runs
share one prepared dataset, DIR/data, unless the config sets data.data_dir (prepared once, here,
before any run starts).

Rerunning the same command continues the sweep: a finished run (summary.json with stopped_by null
and step == total_steps) is skipped, an unfinished one resumes from its newest checkpoint (main
resumes by itself), a failed one (its exit recorded in DIR/<slug>/sweep_status.json) runs again
and the sweep says so. Failed runs are listed at the end (exit status 1). Ctrl-C / SIGTERM
forward SIGTERM to the running runs, which checkpoint and stop.

Grids and budgets (the scaling experiments, configs/phi3_scaling.py):

    def sweep(arg):
      return grid(size={'s': {'model.d_model': 64}, 'l': {'model.d_model': 128}},
                  tokens=(100_000, 400_000))   # tokens: total_steps = ceil(N / (batch x seq))

A grid run carries `tags` ({'size': 's', 'tokens': 100000}): its directory is named by them and
they are columns of the table; `{workdir}` in an override's text is DIR; a config's
`prepare(arg, workdir)` (if defined) runs once before any run starts (shared data, a tokenizer).
`--fit=eval_loss [--fit_by=TAG,...] [--fit_points=final|evals]` fits L(N, D) = E + A/N^alpha +
B/D^beta (phi_jax.study.scaling) per group of tags to the finished runs not tagged holdout=True,
and adds fit_loss / fit_error columns (DIR/sweep_fit.json has the laws).

At the end DIR holds sweep.csv and sweep.md (one row per run: tags, overrides, params, tokens,
compute = 6 N D, final loss, eval loss, fitted columns, steps, status) and sweep.png (each
--metrics against step, one line per run, from metrics.jsonl).

A study config (one with `arms`, e.g. configs/quickstart.py, whose sweep() is over seeds) sweeps
whole studies: DIR/<slug> is a study directory, finished when its results.json exists and every
arm reached total_steps, and the table's `study` column gives each arm's pass@1 per measured set
(experiments/tinycoder/report.py aggregates such a sweep across seeds).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import pathlib
import re
import sys
from typing import Any, Mapping, Optional, Sequence

import ml_collections

from phi_jax import cpus
from phi_jax.config_args import load_config, override_flags, parse_overrides  # noqa: F401
from phi_jax.sweep_table import (FIT_FILE, STATUS_FILE, Run, fit_rows, fmt_value, is_finished,
                                 plot, read_status, read_summary, result_row, write_table)

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


# ---- grids -------------------------------------------------------------------------------------

TAGS = "tags"  # a run dict's labels: {'size': 'xl', 'tokens': 1000000}; they name its workdir
TOKENS = "tokens"  # a pseudo-override: the run's budget in training tokens (sets total_steps)
WORKDIR = "{workdir}"  # in an override's text: the sweep's directory


def grid(**axes: Mapping[str, Mapping[str, Any]] | Sequence[Any]) -> list[dict[str, Any]]:
  """Every combination of the axes, the first varying slowest; each run tagged with its values.

    grid(size={'s': {'model.d_model': 64}, 'l': {'model.d_model': 128}},  # named: overrides
         tokens=(250_000, 1_000_000),                                    # the budget in tokens
         seed=(0, 1))                                                   # plain: KEY=value
    -> [{'model.d_model': 64, 'tokens': 250000, 'seed': 0,
         'tags': {'size': 's', 'tokens': 250000, 'seed': 0}}, ...]

  A named axis (a mapping) merges the overrides of the chosen name and tags the name; a plain axis
  (a sequence) sets the axis's key (a dotted config key, or `tokens`) and tags the value.
  """
  runs: list[dict[str, Any]] = [{TAGS: {}}]
  for axis, values in axes.items():
    if isinstance(values, (str, bytes)) or not len(values):
      raise ValueError(f"grid axis {axis!r}: expected a mapping name -> overrides or a sequence "
                       f"of values, got {values!r}")
    named = isinstance(values, Mapping)
    options = list(values.items()) if named else [(v, {axis: v}) for v in values]
    expanded = []
    for run in runs:
      for tag, overrides in options:
        expanded.append({**run, **dict(overrides), TAGS: {**run[TAGS], axis: tag}})
    runs = expanded
  return runs


def _substitute(overrides: Mapping[str, Any], workdir: pathlib.Path) -> dict[str, Any]:
  """The overrides with '{workdir}' in their text replaced by the sweep's directory."""
  return {k: v.replace(WORKDIR, str(workdir)) if isinstance(v, str) else v
          for k, v in overrides.items()}



# ---- runs --------------------------------------------------------------------------------------

def slugs(runs: Sequence[Mapping[str, Any]]) -> list[str]:
  """Directory names: 'learning_rate=0.001,num_layers=2' (leaf names unless two keys share one);
  a run with tags (`grid`) is named by its tags alone: 'mixture=raw,size=xl,tokens=1000000'."""
  runs = [run[TAGS] if run.get(TAGS) else run for run in runs]
  keys = {k for run in runs for k in run}
  leaves = [k.split(".")[-1] for k in keys]
  short = {k: k.split(".")[-1] if leaves.count(k.split(".")[-1]) == 1 else k for k in keys}
  out = []
  for run in runs:
    text = ",".join(f"{short[k]}={fmt_value(v)}" for k, v in run.items() if k != TAGS) or "base"
    out.append(_UNSAFE.sub("_", text)[:200])
  if len(set(out)) != len(out):
    dupes = sorted({s for s in out if out.count(s) > 1})
    raise ValueError(f"the sweep has duplicate runs {dupes}; make each dict of overrides distinct")
  return out


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
  common = _substitute(common, workdir)
  if not load_config(spec, {k: v for k, v in common.items() if k != TOKENS}).data.data_dir:
    common["data.data_dir"] = str(workdir / "data")  # one prepared dataset for all runs
  planned = []
  for run_overrides, slug in zip(runs, slugs(runs)):
    run_overrides = dict(run_overrides)
    tags = dict(run_overrides.pop(TAGS, None) or {})
    merged = _substitute({**common, **run_overrides}, workdir)
    tokens = merged.pop(TOKENS, None)
    if tokens is not None:  # the budget in tokens: total_steps = ceil(tokens / tokens per step)
      data = load_config(spec, merged).data
      per_step = int(data.batch_size) * int(data.seq_len)
      if float(tokens) < per_step:
        raise ValueError(f"run {slug}: tokens={tokens} is less than one step "
                         f"({data.batch_size} x {data.seq_len} = {per_step} tokens)")
      merged["total_steps"] = -(-int(float(tokens)) // per_step)
    # Every run's config is parsed, before anything starts, from the very flags main will get.
    config = load_config(spec, merged)
    command = [sys.executable, "-m", "phi_jax.main", f"--config={spec}",
               f"--workdir={workdir / slug}", *override_flags(merged)]
    planned.append(Run(run_overrides, slug, workdir / slug, int(config.total_steps),
                       config=config, command=command, tags=tags))
  return planned


def _finish(run: Run, returncode: int) -> None:
  """Sets the status of a run whose process ended, and prints a line about it."""
  if returncode:
    run.status = f"failed (exit {returncode})"
  elif is_finished(run.workdir, run.total_steps):
    run.status = "done"
  else:
    run.status = f"stopped ({(read_summary(run.workdir) or {}).get('stopped_by') or 'unfinished'})"
  (run.workdir / STATUS_FILE).write_text(json.dumps({"status": run.status,
                                                     "returncode": returncode,
                                                     "seconds": round(run.seconds, 1)}))
  row = result_row(run)
  num = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
  measured = (f"pass@1 {row['study']}" if row["study"] else
              f"loss {num(row['final_loss'])}, eval loss {num(row['eval_loss'])}")
  print(f"[sweep] {run.slug}: {run.status} after {run.seconds:.0f} s, step {row['step']}, "
        f"{measured}", flush=True)


def run_sweep(spec: str, workdir: str | os.PathLike, *, runs: Optional[list[dict[str, Any]]] = None,
              overrides: Sequence[str] | Mapping[str, Any] = (), parallel: int = 1,
              metrics: Sequence[str] = ("loss", "eval_loss"),
              env: Optional[Mapping[str, str]] = None, fit: Optional[str] = None,
              fit_by: Sequence[str] = (), fit_points: str = "final", dry_run: bool = False,
              poll_seconds: float = 0.5) -> list[dict[str, Any]]:
  """Runs (or continues) the sweep; returns the table rows. See the module docstring.

  Args:
    spec: 'configs/FILE.py[:ARG]'.
    workdir: the sweep's directory; run i goes to workdir/<slug i>.
    runs: dicts of dotted overrides; default: the config module's `sweep(arg)` (or `sweep()`).
    overrides: applied to every run ('KEY=VALUE' strings or a dict).
    parallel: runs at a time.
    metrics: metrics.jsonl keys to plot.
    env: environment of the runs (default: this process's).
    fit: a metric (e.g. 'eval_loss') to fit L(N, D) to: adds fit_loss / fit_error columns and
      writes DIR/sweep_fit.json (`fit_rows`).
    fit_by: tags whose every combination gets its own law (e.g. ('mixture',)).
    fit_points: 'final' (each run's last value) or 'evals' (every evaluation of each run).
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
      before = read_status(run.workdir)
      if before and before.startswith("failed"):
        run.status = f"{before}, not rerun yet"
        print(f"[sweep] {run.slug}: {before} on the last call; it runs again "
              f"(log: {run.workdir / 'sweep_run.log'})", flush=True)
  if dry_run:
    print("\n".join(" ".join(run.command) for run in todo))
    return _table(planned, workdir, fit, fit_by, fit_points, write=False)
  workdir.mkdir(parents=True, exist_ok=True)
  if todo:
    path, arg = split_spec(spec)
    module = load_module(path)
    if hasattr(module, "prepare"):  # what the runs share, made once (e.g. data, a tokenizer)
      print(f"[sweep] preparing: {pathlib.Path(path).name}'s prepare()", flush=True)
      module.prepare(arg, workdir)
    _prepare_data([run.config for run in todo])

  by_slug = {run.slug: run for run in todo}
  started = []

  def start(slug: str, cpu: Optional[int]) -> None:
    started.append(slug)
    print(f"[sweep] start {slug} ({len(started)}/{len(todo)})"
          + (f" on CPU {cpu}" if cpu is not None else "")
          + f": log in {by_slug[slug].workdir / 'sweep_run.log'}", flush=True)

  def finish(slug: str, returncode: int, seconds: float) -> None:
    by_slug[slug].seconds = seconds
    _finish(by_slug[slug], returncode)

  def stop(running: int) -> None:
    print(f"[sweep] interrupted: stopping {running} run(s) at their next step (they "
          "checkpoint); rerun the same command to continue", flush=True)

  try:
    cpus.run_pool([(run.slug, run.command, run.workdir / "sweep_run.log") for run in todo],
                  parallel, env=env, on_start=start, on_finish=finish, on_stop=stop,
                  poll_seconds=poll_seconds)
  except cpus.Stopped as e:
    for slug in e.keys:
      by_slug[slug].status = "interrupted"
    raise
  finally:
    rows = _table(planned, workdir, fit, fit_by, fit_points)
    png = plot(planned, list(metrics), workdir / "sweep.png")
    print(f"[sweep] table: {workdir / 'sweep.md'} and {workdir / 'sweep.csv'}" +
          (f"; plot: {png}" if png else ""), flush=True)
    failed = [run for run in planned if run.status.startswith("failed")]
    if failed:
      print(f"[sweep] {len(failed)} of {len(planned)} run(s) failed: " +
            ", ".join(f"{run.slug} ({run.workdir / 'sweep_run.log'})" for run in failed) +
            "; rerun the same command to run them again", flush=True)
  return rows


def _table(planned: Sequence[Run], workdir: pathlib.Path, fit: Optional[str],
           fit_by: Sequence[str], points: str = "final",
           write: bool = True) -> list[dict[str, Any]]:
  """The rows (with fitted columns if `fit`), written to DIR/sweep.{csv,md} (+ sweep_fit.json)."""
  rows = [result_row(run) for run in planned]
  if fit:
    laws = fit_rows(rows, fit, fit_by, points)
    for key, law in laws.items():
      if "error" in law:
        print(f"[sweep] fit {key}: {law['error']}", flush=True)
      else:
        print(f"[sweep] fit {key}: {fit} = {law['E']:.3f} + {law['A']:.3g}/N^{law['alpha']:.3f} "
              f"+ {law['B']:.3g}/D^{law['beta']:.3f} ({len(law['runs'])} runs)", flush=True)
    if write:
      (workdir / FIT_FILE).write_text(json.dumps(laws, indent=1) + "\n")
  if write:
    write_table(rows, workdir)
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
  parser.add_argument("--fit", default="", help="fit L(N,D) to this metric (e.g. eval_loss)")
  parser.add_argument("--fit_by", default="", help="one law per value of these tags (a,b,...)")
  parser.add_argument("--fit_points", default="final", choices=("final", "evals"),
                      help="fit each run's final value, or every evaluation of each run")
  parser.add_argument("--dry_run", action="store_true", help="print the run commands and exit")
  args, extra = parser.parse_known_args(argv)
  bad = [o for o in extra if not o.startswith("--config.")]
  if bad:
    parser.error(f"unrecognised arguments {bad}; fields for every run are --config.KEY=VALUE")
  try:
    rows = run_sweep(args.config, args.workdir, overrides=[o[len("--config."):] for o in extra],
                     parallel=args.parallel, metrics=[m for m in args.metrics.split(",") if m],
                     fit=args.fit or None, fit_by=[t for t in args.fit_by.split(",") if t],
                     fit_points=args.fit_points,
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
