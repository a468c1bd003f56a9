"""Evaluates the SkipDecode experiment on the tiny coder (run.sh): pass@1, held-out loss and
decode speed of every setting, for every fine-tune seed.

    python experiments/skipdecode/evaluate.py --root=workdirs/skipdecode_coder --seeds=0,1,2 \\
        --out=workdirs/skipdecode_coder/results.json

Runs: ROOT/base (the tiny coder) and ROOT/ft_<S>x_seed<k> (run.sh): the base fine-tuned on the
exercises with the S x schedule (S = 1: no skipping, the reference), data order seed k.

Problems (`phi_jax.curation.procedural.generate(n, seed=eval_seed, split=...)`, as the tiny
coder's study measures them):
  validation   unseen variants of the training families (constants, characters, words no
               training record has)
  test         whole held-out families (task types no training record has)

Settings, per seed k, all on the same problems, in the same batches:
  skipdecode Sx      ft_Sx_seed<k>, decoded with its schedule (S = 1: the full model)
  schedule-only Sx   ft_1x_seed<k> decoded with the Sx schedule, no skip fine-tuning
  calm T             ft_1x_seed<k> with CALM early exit (phi_jax.decoding.EarlyExit) at
                     confidence threshold T, an exit point after every layer
and once, `base`: the base model before fine-tuning, full depth.

Per setting, seed and set:
  pass@1     greedy completion (`measures.generate_all`: batches of `batch_size`, stop at EOS,
             `max_new_tokens`; a prompt keeps its last max_seq_len - max_new_tokens tokens,
             as `codegen.complete`), cut to the function body (`measures.function_bodies`, the cut
             of phi_jax.evals.functions), run against the exercise's asserts in the sandbox
             (`functions.evaluate`); with its 95% Wilson interval, the parse rate, and ROUGE-L
             of the body against the reference solution (a secondary, similarity measure)
  loss       held-out loss of the reference solutions (nats / target token, EOS included),
             teacher-forced under the setting's layer mask (what cached decoding with the
             schedule computes). Undefined for CALM: its depth depends on the confidence of the
             tokens it generates itself and on the rest of the batch.
Across seeds (`aggregate`): the mean pass@1 with its 95% t-interval over seeds
(`functions.seed_interval`), the pooled count with its Wilson interval, and the paired
difference from `skipdecode 1x` of the same seed: per seed, then its mean with the t-interval
over seeds, and pooled over every (seed, problem) pair with a normal 95% interval (mean +-
1.96 s.e.). The loss's paired difference likewise (over seeds).

Decode speed (`measures.decode_times`), on the models of the first seed (a schedule's cost does
not depend on the weights; CALM's does, through its exits): decode steps of the first batch of
validation prompts, exactly `speed_new_tokens` new tokens (no EOS), each round timing the setting
right next to `skipdecode 1x`; the median over `speed_reps` rounds and the quartiles. nominal =
L / the mean layers over those decode steps. `calm_at_matched_speed`: per Sx, the threshold
whose measured speedup is closest (in ratio).

CALM's confidence: --calm_confidence=argmax (the default) uses `measures.argmax_confidence`, the
library's value from two max reductions (XLA:CPU compiles lax.top_k inside the decode loop into a
full sort of each row, which would charge the baseline ~a layer per exit point); 'library' keeps
the library's. results.json is written atomically.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # measures.py
# Pinned to one CPU core (before jax is imported), as experiments/perf/ benchmarks are, unless
# --no_pin: the decode timings are then less disturbed by XLA's threads competing for the cores.
if __name__ == "__main__" and "--no_pin" not in sys.argv:
  sys.path.insert(0, os.path.join(HERE, "..", "perf"))
  from one_core import pin  # noqa: E402
  PINNED_CPU = pin()
else:
  PINNED_CPU = None

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from typing import Any, Optional, Sequence  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from measures import (argmax_confidence, calm_confidence, closest, code_tokens,  # noqa: E402,F401
                      decode_times, encode, function_bodies, generate_all, heldout_loss,
                      lcs_length, rouge_l, sem)
from phi_jax.decoding import generation, skipdecode  # noqa: E402
from phi_jax.decoding.early_exit import EarlyExit  # noqa: E402
from phi_jax.evals import functions  # noqa: E402
from phi_jax.train import checkpoint  # noqa: E402

SETS = ("validation", "test")
REFERENCE = "skipdecode 1x"


def label(speedup: float) -> str:
  return f"{speedup:g}x"


def problem_sets(n_validation: int, n_test: int, eval_seed: int) -> dict[str, list[Any]]:
  """The held-out exercises by set name (see the module doc); a set of size 0 is left out."""
  from phi_jax.curation import procedural  # pylint: disable=g-import-not-at-top
  sizes = {"validation": n_validation, "test": n_test}
  return {name: procedural.generate(n, seed=eval_seed, split=name)
          for name, n in sizes.items() if n}


# ---- statistics over problems and seeds ----------------------------------------------------------


def paired_interval(a: Sequence[float], b: Sequence[float], z: float = 1.96
                    ) -> tuple[float, float, float]:
  """(mean, lo, hi) of the paired differences a - b with a normal interval (mean +- z s.e.);
  the pairs are e.g. one problem's pass (0/1) under two settings."""
  if len(a) != len(b) or not a:
    raise ValueError(f"paired_interval needs two equally long non-empty lists, got {len(a)} and "
                     f"{len(b)}")
  diff = np.subtract(np.asarray(a, np.float64), np.asarray(b, np.float64))
  half = z * sem(diff)
  return float(diff.mean()), float(diff.mean() - half), float(diff.mean() + half)


