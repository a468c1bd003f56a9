"""A sweep's table: each run (`Run`), what it left on disk (summary.json, metrics.jsonl, a study's
results.json, the sweep's status file) as one row, the fitted columns of a scaling law, and the
curves plot. `phi_jax.sweep` plans and runs the sweep; this module only reads and writes results.

    rows = [result_row(run) for run in runs]   # run, tags, params, tokens, compute, losses, ...
    laws = fit_rows(rows, "eval_loss", by=("mixture",), points="evals")  # adds fit_loss/_error
    write_table(rows, DIR)                      # DIR/sweep.csv, DIR/sweep.md
"""

from __future__ import annotations

import csv
import dataclasses
import json
import pathlib
from typing import Any, Mapping, Optional, Sequence

import ml_collections

from phi_jax.data.files import atomic_open, write_text


@dataclasses.dataclass
class Run:
  """One run of a sweep: its overrides, directory DIR/<slug>, and how its last process ended."""
  overrides: dict[str, Any]
  slug: str
  workdir: pathlib.Path
  total_steps: int
  config: Optional[ml_collections.ConfigDict] = None  # with every override applied
  command: list[str] = dataclasses.field(default_factory=list)  # the main subprocess
  status: str = "pending"
  seconds: float = 0.0
  tags: dict[str, Any] = dataclasses.field(default_factory=dict)


def fmt_value(value: Any) -> str:
  """An override's value as a slug or table shows it: floats as %g (0.001, 1e-05)."""
  return f"{value:g}" if isinstance(value, float) else str(value)


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


STATUS_FILE = "sweep_status.json"  # DIR/<slug>/: how the run's last process ended


def read_status(workdir: pathlib.Path) -> Optional[str]:
  """The status the sweep recorded when the run's last process ended ('failed (exit 1)', ...)."""
  try:
    return json.loads((workdir / STATUS_FILE).read_text())["status"]
  except (OSError, ValueError, KeyError):
    return None


def run_size(run: Run) -> dict[str, Any]:
  """params (non-embedding, as in Kaplan et al. 2020), tokens (total_steps x batch_size x
  seq_len) and compute (6 x params x tokens, FLOPs) of a run; {} without a config."""
  if run.config is None or "model" not in run.config or run.config.model.get("name") == "init":
    return {}  # (model 'init': a fine-tune, whose architecture is init_from's)
  from phi_jax.train import loop, metrics  # pylint: disable=g-import-not-at-top
  params = metrics.param_count(loop.model_config(run.config, vocab_size=1),
                               include_embedding=False)
  tokens = run.total_steps * int(run.config.data.batch_size) * int(run.config.data.seq_len)
  return {"params": params, "tokens": tokens, "compute": 6.0 * params * tokens}


def result_row(run: Run) -> dict[str, Any]:
  """One table row: run, its tags, overrides, params, tokens, compute, final_loss, eval_loss,
  step, total_steps, status, study (a study's pass@1 per arm and set; its losses are per arm, in
  its own report)."""
  row = {"run": run.slug, **{f"tag:{k}": v for k, v in run.tags.items()}, **run_size(run)}
  row.update(_measured_row(run))
  if row.get("tokens"):  # every evaluation as (tokens trained, eval_loss): a budget each
    per_step = row["tokens"] / max(run.total_steps, 1)
    row["evals"] = [(int(r["step"] * per_step), r["eval_loss"]) for r in read_metrics(run.workdir)
                    if isinstance(r.get("eval_loss"), (int, float)) and r.get("step")]
  return row


def _measured_row(run: Run) -> dict[str, Any]:
  study = read_study(run.workdir)
  if study is not None:
    steps = [s.get("step", 0) for s in study["summaries"].values()]
    return {"run": run.slug,
            "overrides": ";".join(f"{k}={fmt_value(v)}" for k, v in run.overrides.items()),
            "final_loss": None, "eval_loss": None, "step": min(steps, default=0),
            "total_steps": run.total_steps, "status": run.status, "study": _study_cell(study)}
  summary = read_summary(run.workdir) or {}
  records = read_metrics(run.workdir)
  steps = [r["step"] for r in records if "step" in r]
  final, evals = summary.get("final_loss"), summary.get("eval_loss")
  return {"run": run.slug,
          "overrides": ";".join(f"{k}={fmt_value(v)}" for k, v in run.overrides.items()),
          "final_loss": _last(records, "loss") if final is None else final,
          "eval_loss": _last(records, "eval_loss") if evals is None else evals,
          "step": summary.get("step", max(steps, default=0)), "total_steps": run.total_steps,
          "status": run.status, "study": None}


