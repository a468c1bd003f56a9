"""Analyses the phi3_scaling sweep: laws per mixture, the frontier, the phi claim, the holdout.

    python experiments/phi3_scaling/analyse.py DIR [--out experiments/phi3_scaling]
        [--bootstrap 200] [--no_cross]

DIR is the sweep's directory (`python -m phi_jax.sweep --config=configs/phi3_scaling.py
--workdir=DIR ...`). Reads every run's evaluations (metrics.jsonl: the held-out loss on its own
mixture; the config evaluates once, at the end of each run's budget, so one point per run, its
learning rate decayed to that budget) as points (N, D, loss) and writes to --out:

  results.json  `fit` per mixture (E, A, B, alpha, beta, each with a 90% bootstrap interval over
                runs; the runs fit), `holdout` (the textbook mixture's held-out size:
                {mixture, params, tokens, predicted_loss, predicted_interval, measured_loss,
                error}; `holdouts` has both mixtures'), `runs` (one row each), `equal_compute`
                (textbook vs raw at the same N and D, on each held-out set), `frontier`
  scaling.png   held-out loss against N (one line per budget), D and compute, per mixture, with
                the fitted law and its compute-optimal frontier
  table.md      the runs, with the fitted loss and the error of each

Cross-evaluation (unless --no_cross): every run is also scored on both mixtures' held-out sets
(the first documents of each validation split, cut to --cross_chars characters), cached in
DIR/<run>/cross_eval.json, so "textbook below raw" can be checked on the same text, not only on
each mixture's own (more predictable) held-out set.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

import numpy as np

from phi_jax import sweep, sweep_table
from phi_jax.study import scaling

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "phi3_scaling.py"
KEYS = ("E", "A", "B", "alpha", "beta")


def collect(workdir: pathlib.Path, spec: str) -> list[dict[str, Any]]:
  """One row per (run, evaluation): tags, params, tokens (D at that evaluation), compute,
  eval_loss, the run's status; `final` marks a run's last evaluation."""
  rows = []
  for run in sweep.plan_sweep(spec, workdir):
    run.status = "done" if sweep_table.is_finished(run.workdir, run.total_steps) else "not finished"
    row = sweep_table.result_row(run)
    evals = row.get("evals") or []
    for i, (tokens, loss) in enumerate(evals):
      rows.append({"run": run.slug, "mixture": run.tags["mixture"], "size": run.tags["size"],
                   "holdout": bool(run.tags.get("holdout")), "params": row["params"],
                   "tokens": tokens, "compute": 6.0 * row["params"] * tokens,
                   "eval_loss": loss, "status": "done",
                   "final": i == len(evals) - 1 and run.status == "done",
                   "run_status": run.status, "workdir": str(run.workdir)})
    if not evals:
      rows.append({"run": run.slug, "mixture": run.tags["mixture"], "size": run.tags["size"],
                   "holdout": bool(run.tags.get("holdout")), "params": row["params"],
                   "tokens": row["tokens"], "compute": row["compute"], "eval_loss": None,
                   "status": "not run", "final": False, "run_status": run.status,
                   "workdir": str(run.workdir)})
  return rows


def _held_out_texts(workdir: pathlib.Path, chars: int, docs: int) -> dict[str, list[str]]:
  """The first `docs` documents of each mixture's validation split, cut to `chars`."""
  from phi_jax.evals import perplexity  # pylint: disable=g-import-not-at-top
  from phi_jax.train import inputs  # pylint: disable=g-import-not-at-top
  from phi_jax.config_args import load_config  # pylint: disable=g-import-not-at-top
  out = {}
  for mixture in ("raw", "textbook"):
    data = load_config(f"{CONFIG}:mixture={mixture}").data
    if mixture == "textbook":
      data.source_dir = str(workdir / "mixture" / "dataset")
    kwargs = inputs._builder_kwargs(data)  # pylint: disable=protected-access
    texts = perplexity.dataset_texts(data.dataset, workdir / "data", split="validation",
                                     limit=docs, builder_kwargs=kwargs)
    out[mixture] = [t[:chars] for t in texts if t.strip()]
  return out