def aggregate(per_seed: dict[int, dict[str, Any]], reference: dict[int, dict[str, Any]]
              ) -> dict[str, Any]:
  """One setting's per-seed results {seed: {'passes': [0/1 per problem], 'loss': float or
  None, 'parse_rate', 'rouge_l'}} of one set, next to the reference's of the same seeds -> the
  across-seed summary (see the module doc)."""
  seeds = sorted(per_seed)
  if sorted(reference) != seeds:
    raise ValueError(f"the reference has seeds {sorted(reference)}, the setting {seeds}")
  rates = [float(np.mean(per_seed[k]["passes"])) for k in seeds]
  passed = sum(int(np.sum(per_seed[k]["passes"])) for k in seeds)
  n = sum(len(per_seed[k]["passes"]) for k in seeds)
  mean, lo, hi = functions.seed_interval(rates)
  diffs = [rates[i] - float(np.mean(reference[k]["passes"])) for i, k in enumerate(seeds)]
  d_mean, d_lo, d_hi = functions.seed_interval(diffs)
  pooled = paired_interval([x for k in seeds for x in per_seed[k]["passes"]],
                           [x for k in seeds for x in reference[k]["passes"]])
  out = {"seeds": seeds, "pass@1": mean, "pass@1_per_seed": rates, "seed_ci95": [lo, hi],
         "pooled": [passed, n], "pooled_ci95": list(functions.wilson(passed, n)),
         "diff_vs_1x": d_mean, "diff_per_seed": diffs, "diff_seed_ci95": [d_lo, d_hi],
         "diff_pooled": pooled[0], "diff_pooled_ci95": [pooled[1], pooled[2]],
         "parse_rate": float(np.mean([per_seed[k]["parse_rate"] for k in seeds])),
         "rouge_l": float(np.mean([per_seed[k]["rouge_l"] for k in seeds])),
         "loss": None, "loss_diff_vs_1x": None, "loss_diff_seed_ci95": None}
  if all(per_seed[k]["loss"] is not None for k in seeds):
    losses = [per_seed[k]["loss"] for k in seeds]
    loss_diffs = [per_seed[k]["loss"] - reference[k]["loss"] for k in seeds]
    l_mean, l_lo, l_hi = functions.seed_interval(loss_diffs)
    out.update(loss=float(np.mean(losses)), loss_per_seed=losses, loss_diff_vs_1x=l_mean,
               loss_diff_seed_ci95=[l_lo, l_hi])
  return out


# ---- one model under one setting ----------------------------------------------------------------


def score_setting(cfg, params, tokenizer, sets: dict[str, dict[str, Any]], *, skip, early,
                  max_new_tokens: int, batch_size: int, workers: Optional[int]
                  ) -> dict[str, Any]:
  """pass@1, parse rate, ROUGE-L and held-out loss of one model under one setting on every set
  ({name: {'problems', 'prompts', 'rows'}}), and its mean layers per generated token."""
  eos = tokenizer.eos_id
  names = list(sets)
  prompts = [p for name in names for p in sets[name]["prompts"]]
  outputs, mean_layers = generate_all(cfg, params, prompts, max_new_tokens=max_new_tokens,
                                      eos_id=eos, batch_size=batch_size, skip=skip,
                                      early_exit=early)
  bodies = function_bodies(tokenizer, prompts, outputs, eos)
  out: dict[str, Any] = {"mean_layers": mean_layers,
                         "mean_new_tokens": float(np.mean([len(o) for o in outputs])),
                         "sets": {}}
  start = 0
  for name in names:
    problems = sets[name]["problems"]
    part = bodies[start:start + len(problems)]
    start += len(problems)
    result = functions.evaluate(problems, part, workers=workers)
    rows = result["problems"]
    loss = (heldout_loss(cfg, params, sets[name]["rows"], skip, batch_size=batch_size)
            if early is None else {"loss": None, "tokens": None})
    out["sets"][name] = {
        "passes": [int(r["passed"]) for r in rows], "pass@1": result["pass@1"],
        "passed": result["passed"], "n": result["n"], "ci95": list(result["ci95"]),
        "parse_rate": result["parse_rate"], "per_family": result["per_family"],
        "statuses": result["statuses"],
        "rouge_l": float(np.mean([rouge_l(b, p.solution) for b, p in zip(part, problems)])),
        "loss": loss["loss"], "loss_tokens": loss["tokens"], "bodies": part}
  return out


