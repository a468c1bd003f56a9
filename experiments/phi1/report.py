"""The phi-1 ablation across seeds: ROOT's measurements -> results.json, results_table.md and the
Figure 2.1-style plot.

    python experiments/phi1/report.py --root=ROOT [--tiny] [--out=experiments/phi1]

Reads what run.sh made: each model's study_eval.json (pass@1) and heldout_losses.json
(evaluate.py), each run's summary.json, ROOT/data/data.json (prepare_data.py) and
ROOT/wall_times.tsv. For every cell (pretraining arm x before / after the exercise fine-tune x
measured set): pass@1 per seed, the mean with a 95% Student-t interval across seeds
(`evals.functions.seed_interval`: the spread of training, init and data order) and the pooled
pass@1 over every seed's answers with its Wilson interval (every seed answers the same problems,
so the pooled interval treats repeated answers as independent: narrower than the seed spread
warrants). The paper's ordering is tested on paired differences (same seed, same problems):
filtered - unfiltered, textbook - filtered, textbook - unfiltered, per seed, with the t-interval
of their mean; an ordering "holds beyond the noise" when that interval excludes 0 in the
paper's direction (higher pass@1, lower loss).

The figure follows the paper's Figure 2.1: bars grouped by training setting (here: pretrained,
and after the exercise fine-tune), one bar per pretraining data within a group, error bars the
seed interval, each seed's value a dot; panels for both held-out exercise sets and the held-out
losses.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import pathlib
import sys
from typing import Any, Optional, Sequence

HERE = pathlib.Path(__file__).resolve().parent
ARMS = ("unfiltered", "filtered", "textbook")
STAGES = ("pretrain", "finetune")
ARM_LABELS = {"unfiltered": "stdlib (unfiltered)", "filtered": "filtered stdlib",
              "textbook": "filtered + textbooks"}
STAGE_LABELS = {"pretrain": "pretrained", "finetune": "+ exercise fine-tune"}
SETS = {"validation": "unseen variants of the training families",
        "test": "held-out families", "handwritten": "hand-written problems"}
LOSSES = {"stdlib": "held-out stdlib files", "exercise_validation":
          "held-out exercise bodies, unseen variants", "exercise_test":
          "held-out exercise bodies, held-out families", "own_eval_loss":
          "the run's own held-out split"}
# (name, better, worse): the paper's ordering, one comparison each
COMPARISONS = (("filtered-unfiltered", "filtered", "unfiltered"),
               ("textbook-filtered", "textbook", "filtered"),
               ("textbook-unfiltered", "textbook", "unfiltered"))
COLORS = {"unfiltered": "#e8903c", "filtered": "#a6d49f", "textbook": "#2e7d32"}


def _evaluate_module() -> Any:
  spec = importlib.util.spec_from_file_location("_phi1_evaluate", HERE / "evaluate.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _read(path: pathlib.Path) -> Optional[dict[str, Any]]:
  return json.loads(path.read_text()) if path.exists() else None


def collect(models: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """One row per model: arm, seed, stage, workdir, pass@1 per set, losses, step, parameters."""
  rows = []
  for m in models:
    workdir = pathlib.Path(m["workdir"])
    measured = _read(workdir / "study_eval.json")
    heldout = _read(workdir / "heldout_losses.json")
    summary = _read(workdir / "summary.json") or {}
    missing = [n for n, v in (("study_eval.json", measured), ("heldout_losses.json", heldout))
               if v is None]
    if missing:
      raise SystemExit(f"{workdir} lacks {', '.join(missing)}: run experiments/phi1/evaluate.py "
                       "(run.sh does) first")
    row = dict(m, step=summary.get("step"), num_params=measured["num_params"], sets={},
               losses={"stdlib": heldout["stdlib"]["loss"],
                       "stdlib_bits_per_byte": heldout["stdlib"]["bits_per_byte"],
                       "own_eval_loss": summary.get("eval_loss"),
                       "final_train_loss": summary.get("final_loss")})
    for name, value in heldout["exercises"].items():
      row["losses"][f"exercise_{name}"] = value
    for name, r in measured["sets"].items():
      row["sets"][name] = {k: r[k] for k in ("pass@1", "passed", "n", "ci95", "parse_rate")
                           if k in r}
      row["sets"][name]["passed_ids"] = r.get("passed_ids", [])
    rows.append(row)
  return rows


def _interval(values: Sequence[float]) -> dict[str, Any]:
  from phi_jax.evals.functions import seed_interval  # pylint: disable=g-import-not-at-top
  mean, lo, hi = seed_interval(values)
  return {"per_seed": list(values), "mean": mean, "seed_ci95": [lo, hi]}


def _cell(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
  from phi_jax.evals.functions import wilson  # pylint: disable=g-import-not-at-top
  sets = [r["sets"][name] for r in rows]
  passed, n = sum(s["passed"] for s in sets), sum(s["n"] for s in sets)
  out = _interval([s["pass@1"] for s in sets])
  out.update(passed=passed, n=n, pooled=passed / n if n else 0.0,
             pooled_wilson95=list(wilson(passed, n)),
             parse_rate_per_seed=[s.get("parse_rate") for s in sets])
  return out


def difference(better: Sequence[float], worse: Sequence[float], *,
               lower_is_better: bool = False) -> dict[str, Any]:
  """The paired difference better - worse per seed, its mean and 95% t-interval; `holds`: the
  interval excludes 0 in the expected direction (> 0, or < 0 for a loss)."""
  if len(better) != len(worse):
    raise ValueError(f"paired by seed: {len(better)} vs {len(worse)} values")
  diffs = [b - w for b, w in zip(better, worse)]
  out = _interval(diffs)
  lo, hi = out["seed_ci95"]
  sign = -1 if lower_is_better else 1
  out["seeds_in_direction"] = sum(sign * d > 0 for d in diffs)
  out["holds"] = bool(hi < 0 if lower_is_better else lo > 0) and len(diffs) > 1
  out["reversed"] = bool(lo > 0 if lower_is_better else hi < 0) and len(diffs) > 1
  return out


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
  """results.json's 'cells', 'losses' and 'differences' (see the module doc)."""
  seeds = sorted({r["seed"] for r in rows})
  by = {(r["stage"], r["arm"], r["seed"]): r for r in rows}
  missing = [(s, a, seed) for s in STAGES for a in ARMS for seed in seeds
             if (s, a, seed) not in by]
  if missing:
    raise SystemExit(f"models missing for (stage, arm, seed) {missing}")
  sets = [n for n in SETS if all(n in r["sets"] for r in rows)]
  loss_keys = [k for k in LOSSES if all(r["losses"].get(k) is not None for r in rows)]
  cells: dict[str, Any] = {}
  losses: dict[str, Any] = {}
  diffs: dict[str, Any] = {}
  for stage in STAGES:
    cells[stage], losses[stage], diffs[stage] = {}, {}, {}
    for arm in ARMS:
      group = [by[(stage, arm, seed)] for seed in seeds]
      cells[stage][arm] = {name: _cell(group, name) for name in sets}
      losses[stage][arm] = {k: _interval([r["losses"][k] for r in group]) for k in loss_keys}
    for name in sets:
      diffs[stage][name] = {
          label: difference(cells[stage][b][name]["per_seed"], cells[stage][w][name]["per_seed"])
          for label, b, w in COMPARISONS}
    for key in loss_keys:
      if key == "own_eval_loss":  # each arm's own data: not comparable across arms
        continue
      diffs[stage][key] = {
          label: difference(losses[stage][b][key]["per_seed"], losses[stage][w][key]["per_seed"],
                            lower_is_better=True)
          for label, b, w in COMPARISONS}
  gains = {arm: {name: difference(cells["finetune"][arm][name]["per_seed"],
                                  cells["pretrain"][arm][name]["per_seed"]) for name in sets}
           for arm in ARMS}
  return {"seeds": seeds, "sets": sets, "loss_keys": loss_keys, "cells": cells,
          "losses": losses, "differences": diffs, "finetune_gains": gains}