def cross_evaluate(rows: list[dict[str, Any]], workdir: pathlib.Path, chars: int,
                   docs: int) -> None:
  """Adds loss_on_raw / loss_on_textbook (nats per token) to every finished row (cached)."""
  from phi_jax.convert.load import load_model  # pylint: disable=g-import-not-at-top
  from phi_jax.evals import perplexity  # pylint: disable=g-import-not-at-top
  texts = None
  for row in rows:
    if not row["final"]:
      continue
    path = pathlib.Path(row["workdir"]) / "cross_eval.json"
    settings = {"chars": chars, "docs": docs}
    cached = json.loads(path.read_text()) if path.exists() else {}
    if cached.get("settings") != settings:
      texts = texts or _held_out_texts(workdir, chars, docs)
      model = load_model(row["workdir"])
      cached = {"settings": settings}
      for mixture, batch in texts.items():
        result = perplexity.evaluate_texts(model.cfg, model.params, model.tokenizer, batch,
                                           seq_len=128, batch_size=16)
        cached[mixture] = {"loss": result["loss"], "tokens": result["tokens"]}
      path.write_text(json.dumps(cached, indent=1) + "\n")
      print(f"[cross] {row['run']}: raw {cached['raw']['loss']:.4f}, textbook "
            f"{cached['textbook']['loss']:.4f}", flush=True)
    row["loss_on_raw"] = cached["raw"]["loss"]
    row["loss_on_textbook"] = cached["textbook"]["loss"]


def fit_mixture(rows: list[dict[str, Any]], mixture: str, metric: str,
                samples: int) -> dict[str, Any]:
  """The law of one mixture over its finished non-holdout runs, with bootstrap intervals."""
  used = [r for r in rows if r["mixture"] == mixture and not r["holdout"]
          and r["status"] == "done" and isinstance(r.get(metric), float)]
  n, d, l = ([r[k] for r in used] for k in ("params", "tokens", metric))
  law = scaling.fit(n, d, l)
  laws = scaling.bootstrap(n, d, l, samples=samples, seed=0) if samples else []
  out: dict[str, Any] = {"metric": metric, **law.as_dict(), "runs": [r["run"] for r in used]}
  if laws:
    out["interval90"] = {k: scaling.interval([getattr(x, k) for x in laws]) for k in KEYS}
  out["bootstrap_samples"] = len(laws)
  out["_laws"] = laws
  residuals = np.asarray(l) / law.predict(n, d) - 1
  out["fit_rms_error"] = float(np.sqrt(np.mean(residuals ** 2)))
  return out


def holdout(rows: list[dict[str, Any]], fits: dict[str, Any], mixture: str) -> dict[str, Any]:
  """The fit's prediction for the mixture's held-out run, and the measured loss."""
  held = [r for r in rows if r["mixture"] == mixture and r["holdout"]]
  if not held:
    return {}
  r = max(held, key=lambda x: (x["status"] == "done", x["tokens"]))  # its largest budget
  if r["status"] != "done":
    r = dict(r, tokens=max(x["tokens"] for x in held))
  law = scaling.Law(**{k: fits[mixture][k] for k in KEYS})
  predicted = float(law.predict(r["params"], r["tokens"]))
  out = {"mixture": mixture, "run": r["run"], "params": r["params"], "tokens": r["tokens"],
         "predicted_loss": predicted,
         "measured_loss": r["eval_loss"] if r["status"] == "done" else None,
         "all_budgets": [{"tokens": x["tokens"], "measured_loss": x["eval_loss"],
                          "predicted_loss": float(law.predict(x["params"], x["tokens"]))}
                         for x in held if x["status"] == "done"]}
  laws = fits[mixture]["_laws"]
  if laws:
    out["predicted_interval90"] = scaling.interval([x.predict(r["params"], r["tokens"])
                                                    for x in laws])
  out["run_status"] = r["run_status"]
  if out["measured_loss"] is not None:
    out["error"] = out["measured_loss"] / predicted - 1
  else:
    out["status"] = "not run yet: rerun the sweep command"
  return out