# ---- the experiment ------------------------------------------------------------------------------


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--root", default="workdirs/skipdecode_coder",
                 help="holds base/ and ft_<S>x_seed<k>/ (run.sh's workdirs)")
  p.add_argument("--speedups", default="1,2,3,5")
  p.add_argument("--seeds", default="0,1,2", help="fine-tune seeds (the first one is timed)")
  p.add_argument("--n_validation", type=int, default=192,
                 help="unseen-variant exercises (a multiple of --batch_size: no ragged batch)")
  p.add_argument("--n_test", type=int, default=96, help="held-out-family exercises")
  p.add_argument("--eval_seed", type=int, default=2024, help="which exercises (the study's)")
  p.add_argument("--max_new_tokens", type=int, default=128)
  p.add_argument("--batch_size", type=int, default=16)
  p.add_argument("--thresholds", default="0.1,0.03,0.01,0.003,0.001,0.0",
                 help="CALM confidence thresholds (top-1 minus top-2 probability)")
  p.add_argument("--speed_new_tokens", type=int, default=64)
  p.add_argument("--speed_reps", type=int, default=9)
  p.add_argument("--num_samples", type=int, default=3)
  p.add_argument("--workers", type=int, default=0, help="sandbox threads (0: CPUs)")
  p.add_argument("--calm_confidence", default="argmax", choices=["argmax", "library"],
                 help="see the module doc")
  p.add_argument("--no_pin", action="store_true", help="do not pin to one CPU core")
  p.add_argument("--out", default="results.json")
  return p.parse_args(argv)


def _write_json(path: str, obj: Any) -> None:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(obj, indent=1) + "\n")
  os.replace(tmp, path)


def _run_info(workdir: pathlib.Path) -> dict[str, Any]:
  if not (workdir / "summary.json").exists():
    raise FileNotFoundError(f"{workdir}/summary.json not found: run experiments/skipdecode/run.sh "
                            "(or the stage that trains it) first")
  config = json.loads((workdir / "config.json").read_text())
  summary = json.loads((workdir / "summary.json").read_text())
  return {"workdir": str(workdir), "steps": summary.get("step"),
          "final_train_loss": summary.get("final_loss"), "eval_loss": summary.get("eval_loss"),
          "seed": config.get("seed"), "config": config}


def _load(workdir: str):
  cfg, params, tokenizer = checkpoint.load_run(workdir)
  return cfg, jax.device_put(nn.unbox(params)), tokenizer


def ml_dict(section: Optional[dict[str, Any]]):
  """A config.json section as the ConfigDict-like mapping `skipdecode.from_config` reads."""
  if section is None:
    return None
  import ml_collections  # pylint: disable=g-import-not-at-top
  return ml_collections.ConfigDict(section)


def _settings(models: dict[float, tuple], schedules: dict[float, Any], thresholds: list[float]
              ) -> dict[str, tuple]:
  """name -> (kind, target speedup, params, skip, early_exit) for one seed's models."""
  params_1x = models[1.0][1]
  out: dict[str, tuple] = {}
  for s in models:
    out[f"skipdecode {label(s)}"] = ("skipdecode", s, models[s][1], schedules[s], None)
  for s in models:
    if s != 1.0:
      out[f"schedule-only {label(s)}"] = ("schedule_only", s, params_1x, schedules[s], None)
  for threshold in thresholds:
    out[f"calm {threshold:g}"] = ("calm", None, params_1x, None,
                                  EarlyExit(threshold, exit_layers=None, min_layers=1))
  return out