def table_fields(rows: Sequence[Mapping[str, Any]]) -> list[str]:
  """The columns of the table, in order; a column only if some row has it."""
  tags = list(dict.fromkeys(k for row in rows for k in row if k.startswith("tag:")))
  order = ["run", *tags, "overrides", "params", "tokens", "compute", "final_loss", "eval_loss",
           "fit_loss", "fit_error", "step", "total_steps", "status", "study"]
  always = {"run", "overrides", "final_loss", "eval_loss", "step", "total_steps", "status"}
  return [f for f in order if f in always or any(row.get(f) not in (None, "") for row in rows)]


def write_table(rows: list[dict[str, Any]],
                directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
  """sweep.csv and sweep.md in `directory` (sweep.md without the overrides of tagged runs: the
  tags name them)."""
  fields = table_fields(rows)
  csv_path, md_path = directory / "sweep.csv", directory / "sweep.md"
  with atomic_open(csv_path) as f:
    writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore", restval="")
    writer.writeheader()
    writer.writerows(rows)

  def cell(v: Any) -> str:
    if v is None:
      return ""
    if isinstance(v, float):
      return f"{v:.3g}" if abs(v) >= 1e5 else f"{v:.4f}"
    return str(v)

  if any(f.startswith("tag:") for f in fields):
    fields = [f for f in fields if f != "overrides"]
  lines = ["| " + " | ".join(f.removeprefix("tag:") for f in fields) + " |",
           "|" + "---|" * len(fields)]
  lines += ["| " + " | ".join(cell(row.get(f)) for f in fields) + " |" for row in rows]
  write_text(md_path, "\n".join(lines) + "\n")
  return csv_path, md_path


FIT_FILE = "sweep_fit.json"


def fit_points(rows: Sequence[Mapping[str, Any]], metric: str,
               points: str = "final") -> list[tuple[str, float, float, float]]:
  """(run, N, D, loss) to fit: each row's final `metric` at its tokens ('final'), or each of its
  evaluations at the tokens trained by then ('evals': with a constant learning rate after a
  fixed warmup, the model at D tokens is that of a run with budget D)."""
  if points not in ("final", "evals"):
    raise ValueError(f"points={points!r}: choose 'final' or 'evals'")
  out = []
  for r in rows:
    if points == "final":
      if isinstance(r.get(metric), (int, float)):
        out.append((r["run"], r["params"], r["tokens"], float(r[metric])))
    else:
      if metric != "eval_loss":
        raise ValueError(f"points='evals' fits eval_loss (the metric of every evaluation), "
                         f"not {metric!r}")
      out += [(r["run"], r["params"], d, float(loss)) for d, loss in r.get("evals") or ()]
  return out


def fit_rows(rows: list[dict[str, Any]], metric: str, by: Sequence[str] = (),
             points: str = "final") -> dict[str, Any]:
  """Fits L(N, D) = E + A/N^alpha + B/D^beta (`phi_jax.study.scaling`) to `metric` against params
  and tokens, one law per combination of the tags `by`, over the finished runs not tagged
  holdout=True (`points`: see `fit_points`); adds fit_loss (the law at the row's N, D) and
  fit_error (measured / fitted - 1) to every row of a fitted group, holdout rows included.
  Returns {group: law or error}."""
  from phi_jax.study import scaling  # pylint: disable=g-import-not-at-top
  groups: dict[str, list[dict[str, Any]]] = {}
  for row in rows:
    key = ",".join(f"{t}={row.get('tag:' + t)}" for t in by) or "all"
    groups.setdefault(key, []).append(row)
  out: dict[str, Any] = {}
  for key, members in groups.items():
    used = [r for r in members if not r.get("tag:holdout") and r["status"].startswith("done")
            and r.get("params")]
    pts = fit_points(used, metric, points)
    try:
      law = scaling.fit([p[1] for p in pts], [p[2] for p in pts], [p[3] for p in pts])
    except ValueError as e:
      out[key] = {"error": f"no fit of {metric}: {e}", "runs": [r["run"] for r in used]}
      continue
    out[key] = {"metric": metric, "points": points, **law.as_dict(),
                "runs": [r["run"] for r in used]}
    for row in members:
      if row.get("params") and row.get("tokens"):
        row["fit_loss"] = float(law.predict(row["params"], row["tokens"]))
        if isinstance(row.get(metric), (int, float)):
          row["fit_error"] = row[metric] / row["fit_loss"] - 1.0
  return out


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