def equal_compute(rows: list[dict[str, Any]]) -> dict[str, Any]:
  """Textbook minus raw loss for runs of the same size and budget (so the same compute), on each
  mixture's own held-out set and, with cross-evaluation, on each of the two sets."""
  pairs = {}
  for r in rows:
    if r["status"] == "done":
      pairs.setdefault((r["size"], r["tokens"]), {})[r["mixture"]] = r
  out: dict[str, Any] = {"pairs": []}
  for (size, tokens), by in sorted(pairs.items(), key=lambda kv: kv[1].get("raw", {})
                                   .get("compute", 0)):
    if set(by) != {"raw", "textbook"}:
      continue
    item = {"size": size, "tokens": tokens, "compute": by["raw"]["compute"],
            "own": by["textbook"]["eval_loss"] - by["raw"]["eval_loss"]}
    for key in ("loss_on_raw", "loss_on_textbook"):
      if by["raw"].get(key) is not None and by["textbook"].get(key) is not None:
        item[key] = by["textbook"][key] - by["raw"][key]
    out["pairs"].append(item)
  for key in ("own", "loss_on_raw", "loss_on_textbook"):
    diffs = [p[key] for p in out["pairs"] if key in p]
    if diffs:
      out[key] = {"mean_difference": float(np.mean(diffs)), "min": float(np.min(diffs)),
                  "max": float(np.max(diffs)), "textbook_lower": sum(x < 0 for x in diffs),
                  "pairs": len(diffs)}
  return out


