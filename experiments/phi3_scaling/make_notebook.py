"""Writes notebooks/phi3_scaling.ipynb (without outputs; CI executes it: tests/test_notebooks.py).

    python experiments/phi3_scaling/make_notebook.py
"""

from __future__ import annotations

import pathlib

import nbformat
from nbformat import v4

REPO = pathlib.Path(__file__).resolve().parents[2]

CELLS = [
    ("markdown", """\
# phi-3's scaling at CPU scale: the fitted laws, redrawn

`experiments/phi3_scaling/` trains the phi-3-mini block at five sizes on two mixtures (this
Python's standard library as is, `raw`, and the tiny coder's textbook-quality mixture, `textbook`),
evaluates the held-out loss at three token budgets, and fits Chinchilla's law
L(N, D) = E + A / N^alpha + B / D^beta per mixture (`phi_jax.study.scaling`). This notebook reads
its `results.json` (no training: it runs in seconds), redraws every measured point with its law,
refits one law here to show the fit is reproducible from the stored points, and compares the
held-out run's measured loss with the prediction. `RESULTS.md` says what the miniature can and
cannot show."""),
    ("code", """\
import json, pathlib
import numpy as np
import matplotlib.pyplot as plt
from phi_jax.study import scaling

RESULTS = pathlib.Path("..") / "experiments" / "phi3_scaling" / "results.json"
results = json.loads(RESULTS.read_text())
rows = [r for r in results["rows"] if r["status"] == "done"]
KEYS = ("E", "A", "B", "alpha", "beta")
laws = {m: scaling.Law(**{k: f[k] for k in KEYS}) for m, f in results["fit"].items()}
print(f"{results['runs_finished']} of {results['runs']} runs finished; unfinished: "
      f"{results.get('unfinished')}")
for m, f in results["fit"].items():
    iv = f.get("interval90", {})
    print(f"{m:9s} L = {f['E']:.3f} + {f['A']:.3g}/N^{f['alpha']:.3f} + {f['B']:.3g}/D^{f['beta']:.3f}"
          f"   alpha 90% {np.round(iv.get('alpha', [np.nan] * 2), 3)}, "
          f"beta 90% {np.round(iv.get('beta', [np.nan] * 2), 3)}")"""),
    ("markdown", """\
## Held-out loss against parameters, one line per token budget
Points: measured (each mixture on its own held-out split); lines: the mixture's fitted law; the
star: the held-out size, not in the fit."""),
    ("code", """\
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=False)
for ax, (mixture, law) in zip(axes, laws.items()):
    mine = [r for r in rows if r["mixture"] == mixture]
    for d in sorted({r["tokens"] for r in mine if not r["holdout"]}):
        pts = sorted((r["params"], r["eval_loss"]) for r in mine if r["tokens"] == d and not r["holdout"])
        n = np.geomspace(pts[0][0] / 1.5, 3e6, 60)
        line, = ax.plot(*zip(*pts), "o", label=f"D = {d / 1e6:.2f}M")
        ax.plot(n, law.predict(n, d), "-", color=line.get_color(), alpha=0.6)
    for r in mine:
        if r["holdout"]:
            ax.plot(r["params"], r["eval_loss"], "k*", ms=13)
    ax.set_xscale("log"); ax.set_xlabel("non-embedding parameters N"); ax.set_ylabel("held-out loss")
    ax.set_title(mixture); ax.legend(fontsize=8); ax.grid(alpha=0.3)
plt.tight_layout(); plt.show()"""),
    ("markdown", """\
## The fit, reproduced from the stored points
Refit each mixture's law to the points in `results.json` (the runs not held out) and compare with
the stored parameters; then the held-out run: predicted vs measured."""),
    ("code", """\
for mixture in laws:
    pts = [r for r in rows if r["mixture"] == mixture and not r["holdout"]]
    law = scaling.fit([r["params"] for r in pts], [r["tokens"] for r in pts], [r["eval_loss"] for r in pts])
    stored = laws[mixture]
    check = [r["eval_loss"] for r in pts]
    print(f"{mixture:9s} refit E={law.E:.3f} alpha={law.alpha:.3f} beta={law.beta:.3f}; "
          f"max |refit - stored| over the points: "
          f"{np.max(np.abs(law.predict([r['params'] for r in pts], [r['tokens'] for r in pts]) - stored.predict([r['params'] for r in pts], [r['tokens'] for r in pts]))):.4f}")
h = results["holdout"]
if h.get("measured_loss") is not None:
    print(f"holdout ({h['mixture']}, N={h['params']:,}, D={h['tokens']:,}): predicted "
          f"{h['predicted_loss']:.4f}, measured {h['measured_loss']:.4f}, "
          f"error {100 * h['error']:+.2f}% (goal: within 3%)")
else:
    print(f"holdout ({h['mixture']}): predicted {h['predicted_loss']:.4f}; not measured yet")"""),
    ("markdown", """\
## Compute: measured points and each law's compute-optimal frontier
C = 6 N D. The frontier is the least loss the law reaches at each compute (Chinchilla eq. 4).
Each mixture's loss is on its own held-out split, so the two curves measure how predictable each
mixture is as much as how well the model learned; `results['equal_compute']` has the comparison
on the same texts (cross-evaluation)."""),
    ("code", """\
fig, ax = plt.subplots(figsize=(7, 4.2))
colors = {"raw": "tab:red", "textbook": "tab:blue"}
c_all = np.array([r["compute"] for r in rows])
c = np.geomspace(c_all.min(), c_all.max(), 80)  # the measured range
for mixture, law in laws.items():
    mine = [r for r in rows if r["mixture"] == mixture]
    ax.scatter([r["compute"] for r in mine], [r["eval_loss"] for r in mine], s=14, color=colors[mixture], alpha=0.6)
    ax.plot(c, law.frontier(c), color=colors[mixture], label=f"{mixture}: fitted frontier")
ax.set_xscale("log"); ax.set_xlabel("compute C = 6 N D (FLOPs)"); ax.set_ylabel("held-out loss (own split)")
ax.legend(); ax.grid(alpha=0.3); plt.tight_layout(); plt.show()
eq = results["equal_compute"]
for key in ("own", "loss_on_raw", "loss_on_textbook"):
    if key in eq:
        print(f"textbook - raw at equal (N, D), {key}: mean {eq[key]['mean_difference']:+.3f} nats "
              f"(textbook lower in {eq[key]['textbook_lower']} of {eq[key]['pairs']})")"""),
]


def main() -> None:
  nb = v4.new_notebook()
  nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
  nb.cells = [v4.new_markdown_cell(src) if kind == "markdown" else v4.new_code_cell(src)
              for kind, src in CELLS]
  path = REPO / "notebooks" / "phi3_scaling.ipynb"
  nbformat.write(nb, path)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
