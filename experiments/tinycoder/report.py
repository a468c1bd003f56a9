"""The quickstart study across seeds: a sweep of studies -> seeds.json and seeds.md.

    python -m phi_jax.sweep --config=configs/quickstart.py:long --workdir=DIR   # seeds 0, 1, 2
    python experiments/tinycoder/report.py --sweep=DIR [--out=experiments/tinycoder]

For every arm and measured set: pass@1 of each seed, their mean with a 95% Student-t interval
across seeds (the spread of training: init and data order; the mixture is the same), and the
pooled pass@1 over all seeds' problems with its Wilson interval. Also each arm's parse rate,
held-out and final train loss per seed, and the study's wall times. --copy_seed=N copies seed N's
results.json to OUT/results.json (what notebooks/phi1.ipynb loads).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
from typing import Any

from phi_jax.curation.stages import write_json
from phi_jax.data import files
from phi_jax.evals.functions import seed_interval, wilson
from phi_jax.study.report import SET_LABELS


def load(sweep: pathlib.Path) -> dict[int, dict[str, Any]]:
  """seed -> the study's results.json, for every finished study DIR/seed=N of the sweep."""
  studies = {}
  for path in sorted(sweep.glob("seed=*/results.json")):
    studies[int(path.parent.name.split("=", 1)[1])] = json.loads(path.read_text())
  if not studies:
    raise SystemExit(f"no finished study under {sweep} (expected {sweep}/seed=N/results.json; "
                     "run `python -m phi_jax.sweep --config=configs/quickstart.py... "
                     f"--workdir={sweep}` first)")
  return studies


def aggregate(studies: dict[int, dict[str, Any]]) -> dict[str, Any]:
  seeds = sorted(studies)
  first = studies[seeds[0]]
  arms = first["arms"]
  for seed in seeds:
    if studies[seed]["arms"] != arms or studies[seed]["tokens_per_arm"] != first["tokens_per_arm"]:
      raise SystemExit(f"seed {seed}'s study differs from seed {seeds[0]}'s (arms or tokens): "
                       "aggregate one sweep of one config")
  out: dict[str, Any] = {"seeds": seeds, "arms": arms, "tokens_per_arm": first["tokens_per_arm"],
                         "num_params": first["results"][arms[0]]["num_params"], "sets": {},
                         "losses": {}, "timings": {s: studies[s]["timings"] for s in seeds}}
  for name in SET_LABELS:
    if not all(name in studies[s]["results"][a]["sets"] for s in seeds for a in arms):
      continue
    out["sets"][name] = {}
    for arm in arms:
      rows = [studies[s]["results"][arm]["sets"][name] for s in seeds]
      mean, lo, hi = seed_interval([r["pass@1"] for r in rows])
      passed, n = sum(r["passed"] for r in rows), sum(r["n"] for r in rows)
      entry = {"per_seed": [r["pass@1"] for r in rows], "mean": mean, "seed_ci95": [lo, hi],
               "pooled": passed / n, "pooled_wilson95": list(wilson(passed, n)),
               "passed": passed, "n": n}
      if all("parse_rate" in r for r in rows):
        entry["parse_rate_per_seed"] = [r["parse_rate"] for r in rows]
      out["sets"][name][arm] = entry
  for arm in arms:
    out["losses"][arm] = {k: [studies[s]["summaries"][arm].get(k) for s in seeds]
                          for k in ("eval_loss", "final_loss")}
  return out


def study_seconds(timings: dict[str, float]) -> float:
  """The study's seconds from its timings: with study.parallel > 1, `train_concurrent` spans the
  arms' processes (their per-arm train_ / measure_ times overlap inside it)."""
  if "train_concurrent" in timings:
    return sum(v for k, v in timings.items() if not k.startswith(("train_", "measure_"))
               ) + timings["train_concurrent"]
  return sum(timings.values())


def markdown(agg: dict[str, Any]) -> str:
  arms, seeds = agg["arms"], agg["seeds"]
  pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
  lines = [f"Seeds {', '.join(map(str, seeds))}; {agg['num_params']:,} parameters; "
           f"{agg['tokens_per_arm']:,} training tokens per arm. Mean pass@1 across seeds "
           "[95% t-interval across seeds] (per seed); pooled over all seeds' answers [95% Wilson; "
           "every seed answers the same problems, so this interval treats repeated answers as "
           "independent and is narrower than the seed spread warrants].", "",
           "| set | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
  for name, per_arm in agg["sets"].items():
    cells = []
    for arm in arms:
      e = per_arm[arm]
      lo, hi = e["seed_ci95"]
      plo, phi = e["pooled_wilson95"]
      cells.append(f"{pct(e['mean'])}% [{pct(max(lo, 0.0))}, {pct(min(hi, 1.0))}] "
                   f"({', '.join(pct(v) for v in e['per_seed'])}); pooled {e['passed']}/{e['n']} "
                   f"[{pct(plo)}, {pct(phi)}]")
    lines.append(f"| {SET_LABELS[name]} | " + " | ".join(cells) + " |")
  for name, per_arm in agg["sets"].items():
    if all("parse_rate_per_seed" in per_arm[a] for a in arms):
      lines.append(f"| parses as Python, {name} | " + " | ".join(
          ", ".join(f"{100 * v:.0f}%" for v in per_arm[a]["parse_rate_per_seed"]) for a in arms)
          + " |")
  for key in ("eval_loss", "final_loss"):
    lines.append(f"| {key} per seed | " + " | ".join(
        ", ".join("-" if v is None else f"{v:.3f}" for v in agg["losses"][a][key])
        for a in arms) + " |")
  walls = [study_seconds(t) for t in agg["timings"].values()]
  lines += ["", "Study time per seed (s; data, tokenizer, training and measuring, without start-up): "
            f"{', '.join(f'{w:.0f}' for w in walls)}.", ""]
  return "\n".join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--sweep", required=True, help="the sweep's --workdir")
  p.add_argument("--out", default=str(pathlib.Path(__file__).parent))
  p.add_argument("--copy_seed", type=int, default=None,
                 help="copy this seed's results.json to OUT/results.json")
  args = p.parse_args(argv)
  sweep, out = pathlib.Path(args.sweep), pathlib.Path(args.out)
  studies = load(sweep)
  agg = aggregate(studies)
  out.mkdir(parents=True, exist_ok=True)
  write_json(out / "seeds.json", agg)
  text = markdown(agg)
  files.write_text(out / "seeds.md", text)
  if args.copy_seed is not None:
    if args.copy_seed not in studies:
      raise SystemExit(f"--copy_seed={args.copy_seed}: the sweep has seeds {sorted(studies)}")
    shutil.copyfile(sweep / f"seed={args.copy_seed}" / "results.json", out / "results.json.tmp")
    (out / "results.json.tmp").replace(out / "results.json")
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