def plot(rows: list[dict[str, Any]], fits: dict[str, Any], path: pathlib.Path) -> None:
  from matplotlib.ticker import NullFormatter  # pylint: disable=g-import-not-at-top
  from phi_jax.train.report import new_figure, save_figure  # pylint: disable=g-import-not-at-top
  fig = new_figure((15, 8.5))
  axes = fig.subplots(2, 3)
  colors = {"raw": "tab:red", "textbook": "tab:blue"}
  for i, mixture in enumerate(("raw", "textbook")):
    if mixture not in fits:
      continue
    law = scaling.Law(**{k: fits[mixture][k] for k in KEYS})
    mine = [r for r in rows if r["mixture"] == mixture and r["status"] == "done"]
    budgets = sorted({r["tokens"] for r in mine if not r["holdout"]})
    ax = axes[i, 0]
    for j, d in enumerate(budgets):
      pts = sorted((r["params"], r["eval_loss"]) for r in mine if r["tokens"] == d
                   and not r["holdout"])
      n_grid = np.geomspace(min(p for p, _ in pts) / 1.5, 4e6, 50)
      line, = ax.plot(*zip(*pts), "o", label=f"D={d / 1e6:.2f}M")
      ax.plot(n_grid, law.predict(n_grid, d), "-", color=line.get_color(), alpha=0.6)
    for r in mine:
      if r["holdout"]:
        ax.plot(r["params"], r["eval_loss"], "*", ms=14, color="k",
                label=f"held out (D={r['tokens'] / 1e6:.2f}M)")
    ax.set_xscale("log")
    ax.set_xlabel("non-embedding parameters N")
    ax.set_ylabel(f"{mixture}: held-out loss")
    ax.legend(fontsize=7)
    ax = axes[i, 1]
    sizes = sorted({r["params"] for r in mine if not r["holdout"]})
    for n in sizes:
      pts = sorted((r["tokens"], r["eval_loss"]) for r in mine if r["params"] == n)
      d_grid = np.geomspace(min(p for p, _ in pts) / 1.5, max(p for p, _ in pts) * 3, 50)
      line, = ax.plot(*zip(*pts), "o", label=f"N={n / 1e6:.2f}M")
      ax.plot(d_grid, law.predict(n, d_grid), "-", color=line.get_color(), alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("training tokens D")
    ax.legend(fontsize=7)
    ax = axes[i, 2]
    c = np.array([r["compute"] for r in mine])
    ax.scatter(c, [r["eval_loss"] for r in mine], c=np.log([r["params"] for r in mine]),
               cmap="viridis", s=25)
    c_grid = np.geomspace(c.min(), c.max(), 60)  # the measured range only
    ax.plot(c_grid, law.frontier(c_grid), "-", color=colors[mixture],
            label=f"{mixture}: fitted frontier")
    other = "textbook" if mixture == "raw" else "raw"
    if other in fits:
      law_o = scaling.Law(**{k: fits[other][k] for k in KEYS})
      ax.plot(c_grid, law_o.frontier(c_grid), "--", color=colors[other],
              label=f"{other}: fitted frontier (its own held-out set)")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("compute C = 6 N D (FLOPs); colour: log N")
    ax.legend(fontsize=7)
  fig.suptitle("phi3_scaling: held-out loss of each mixture on its own held-out split; "
               "lines: L(N, D) = E + A/N^alpha + B/D^beta fit per mixture")
  save_figure(fig, path)


def table(rows: list[dict[str, Any]], fits: dict[str, Any]) -> str:
  lines = ["| mixture | size | params | tokens | compute | held-out loss | fitted | error | "
           "on raw | on textbook | status |", "|" + "---|" * 11]
  for r in rows:
    fit = fits.get(r["mixture"])
    fitted = (float(scaling.Law(**{k: fit[k] for k in KEYS}).predict(r["params"], r["tokens"]))
              if fit else None)
    loss = r.get("eval_loss") if r["status"] == "done" else None
    cell = lambda v, f=".4f": "" if v is None else format(v, f)  # noqa: E731
    size = r["size"] + (" (held out)" if r["holdout"] else "")
    lines.append(f"| {r['mixture']} | {size} | {r['params']:,} | {r['tokens']:,} | "
                 f"{r['compute']:.2e} | {cell(loss)} | {cell(fitted)} | "
                 f"{cell(None if None in (loss, fitted) else 100 * (loss / fitted - 1), '+.1f')}"
                 f"{'' if None in (loss, fitted) else '%'} | {cell(r.get('loss_on_raw'))} | "
                 f"{cell(r.get('loss_on_textbook'))} | {r['status']} |")
  return "\n".join(lines) + "\n"


def summary_md(results: dict[str, Any]) -> str:
  """The fits, the holdout and the equal-compute comparison as markdown (for RESULTS.md)."""
  lines = ["| mixture | E | A | alpha | B | beta | points | rms error of the fit |",
           "|---|---|---|---|---|---|---|---|"]
  for m, f in results["fit"].items():
    iv = f.get("interval90", {})
    cell = lambda k, fmt: (f"{f[k]:{fmt}}" + (f" [{iv[k][0]:{fmt}}, {iv[k][1]:{fmt}}]"  # noqa: E731
                                              if k in iv else ""))
    lines.append(f"| {m} | {cell('E', '.3f')} | {cell('A', '.3g')} | {cell('alpha', '.3f')} | "
                 f"{cell('B', '.3g')} | {cell('beta', '.3f')} | {f['n_runs']} | "
                 f"{100 * f['fit_rms_error']:.2f}% |")
  for m, err in results.get("fit_errors", {}).items():
    lines.append(f"| {m} | no fit: {err} |||||||")
  out = ["Fitted laws (90% bootstrap intervals over points, "
         f"{next(iter(results['fit'].values()), {}).get('bootstrap_samples', 0)} refits):", "",
         *lines, ""]
  for m, h in results["holdouts"].items():
    if not h:
      continue
    iv = h.get("predicted_interval90")
    pred = f"{h['predicted_loss']:.4f}" + (f" (90%: {iv[0]:.4f}-{iv[1]:.4f})" if iv else "")
    if h.get("measured_loss") is None:
      out.append(f"- holdout {m} ({h['run']}, N={h['params']:,}, D={h['tokens']:,}): predicted "
                 f"{pred}; NOT MEASURED (run {h['run_status']})")
    else:
      out.append(f"- holdout {m} ({h['run']}, N={h['params']:,}, D={h['tokens']:,}): predicted "
                 f"{pred}, measured {h['measured_loss']:.4f}: error {100 * h['error']:+.2f}%"
                 + ("" if h["run_status"] == "done" else f" (run {h['run_status']})"))
      for b in h.get("all_budgets", []):
        out.append(f"  - at D={b['tokens']:,}: predicted {b['predicted_loss']:.4f}, measured "
                   f"{b['measured_loss']:.4f} ({100 * (b['measured_loss'] / b['predicted_loss'] - 1):+.2f}%)")
  eq = results["equal_compute"]
  names = {"own": "each on its own mixture's held-out split",
           "loss_on_raw": "both on raw's held-out text (final models)",
           "loss_on_textbook": "both on textbook's held-out text (final models)"}
  out += ["", "Textbook minus raw held-out loss at equal (N, D), i.e. equal compute:", ""]
  for key, name in names.items():
    if key in eq:
      e = eq[key]
      out.append(f"- {name}: mean {e['mean_difference']:+.3f} nats/token (range "
                 f"{e['min']:+.3f} to {e['max']:+.3f}); textbook lower in {e['textbook_lower']} "
                 f"of {e['pairs']} pairs")
  return "\n".join(out) + "\n"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("workdir", help="the sweep's directory")
  parser.add_argument("--out", default=str(ROOT / "experiments" / "phi3_scaling"))
  parser.add_argument("--config", default=str(CONFIG), help="configs/phi3_scaling.py[:ARG]")
  parser.add_argument("--bootstrap", type=int, default=200, help="refits for the intervals")
  parser.add_argument("--no_cross", action="store_true", help="skip the cross-evaluation")
  parser.add_argument("--cross_chars", type=int, default=4000)
  parser.add_argument("--cross_docs", type=int, default=60)
  args = parser.parse_args(argv)
  workdir, out = pathlib.Path(args.workdir).absolute(), pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  rows = collect(workdir, args.config)
  runs = {r["run"]: r["run_status"] for r in rows}
  done = sum(status == "done" for status in runs.values())
  print(f"{done} of {len(runs)} runs finished; {sum(r['status'] == 'done' for r in rows)} "
        "evaluations", flush=True)
  if not args.no_cross:
    cross_evaluate(rows, workdir, args.cross_chars, args.cross_docs)
  fits, fit_errors = {}, {}
  for m in ("raw", "textbook"):
    try:
      fits[m] = fit_mixture(rows, m, "eval_loss", args.bootstrap)
    except ValueError as e:  # too few finished points yet
      fit_errors[m] = str(e)
      print(f"{m}: no fit yet: {e}")
  held = {m: holdout(rows, fits, m) for m in fits}
  c_lo = min(r["compute"] for r in rows)
  c_hi = max(r["compute"] for r in rows)
  c_grid = np.geomspace(c_lo, c_hi, 9)
  frontier = {"compute": c_grid.tolist()}
  for m in fits:
    law = scaling.Law(**{k: fits[m][k] for k in KEYS})
    n_opt, d_opt = law.optimal_allocation(c_grid)
    frontier[m] = {"loss": law.frontier(c_grid).tolist(), "params": n_opt.tolist(),
                   "tokens": d_opt.tolist()}
  results = {
      "config": args.config, "sweep": str(workdir), "runs_finished": done, "runs": len(runs),
      "unfinished": sorted(k for k, v in runs.items() if v != "done"),
      "fit": {m: {k: v for k, v in f.items() if k != "_laws"} for m, f in fits.items()},
      "fit_errors": fit_errors,
      "holdout": held.get("textbook") or held.get("raw") or {}, "holdouts": held,
      "equal_compute": equal_compute(rows), "frontier": frontier,
      "rows": [{k: v for k, v in r.items() if k != "workdir"} for r in rows],
  }
  (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
  (out / "table.md").write_text(table(rows, fits))
  (out / "summary.md").write_text(summary_md(results))
  plot(rows, fits, out / "scaling.png")
  for m, f in fits.items():
    iv = f.get("interval90", {})
    print(f"{m}: L = {f['E']:.3f} + {f['A']:.3g}/N^{f['alpha']:.3f} + {f['B']:.3g}/D^"
          f"{f['beta']:.3f}; 90% alpha {iv.get('alpha')}, beta {iv.get('beta')}; "
          f"rms error {100 * f['fit_rms_error']:.2f}%")
  for m, h in held.items():
    if h:
      print(f"holdout {m}: predicted {h['predicted_loss']:.4f}, measured "
            f"{h['measured_loss']}, error {h.get('error')}")
  print(json.dumps({k: v for k, v in results["equal_compute"].items() if k != "pairs"}))
  print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'scaling.png'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
