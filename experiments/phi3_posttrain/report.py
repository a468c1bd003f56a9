"""phi-3-style post-training of the tiny coder: pass@1 at each stage across seeds, reward margins.

    bash experiments/phi3_posttrain/run.sh          # writes ROOT/seed=N/{base,sft,prefs,dpo}
    python experiments/phi3_posttrain/report.py --root=ROOT [--out=experiments/phi3_posttrain]

For every seed folder ROOT/seed=N and every stage whose model exists, pass@1 of greedy replies on
`--n` held-out exercises (the 'validation' split: unseen variants of the trained task shapes,
seed `--eval_seed`; the same set the post-training data is decontaminated against):
  base/native  the base prompted as it was trained: signature + docstring, it writes the body
  base/chat    the base prompted in the phi-3 chat format (it has never seen that format)
  sft/chat     after SFT on chat-formatted held-in exercises
  dpo/chat     after DPO on execution-verified pairs sampled from the SFT model
Each (seed, stage) result is cached in ROOT/seed=N/eval/<stage>_<prompt>.json with the model's
fingerprint and the settings (rerunning re-evaluates only what changed). Across seeds: the mean
with a 95% Student-t interval (`seed_interval`), the pooled Wilson interval, and the per-seed
differences between consecutive stages with their t-interval (a lift is beyond the noise when
that interval excludes 0). DPO's train / held-out metrics (reward margin, accuracy, loss) come
from ROOT/seed=N/dpo/metrics.jsonl and are plotted to OUT/curves.png. Writes OUT/results.json
and OUT/results.md.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any, Optional

from phi_jax.curation import preferences, procedural
from phi_jax.curation.stages import write_json
from phi_jax.evals import functions

STAGES = (("base", "native"), ("base", "chat"), ("sft", "chat"), ("dpo", "chat"))
LIFTS = ((("sft", "chat"), ("base", "native")), (("sft", "chat"), ("base", "chat")),
         (("dpo", "chat"), ("sft", "chat")), (("dpo", "chat"), ("base", "native")))
CURVE_KEYS = ("reward_margin", "reward_accuracy", "loss", "eval_loss")


def _model_dir(seed_dir: pathlib.Path, stage: str) -> Optional[pathlib.Path]:
  path = seed_dir / stage
  return path if (path / "checkpoints").is_dir() else None


def evaluate_stage(model_dir: pathlib.Path, prompt: str, exercises: list[Any],
                   args: argparse.Namespace) -> dict[str, Any]:
  """pass@1 of one model on the exercises, prompted natively or in the chat format."""
  from phi_jax.convert.load import load_model  # pylint: disable=g-import-not-at-top
  model = load_model(model_dir, require_tokenizer=True)
  if prompt == "native":
    bodies = functions.complete_bodies(model.cfg, model.params, model.tokenizer,
                                       [ex.prompt for ex in exercises],
                                       max_new_tokens=args.max_new_tokens,
                                       batch_size=args.batch_size)
    result = functions.evaluate(exercises, bodies, workers=args.workers or None)
  else:
    result = preferences.evaluate_chat(model.cfg, model.params, model.tokenizer, exercises,
                                       max_new_tokens=args.max_new_tokens,
                                       batch_size=args.batch_size, workers=args.workers or None)
  rows = result.pop("problems")
  result["samples"] = [{"id": r["id"], "completion": r["completion"], "passed": r["passed"]}
                       for r in rows[:3]]
  result["passed_ids"] = [r["id"] for r in rows if r["passed"]]
  result["step"] = model.step
  return result


def seed_results(seed_dir: pathlib.Path, exercises: list[Any], args: argparse.Namespace,
                 log=print) -> dict[str, dict[str, Any]]:
  """'stage/prompt' -> the (cached) evaluation of that seed's model."""
  out = {}
  settings = {"n": args.n, "eval_seed": args.eval_seed, "max_new_tokens": args.max_new_tokens,
              "procedural_version": procedural.VERSION}
  for stage, prompt in STAGES:
    model_dir = _model_dir(seed_dir, stage)
    if model_dir is None:
      continue
    key = dict(settings, model=preferences.model_fingerprint(model_dir), prompt=prompt)
    cache = seed_dir / "eval" / f"{stage}_{prompt}.json"
    cached = json.loads(cache.read_text()) if cache.exists() else None
    if cached is None or cached.get("key") != key:
      log(f"evaluating {model_dir} ({prompt} prompts, {len(exercises)} exercises)")
      cached = {"key": key, "result": evaluate_stage(model_dir, prompt, exercises, args)}
      cache.parent.mkdir(parents=True, exist_ok=True)
      write_json(cache, cached)
    out[f"{stage}/{prompt}"] = cached["result"]
  return out