# ---- text --------------------------------------------------------------------------------------

def _pct(v: float) -> str:
  return f"{100 * v:.1f}"


def _pass_cell(e: dict[str, Any]) -> str:
  lo, hi = e["seed_ci95"]
  plo, phi = e["pooled_wilson95"]
  return (f"{_pct(e['mean'])}% [{_pct(max(lo, 0.0))}, {_pct(min(hi, 1.0))}] "
          f"({', '.join(_pct(v) for v in e['per_seed'])}); pooled {e['passed']}/{e['n']} "
          f"[{_pct(plo)}, {_pct(phi)}]")


def _diff_cell(d: dict[str, Any], percent: bool) -> str:
  scale, digits, unit = (100, 1, " pt") if percent else (1, 3, "")
  num = lambda v: f"{scale * v:+.{digits}f}"  # noqa: E731
  lo, hi = d["seed_ci95"]
  verdict = "**holds**" if d["holds"] else "**reversed**" if d["reversed"] else "not beyond noise"
  return (f"{num(d['mean'])}{unit} [{num(lo)}, {num(hi)}] ({d['seeds_in_direction']}/"
          f"{len(d['per_seed'])} seeds); {verdict}")


def markdown(results: dict[str, Any]) -> str:
  agg = results["aggregate"]
  seeds = agg["seeds"]
  lines = [f"Seeds {', '.join(map(str, seeds))}; {results['num_params']:,} parameters; "
           f"{results['tokens']['pretrain_per_arm']:,} pretraining + "
           f"{results['tokens']['finetune_per_arm']:,} fine-tuning tokens per arm and seed. "
           "pass@1: mean across seeds [95% t-interval across seeds] (per seed); pooled over all "
           "seeds' answers [95% Wilson].", "",
           "| pretraining data | stage | " + " | ".join(
               f"pass@1, {SETS[s]} (n={agg['cells']['pretrain'][ARMS[0]][s]['n'] // len(seeds)})"
               for s in agg["sets"]) + " |",
           "|---|---|" + "---|" * len(agg["sets"])]
  for stage in STAGES:
    for arm in ARMS:
      lines.append(f"| {ARM_LABELS[arm]} | {STAGE_LABELS[stage]} | " + " | ".join(
          _pass_cell(agg["cells"][stage][arm][s]) for s in agg["sets"]) + " |")
  lines += ["", "Paired differences (same seed, same problems): mean [95% t-interval across "
            "seeds] (seeds in the paper's direction); 'holds' = the interval excludes 0 in the "
            "paper's direction.", "",
            "| stage | measure | " + " | ".join(c[0] for c in COMPARISONS) + " |",
            "|---|---|" + "---|" * len(COMPARISONS)]
  for stage in STAGES:
    for key, d in agg["differences"][stage].items():
      label = f"pass@1, {SETS[key]}" if key in SETS else f"loss, {LOSSES[key]} (lower is better)"
      lines.append(f"| {STAGE_LABELS[stage]} | {label} | " + " | ".join(
          _diff_cell(d[c[0]], key in SETS) for c in COMPARISONS) + " |")
  lines += ["", "Held-out losses, nats per token: mean [95% t-interval across seeds] (per "
            "seed).", "",
            "| pretraining data | stage | " + " | ".join(LOSSES[k] for k in agg["loss_keys"])
            + " |", "|---|---|" + "---|" * len(agg["loss_keys"])]
  for stage in STAGES:
    for arm in ARMS:
      cells = []
      for k in agg["loss_keys"]:
        e = agg["losses"][stage][arm][k]
        lo, hi = e["seed_ci95"]
        cells.append(f"{e['mean']:.3f} [{lo:.3f}, {hi:.3f}] "
                     f"({', '.join(f'{v:.3f}' for v in e['per_seed'])})")
      lines.append(f"| {ARM_LABELS[arm]} | {STAGE_LABELS[stage]} | " + " | ".join(cells) + " |")
  lines += ["", "Fine-tune gain in pass@1 (after - before, paired by seed):", "",
            "| pretraining data | " + " | ".join(SETS[s] for s in agg["sets"]) + " |",
            "|---|" + "---|" * len(agg["sets"])]
  for arm in ARMS:
    lines.append(f"| {ARM_LABELS[arm]} | " + " | ".join(
        _diff_cell(agg["finetune_gains"][arm][s], True) for s in agg["sets"]) + " |")
  data = results.get("data") or {}
  if data:
    lines += ["", "Data (train splits; tokens with the shared tokenizer, + EOS per document):", "",
              "| set | documents | bytes | tokens |", "|---|---|---|---|"]
    for name, s in data["sets"].items():
      lines.append(f"| {name} | {s['train_documents']:,} | {s['train_bytes']:,} | "
                   f"{s['train_tokens']:,} |")
    lines += ["", "Decontamination (documents dropped; benchmarks: HumanEval, the hand-written "
              "problems, the held-out families' exercises):", "",
              "| pipeline | documents in | dropped | by benchmark | top items |",
              "|---|---|---|---|---|"]
    for name, d in data["decontam"].items():
      lines.append(f"| {name} | {d['documents_in']:,} | {d['flagged']:,} | "
                   f"{json.dumps(d['by_benchmark'])} | {json.dumps(d['by_item'])} |")
    checks = data["split_checks"]
    lines += ["", f"Split checks: {checks['heldout_exercises']} held-out exercises; their prompts "
              f"found verbatim in training text: {json.dumps(checks['prompts_found_verbatim'])}; "
              "exercise records with a held-out parameterisation: "
              f"{checks['exercise_records_with_heldout_key']}, of a held-out family: "
              f"{checks['exercise_records_of_heldout_families']}."]
  if results.get("wall_times"):
    total = sum(results["wall_times"].values())
    lines += ["", "Wall time (s): " + ", ".join(f"{k} {v}" for k, v in
                                              results["wall_times"].items())
              + f"; total {total} s ({total / 60:.1f} min)."]
  return "\n".join(lines) + "\n"