def main(args: argparse.Namespace) -> dict[str, Any]:
  wall_start = time.perf_counter()
  root = pathlib.Path(args.root)
  speedups = [float(s) for s in args.speedups.split(",")]
  seeds = [int(k) for k in args.seeds.split(",")]
  thresholds = [float(t) for t in args.thresholds.split(",") if t]
  if 1.0 not in speedups:
    raise ValueError("--speedups must include 1 (the fine-tuned full model: the reference)")
  runs = {k: {label(s): _run_info(root / f"ft_{label(s)}_seed{k}") for s in speedups}
          for k in seeds}
  base_info = _run_info(root / "base")
  seq_len = runs[seeds[0]]["1x"]["config"]["data"]["seq_len"]  # the rows of the held-out loss

  cfg, base_params, tokenizer = _load(str(root / "base"))
  sets = {}
  for name, problems in problem_sets(args.n_validation, args.n_test, args.eval_seed).items():
    prompts, rows = encode(tokenizer, [{"prompt": p.prompt, "target": p.solution}
                                       for p in problems], seq_len,
                           prompt_room=cfg.max_seq_len - args.max_new_tokens)
    sets[name] = {"problems": problems, "prompts": prompts, "rows": rows}
    print(f"{name}: {len(problems)} exercises; prompts of {min(map(len, prompts))}.."
          f"{max(map(len, prompts))} tokens", flush=True)
  common = dict(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                workers=args.workers or None)

  def report(name: str, scored: dict[str, Any], seconds: float) -> None:
    parts = [f"{s} {v['passed']}/{v['n']}" + ("" if v["loss"] is None else
                                              f" loss {v['loss']:.3f}")
             for s, v in scored["sets"].items()]
    print(f"{name:>18}: {'; '.join(parts)}; layers {scored['mean_layers']:.2f} ({seconds:.0f} s)",
          flush=True)

  start = time.perf_counter()
  base = score_setting(cfg, base_params, tokenizer, sets, skip=None, early=None, **common)
  report("base", base, time.perf_counter() - start)

  scored: dict[str, dict[int, dict[str, Any]]] = {}
  kinds: dict[str, tuple] = {}
  timing_settings = None
  for k in seeds:
    print(f"== fine-tune seed {k}", flush=True)
    models = {s: _load(runs[k][label(s)]["workdir"]) for s in speedups}
    schedules = {s: skipdecode.from_config(ml_dict(runs[k][label(s)]["config"].get("skip")),
                                           cfg.num_layers) for s in speedups}
    if schedules[1.0] is not None:
      raise ValueError(f"{runs[k]['1x']['workdir']} was trained with a skip schedule; the 1x "
                       "reference must have none")
    settings = _settings(models, schedules, thresholds)
    for name, (kind, target, params, skip, early) in settings.items():
      start = time.perf_counter()
      with calm_confidence(args.calm_confidence):
        result = score_setting(cfg, params, tokenizer, sets, skip=skip, early=early, **common)
      result["eval_s"] = time.perf_counter() - start
      report(name, result, result["eval_s"])
      scored.setdefault(name, {})[k] = result
      kinds[name] = (kind, target, skip, early)
    if timing_settings is None:
      timing_settings = {name: (params, skip, early)
                         for name, (_, _, params, skip, early) in settings.items()}

  print(f"timing decode steps (seed {seeds[0]}'s models)", flush=True)
  speed_prompts = sets[SETS[0] if SETS[0] in sets else next(iter(sets))]["prompts"]
  speed_prompts = speed_prompts[:args.batch_size]
  with calm_confidence(args.calm_confidence):
    timing = decode_times(cfg, timing_settings, speed_prompts,
                          new_tokens=args.speed_new_tokens,
                          out_len=generation.bucket(args.max_new_tokens), reps=args.speed_reps,
                          reference=REFERENCE)

  entries = []
  for name, (kind, target, skip, early) in kinds.items():
    t = timing[name]
    entry = {"name": name, "kind": kind, "target_speedup": target,
             "threshold": None if early is None else early.threshold,
             "mean_layers": float(np.mean([scored[name][k]["mean_layers"] for k in seeds])),
             "mean_new_tokens": float(np.mean([scored[name][k]["mean_new_tokens"]
                                               for k in seeds])),
             "step_ms": t["step_ms"], "measured_speedup": t["speedup"],
             "measured_speedup_iqr": [t["speedup_q25"], t["speedup_q75"]],
             "timing_rounds": t["rounds"], "timing_rounds_dropped": t["dropped"],
             "decode_layers": t["decode_layers"],
             "nominal_speedup": cfg.num_layers / t["decode_layers"],
             "eval_s": float(sum(scored[name][k]["eval_s"] for k in seeds))}
    if skip is not None:
      entry["schedule"] = {"max_layers": skip.max_layers, "min_layers": skip.min_layers,
                           "warmup_layers": skip.warmup_layers, "decay_len": skip.decay_len,
                           "nominal_over_decay_len": skip.nominal_speedup(skip.decay_len),
                           "describe": skip.describe()}
    entry["sets"] = {
        s: aggregate({k: scored[name][k]["sets"][s] for k in seeds},
                     {k: scored[REFERENCE][k]["sets"][s] for k in seeds}) for s in sets}
    entry["per_seed"] = {
        str(k): {"mean_layers": scored[name][k]["mean_layers"],
                 "sets": {s: {f: v for f, v in scored[name][k]["sets"][s].items()
                              if f not in ("passes", "bodies")}
                          | {"passes": "".join(map(str, scored[name][k]["sets"][s]["passes"]))}
                          for s in sets}} for k in seeds}
    entries.append(entry)

  calm = [e for e in entries if e["kind"] == "calm"]
  matched = {}
  for s in speedups:
    if s != 1.0:
      best = closest(calm, s)
      matched[label(s)] = None if best is None else best["name"]

  first = SETS[0] if SETS[0] in sets else next(iter(sets))
  samples = []
  for i, p in enumerate(sets[first]["problems"][:args.num_samples]):
    samples.append({"id": p.id, "family": p.family, "prompt": p.prompt, "reference": p.solution,
                    "outputs": {name: scored[name][seeds[0]]["sets"][first]["bodies"][i]
                                for name in kinds},
                    "passed": {name: scored[name][seeds[0]]["sets"][first]["passes"][i]
                               for name in kinds}})
  device = jax.devices()[0]
  result = {
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "task": "tinycoder",
      "machine": {"device": f"{device.platform}: {getattr(device, 'device_kind', '')}",
                  "cpu_count": os.cpu_count(), "pinned_cpu": PINNED_CPU,
                  "load_average_at_end": os.getloadavg(),
                  "python": platform.python_version(), "jax": jax.__version__,
                  "platform": platform.platform()},
      "args": vars(args),
      "model": {"num_layers": cfg.num_layers, "d_model": cfg.d_model, "vocab": cfg.vocab_size,
                "params": int(sum(x.size for x in jax.tree_util.tree_leaves(base_params)))},
      "runs": {str(k): {lab: {f: v for f, v in info.items() if f != "config"}
                        for lab, info in runs[k].items()} for k in seeds},
      "base": {"run": {f: v for f, v in base_info.items() if f != "config"},
               "mean_layers": base["mean_layers"],
               "sets": {s: {f: v for f, v in base["sets"][s].items() if f != "bodies"}
                        | {"passes": "".join(map(str, base["sets"][s]["passes"]))}
                        for s in sets}},
      "sets": {s: {"n": len(sets[s]["problems"]),
                   "families": sorted({p.family for p in sets[s]["problems"]}),
                   "target_tokens_mean": float(np.mean([r[:, 2].sum() for r in sets[s]["rows"]])),
                   "prompt_tokens_mean": float(np.mean([len(p) for p in sets[s]["prompts"]]))}
               for s in sets},
      "notes": {
          "pass@1": "greedy body run against its asserts; per set: mean over seeds with the 95% "
                    "t-interval over seeds (seed_ci95), pooled count with its Wilson interval",
          "diff_vs_1x": "paired difference of pass@1 from 'skipdecode 1x' of the same seed: "
                        "mean over seeds (diff_seed_ci95: t-interval over seeds) and pooled over "
                        "(seed, problem) pairs (diff_pooled_ci95: mean +- 1.96 s.e.)",
          "loss": "nats per target token (EOS included) of the reference solutions, "
                  "teacher-forced under the setting's layer mask; null for CALM",
          "measured_speedup": f"seed {seeds[0]}'s models: median over {args.speed_reps} rounds "
                              "of the decode step time of 'skipdecode 1x' / the setting's, timed "
                              f"next to each other; batch of {len(speed_prompts)} prompts, "
                              f"{args.speed_new_tokens} new tokens, no EOS, decode steps only",
          "nominal_speedup": "num_layers / mean layers over the timed decode steps",
          "mean_layers": "layers per generated token over the quality generations (g_0 from the "
                         "full-depth prompt pass counts as L), mean over seeds",
          "calm_confidence": f"{args.calm_confidence} (see evaluate.py's module doc)",
      },
      "settings": entries,
      "calm_at_matched_speed": matched,
      "compiled_programs": generation.compiled_programs(),
      "samples": samples,
  }
  result["wall_s"] = time.perf_counter() - wall_start
  _write_json(args.out, result)
  print(f"wrote {args.out} ({result['wall_s']:.0f} s)", flush=True)
  return result


if __name__ == "__main__":
  sys.exit(0 if main(_parse()) else 1)