def dpo_curves(seed_dir: pathlib.Path) -> dict[str, list[list[float]]]:
  """metric -> [[step, value], ...] from the DPO run's metrics.jsonl."""
  path = seed_dir / "dpo" / "metrics.jsonl"
  curves: dict[str, list[list[float]]] = {k: [] for k in CURVE_KEYS}
  if not path.exists():
    return curves
  for line in path.read_text().splitlines():
    row = json.loads(line) if line.strip() else {}
    for k in CURVE_KEYS:
      if k in row:
        curves[k].append([row["step"], row[k]])
  return curves


def _read_json(path: pathlib.Path) -> Optional[dict[str, Any]]:
  return json.loads(path.read_text()) if path.exists() else None


def aggregate(per_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
  seeds = sorted(per_seed)
  out: dict[str, Any] = {"seeds": seeds, "stages": {}, "lifts": {}}
  for stage, prompt in STAGES:
    name = f"{stage}/{prompt}"
    rows = [per_seed[s]["eval"].get(name) for s in seeds]
    if any(r is None for r in rows):
      continue
    mean, lo, hi = functions.seed_interval([r["pass@1"] for r in rows])
    passed, n = sum(r["passed"] for r in rows), sum(r["n"] for r in rows)
    out["stages"][name] = {"per_seed": [r["pass@1"] for r in rows], "mean": mean,
                           "seed_ci95": [lo, hi], "passed": passed, "n": n,
                           "pooled_wilson95": list(functions.wilson(passed, n)),
                           "per_seed_wilson95": [list(r["ci95"]) for r in rows],
                           "parse_rate_per_seed": [r["parse_rate"] for r in rows]}
  for after, before in LIFTS:
    a, b = "/".join(after), "/".join(before)
    if a in out["stages"] and b in out["stages"]:
      diffs = [x - y for x, y in zip(out["stages"][a]["per_seed"], out["stages"][b]["per_seed"])]
      mean, lo, hi = functions.seed_interval(diffs)
      out["lifts"][f"{a} - {b}"] = {"per_seed": diffs, "mean": mean, "seed_ci95": [lo, hi],
                                   "beyond_noise": len(diffs) > 1 and lo > 0}
  out["preferences"] = {s: per_seed[s]["preferences"] for s in seeds}
  out["sft_summary"] = {s: per_seed[s]["sft_summary"] for s in seeds}
  out["dpo_summary"] = {s: per_seed[s]["dpo_summary"] for s in seeds}
  out["dpo_curves"] = {s: per_seed[s]["dpo_curves"] for s in seeds}
  return out


def markdown(agg: dict[str, Any], n: int) -> str:
  pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
  lines = [f"Seeds {', '.join(map(str, agg['seeds']))}; pass@1 of greedy replies on {n} held-out "
           "exercises (unseen variants). Mean [95% t-interval across seeds] (per seed); pooled "
           "[95% Wilson].", "", "| stage / prompt | pass@1 | parses |", "|---|---|---|"]
  one_seed = len(agg["seeds"]) < 2
  for name, e in agg["stages"].items():
    lo, hi = e["seed_ci95"]
    plo, phi = e["pooled_wilson95"]
    ci = "[one seed: no interval]" if one_seed else f"[{pct(max(lo, 0))}, {pct(min(hi, 1))}]"
    lines.append(f"| {name} | {pct(e['mean'])}% {ci} "
                 f"({', '.join(pct(v) for v in e['per_seed'])}); pooled {e['passed']}/{e['n']} "
                 f"[{pct(plo)}, {pct(phi)}] | "
                 f"{', '.join(f'{100 * v:.0f}%' for v in e['parse_rate_per_seed'])} |")
  lines += ["", "| lift | mean [95% t-interval] (per seed) | beyond the noise |", "|---|---|---|"]
  for name, e in agg["lifts"].items():
    lo, hi = e["seed_ci95"]
    ci = "[one seed: no interval]" if one_seed else f"[{pct(lo)}, {pct(hi)}]"
    verdict = "cannot say (one seed)" if one_seed else ("yes" if e["beyond_noise"] else "no")
    lines.append(f"| {name} | {pct(e['mean'])} pt {ci} "
                 f"({', '.join(pct(v) for v in e['per_seed'])}) | {verdict} |")
  lines += ["", "| seed | prompts | samples | sample pass rate | prompts with both | pairs "
            "(reference chosen) | pairs flagged | DPO final reward margin / accuracy |",
            "|---|---|---|---|---|---|---|---|"]
  for s in agg["seeds"]:
    p = agg["preferences"][s] or {}
    curves = agg["dpo_curves"][s]
    last = lambda k: curves[k][-1][1] if curves.get(k) else float("nan")  # noqa: E731
    lines.append(f"| {s} | {p.get('prompts', '-')} | {p.get('samples', '-')} | "
                 f"{pct(p.get('sample_pass_rate', float('nan')))}% | "
                 f"{p.get('prompts_with_both', '-')} | {p.get('pairs', '-')} "
                 f"({p.get('pairs_reference_chosen', '-')}) | {p.get('pairs_flagged', '-')} | "
                 f"{last('reward_margin'):.3f} / {last('reward_accuracy'):.2f} |")
  return "\n".join(lines) + "\n"


def plot(agg: dict[str, Any], path: pathlib.Path) -> bool:
  """Train reward margin and accuracy, and held-out DPO loss, per seed -> path (PNG)."""
  if not any(c["reward_margin"] for c in agg["dpo_curves"].values()):
    return False
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  for s, curves in agg["dpo_curves"].items():
    for ax, key in zip(axes, ("reward_margin", "reward_accuracy", "eval_loss")):
      if curves[key]:
        steps, values = zip(*curves[key])
        ax.plot(steps, values, marker="." if key == "eval_loss" else None, label=f"seed {s}")
  for ax, title in zip(axes, ("train reward margin (beta * log-ratio gap)",
                              "train reward accuracy", "held-out DPO loss")):
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("DPO step")
    ax.grid(alpha=0.3)
  axes[0].axhline(0, color="grey", lw=0.8)
  axes[2].axhline(0.6931, color="grey", lw=0.8, ls="--")  # log 2: policy = reference
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--root", required=True, help="run.sh's ROOT (holds seed=N/ folders)")
  p.add_argument("--out", default=str(pathlib.Path(__file__).parent))
  p.add_argument("--n", type=int, default=300, help="held-out exercises")
  p.add_argument("--eval_seed", type=int, default=2024)
  p.add_argument("--max_new_tokens", type=int, default=128)
  p.add_argument("--batch_size", type=int, default=50)
  p.add_argument("--workers", type=int, default=0)
  args = p.parse_args(argv)
  root, out = pathlib.Path(args.root), pathlib.Path(args.out)
  seed_dirs = sorted(root.glob("seed=*"), key=lambda d: int(d.name.split("=", 1)[1]))
  if not seed_dirs:
    raise SystemExit(f"no seed=N folders under {root}: run experiments/phi3_posttrain/run.sh")
  exercises = procedural.generate(args.n, seed=args.eval_seed, split="validation")
  per_seed = {}
  for d in seed_dirs:
    per_seed[int(d.name.split("=", 1)[1])] = {
        "eval": seed_results(d, exercises, args),
        "preferences": _read_json(d / "prefs" / "preferences" / "counts.json"),
        "sft_summary": _read_json(d / "sft" / "summary.json"),
        "dpo_summary": _read_json(d / "dpo" / "summary.json"),
        "dpo_curves": dpo_curves(d)}
  agg = aggregate(per_seed)
  agg["settings"] = {"n": args.n, "eval_seed": args.eval_seed,
                     "max_new_tokens": args.max_new_tokens, "split": "validation",
                     "root": str(root)}
  agg["per_seed"] = {s: {k: {kk: vv for kk, vv in v.items() if kk != "isolation"}
                         for k, v in r["eval"].items()} for s, r in per_seed.items()}
  out.mkdir(parents=True, exist_ok=True)
  write_json(out / "results.json", agg)
  text = markdown(agg, args.n)
  (out / "results.md").write_text(text)
  if plot(agg, out / "curves.png"):
    text += f"\nReward-margin curves: {out / 'curves.png'}\n"
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