# ---- figure ------------------------------------------------------------------------------------

def _bars(ax: Any, entries: dict[str, dict[str, dict[str, Any]]], scale: float,
          fmt: str) -> tuple[float, float]:
  """Grouped bars: x groups = stages, one bar per arm; error bar = seed interval, dots = seeds.
  Returns the lowest and highest value drawn (interval ends and seeds)."""
  width = 0.26
  low, high = float("inf"), float("-inf")
  for k, arm in enumerate(ARMS):
    for g, stage in enumerate(STAGES):
      e = entries[stage][arm]
      x = g + (k - 1) * width
      mean = scale * e["mean"]
      lo, hi = (scale * v for v in e["seed_ci95"])
      if scale == 100:
        lo, hi = max(lo, 0.0), min(hi, 100.0)
      ax.bar(x, mean, width, color=COLORS[arm], edgecolor="black", linewidth=0.5,
             label=ARM_LABELS[arm] if g == 0 else None,
             yerr=[[mean - lo], [hi - mean]], capsize=3)
      ax.plot([x] * len(e["per_seed"]), [scale * v for v in e["per_seed"]], "o", color="black",
              markersize=2.5, zorder=3)
      ax.annotate(fmt.format(mean), (x, hi), ha="center", va="bottom", fontsize=7,
                  xytext=(0, 2), textcoords="offset points")
      seen = [lo, hi] + [scale * v for v in e["per_seed"]]
      low, high = min(low, *seen), max(high, *seen)
  ax.set_xticks(range(len(STAGES)), [STAGE_LABELS[s] for s in STAGES], fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  return low, high


def figure(results: dict[str, Any], path: pathlib.Path) -> None:
  from phi_jax.train.report import new_figure, save_figure  # pylint: disable=g-import-not-at-top
  agg = results["aggregate"]
  panels = [("pass", s) for s in ("validation", "test") if s in agg["sets"]]
  panels += [("loss", k) for k in ("stdlib", "exercise_validation") if k in agg["loss_keys"]]
  fig = new_figure((4.2 * len(panels), 4.0))
  axes = fig.subplots(1, len(panels), squeeze=False)[0]
  seeds = len(agg["seeds"])
  for ax, (kind, key) in zip(axes, panels):
    if kind == "pass":
      entries = {st: {a: agg["cells"][st][a][key] for a in ARMS} for st in STAGES}
      _, high = _bars(ax, entries, 100, "{:.1f}")
      n = agg["cells"]["pretrain"][ARMS[0]][key]["n"] // seeds
      ax.set_ylabel("pass@1 (%)")
      ax.set_ylim(0, max(5.0, 1.15 * high))  # a 0% cell stays visibly at the floor
      ax.set_title(f"pass@1, {SETS[key]} (n={n})", fontsize=9)
    else:
      entries = {st: {a: agg["losses"][st][a][key] for a in ARMS} for st in STAGES}
      low, high = _bars(ax, entries, 1, "{:.2f}")
      pad = 0.15 * max(high - low, 0.05)
      ax.set_ylim(low - pad, high + pad)  # the differences, not the distance from 0
      ax.set_ylabel("nats / token (axis not from 0)")
      ax.set_title(f"loss, {LOSSES[key]}", fontsize=9)
  axes[0].legend(fontsize=7, loc="upper left")
  fig.suptitle(f"phi-1 Figure 2.1 layout at CPU scale: the same "
               f"{results['num_params'] / 1e6:.2f}M-parameter model and tokens per arm, "
               f"{seeds} seeds (bars: mean; error bars: 95% t-interval across seeds; dots: "
               "seeds)", fontsize=9)
  save_figure(fig, path)


# ---- main --------------------------------------------------------------------------------------

def wall_times(path: pathlib.Path) -> dict[str, int]:
  """stage -> seconds from run.sh's wall_times.tsv (a stage run more than once, e.g. resumed:
  the sum of its lines, the wall time spent on it)."""
  out: dict[str, int] = {}
  if path.exists():
    for line in path.read_text().splitlines():
      name, _, seconds = line.partition("\t")
      if seconds.strip():
        out[name] = out.get(name, 0) + int(seconds)
  return out


def build(root: str, tiny: bool) -> dict[str, Any]:
  """results.json's content for the experiment in ROOT."""
  ev = _evaluate_module()
  rows = collect(ev.models(root, tiny))
  from phi_jax.config_args import load_config  # pylint: disable=g-import-not-at-top
  pre = load_config(ev._spec("pretrain", root, tiny))  # pylint: disable=protected-access
  fine = load_config(ev._spec("finetune", root, tiny))  # pylint: disable=protected-access
  tokens = lambda c: c.total_steps * c.data.batch_size * c.data.seq_len  # noqa: E731
  root_path = pathlib.Path(root)
  return {"experiment": "phi-1 (arXiv 2306.11644) Figure 2.1 data ablation, CPU scale",
          "arms": list(ARMS), "arm_labels": ARM_LABELS, "stages": list(STAGES),
          "set_labels": SETS, "loss_labels": LOSSES,
          "num_params": rows[0]["num_params"],
          "tokens": {"pretrain_per_arm": tokens(pre), "finetune_per_arm": tokens(fine),
                     "pretrain_steps": pre.total_steps, "finetune_steps": fine.total_steps,
                     "tokens_per_step": pre.data.batch_size * pre.data.seq_len},
          "aggregate": aggregate(rows), "models": rows,
          "data": _read(root_path / "data" / "data.json"),
          "wall_times": wall_times(root_path / "wall_times.tsv")}


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--root", required=True)
  parser.add_argument("--tiny", action="store_true")
  parser.add_argument("--out", default=str(HERE), help="results.json, results_table.md, "
                      "figure_2_1.png go here")
  args = parser.parse_args(argv)
  from phi_jax.curation.stages import write_json  # pylint: disable=g-import-not-at-top
  results = build(args.root, args.tiny)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  write_json(out / "results.json", results)
  text = markdown(results)
  tmp = out / "results_table.md.tmp"
  tmp.write_text(text)
  tmp.replace(out / "results_table.md")
  figure(results, out / "figure_2_1.png")
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
