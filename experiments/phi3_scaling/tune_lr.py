"""The peak learning rate per size, from the rate search `configs/phi3_scaling.py:tune`.

    python -m phi_jax.sweep --config=configs/phi3_scaling.py:tune,ladder=mixed --workdir=DIR \
        --parallel=2
    python experiments/phi3_scaling/tune_lr.py DIR [--ladder mixed] [--out experiments/phi3_scaling]

(lr_tuning.json is the search of the `mixed` ladder, 2026-12-02; the default `width` ladder uses
the rule it gave.)

The search trains every fitted size at each of TUNE_RATES on the textbook mixture for the middle
budget. Per size, the best rate is the vertex of a parabola through (log rate, held-out loss) at
the lowest point and its two neighbours (flagged when the lowest loss is at an edge). A power law
lr*(N) = c N^k is fitted to the sizes' best rates by least squares in log-log; the main grid
uses it for EVERY size, the held-out size included, so the held-out run's rate is an
extrapolation of the same rule (as a user scaling up would have to choose it). Writes
lr_tuning.json (the points, the per-size optima, the rule, the rates it gives each size) and
prints the `LEARNING_RATES` table for the config.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
from typing import Any

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def best_rate(points: list[tuple[float, float]]) -> tuple[float, bool]:
  """(best rate, whether the lowest loss is inside the searched range).

  points: (rate, loss), at least 3 distinct rates. The best rate is the vertex of the parabola
  (in log rate) through the lowest point and its two neighbours; at an edge, the edge's rate."""
  points = sorted(points)
  x = np.log([p[0] for p in points])
  y = np.asarray([p[1] for p in points])
  i = int(np.argmin(y))
  if not 0 < i < len(points) - 1:
    return float(points[i][0]), False
  a, b, _ = np.polyfit(x[i - 1:i + 2], y[i - 1:i + 2], 2)
  vertex = -b / (2 * a) if a > 0 else x[i]
  return float(math.exp(min(max(vertex, x[i - 1]), x[i + 1]))), True


def rule(optima: dict[int, float]) -> tuple[float, float]:
  """(c, k) of lr = c N^k, least squares in log-log over {N: best rate}."""
  n = np.log(list(optima))
  lr = np.log(list(optima.values()))
  k, logc = np.polyfit(n, lr, 1)
  return float(math.exp(logc)), float(k)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("workdir")
  p.add_argument("--out", default=str(ROOT / "experiments" / "phi3_scaling"))
  p.add_argument("--ladder", default="mixed", help="the ladder of the search (config `ladder=`)")
  args = p.parse_args(argv)
  from phi_jax import sweep, sweep_table  # pylint: disable=g-import-not-at-top
  config = str(ROOT / "configs" / "phi3_scaling.py")
  runs = sweep.plan_sweep(f"{config}:tune,ladder={args.ladder}", args.workdir)
  by_size: dict[str, list[tuple[float, float]]] = {}
  params: dict[str, int] = {}
  rows: list[dict[str, Any]] = []
  for run in runs:
    row = sweep_table.result_row(run)
    if not sweep_table.is_finished(run.workdir, run.total_steps) or row["eval_loss"] is None:
      print(f"{run.slug}: not finished; rerun the search first", file=sys.stderr)
      return 1
    lr = run.config.optimizer.learning_rate
    by_size.setdefault(run.tags["size"], []).append((lr, row["eval_loss"]))
    params[run.tags["size"]] = row["params"]
    rows.append({"size": run.tags["size"], "params": row["params"], "learning_rate": lr,
                 "tokens": row["tokens"], "eval_loss": row["eval_loss"]})
  optima, interior = {}, {}
  for size, pts in by_size.items():
    optima[size], interior[size] = best_rate(pts)
  c, k = rule({params[s]: optima[s] for s in optima})
  main_grid = sweep.plan_sweep(f"{config}:ladder={args.ladder}", args.workdir)
  all_params = {r.tags["size"]: sweep_table.run_size(r)["params"] for r in main_grid}
  rates = {s: float(f"{c * n ** k:.3g}") for s, n in all_params.items()}
  out = {"points": rows, "optimum": optima, "optimum_inside_range": interior,
         "rule": {"c": c, "k": k, "form": "lr = c * N^k"}, "rates": rates,
         "params": all_params}
  path = pathlib.Path(args.out) / "lr_tuning.json"
  path.write_text(json.dumps(out, indent=1) + "\n")
  for size in by_size:
    pts = ", ".join(f"{lr:g}: {loss:.4f}" for lr, loss in sorted(by_size[size]))
    print(f"{size:4s} N={params[size]:>9,}  {pts}  -> best {optima[size]:.3g}"
          + ("" if interior[size] else "  (lowest loss at an edge of the range)"))
  print(f"rule: lr = {c:.4g} * N^{k:.3f}")
  print("LEARNING_RATES = {" + ", ".join(f'"{s}": {r:g}' for s, r in rates.items()) + "}")
  print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
