"""results.json of the phi-1 ablation -> the Figure 2.1-style bar plot and the markdown table.

    python experiments/phi1/report.py experiments/phi1/results.json \\
        --figure=experiments/phi1/figure_2_1.png --table=experiments/phi1/results_table.md

Layout of the paper's Figure 2.1 (pass@1 bars grouped by training setting) with this
experiment's axes: one group per pretraining data (unfiltered / filtered / filtered + textbooks),
two bars per group (the base model, and after the exercise fine-tune), 95% Wilson intervals as
error bars; panels for the held-out task families (test), the unseen variants of the training
families (validation), and the held-out losses.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

ARMS = ("unfiltered", "filtered", "textbook")
SHORT = {"unfiltered": "stdlib\n(unfiltered)", "filtered": "filtered\nstdlib",
         "textbook": "filtered +\nproc. textbooks"}


def _model(results: dict[str, Any], stage: str, arm: str) -> dict[str, Any]:
  return results["models"][f"{stage}_{arm}"]


def table(results: dict[str, Any]) -> str:
  def pct(m: dict[str, Any], split: str) -> str:
    r = m[split]
    lo, hi = r["ci95"]
    return f"{100 * r['pass@1']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"

  n_test = results["eval_sets"]["test"]["n"]
  n_val = results["eval_sets"]["validation"]["n"]
  lines = [
      "| pretraining data | held-out stdlib loss (nats/token) | bits/byte | "
      f"pass@1 held-out families (n={n_test}): base | after fine-tune | "
      f"pass@1 unseen variants (n={n_val}): base | after fine-tune | "
      "held-out exercise loss (test): base | after fine-tune |",
      "|---|---|---|---|---|---|---|---|---|"]
  for arm in ARMS:
    base, ft = _model(results, "pretrain", arm), _model(results, "finetune", arm)
    lines.append(
        f"| {base['label']} | {base['code_loss']:.3f} | {base['code_bits_per_byte']:.3f} | "
        f"{pct(base, 'test')} | {pct(ft, 'test')} | {pct(base, 'validation')} | "
        f"{pct(ft, 'validation')} | {base['exercise_loss_test']:.3f} | "
        f"{ft['exercise_loss_test']:.3f} |")
  return "\n".join(lines) + "\n"


def figure(results: dict[str, Any], path: pathlib.Path) -> None:
  fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
  x = range(len(ARMS))
  width = 0.38
  colors = {"pretrain": "#9bb7d4", "finetune": "#2f5d8a"}
  names = {"pretrain": "base (pretrained only)", "finetune": "+ exercise fine-tune"}
  for ax, split, title in ((axes[0], "test", "pass@1, held-out task families"),
                           (axes[1], "validation", "pass@1, unseen variants of seen families")):
    top = 0.0
    for k, stage in enumerate(("pretrain", "finetune")):
      vals, err_lo, err_hi = [], [], []
      for arm in ARMS:
        r = _model(results, stage, arm)[split]
        p = 100 * r["pass@1"]
        lo, hi = (100 * v for v in r["ci95"])
        vals.append(p)
        err_lo.append(p - lo)
        err_hi.append(hi - p)
        top = max(top, hi)
      pos = [i + (k - 0.5) * width for i in x]
      bars = ax.bar(pos, vals, width, color=colors[stage], label=names[stage],
                    yerr=[err_lo, err_hi], capsize=3)
      for b, v in zip(bars, vals):
        ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                    fontsize=8, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(list(x), [SHORT[a] for a in ARMS], fontsize=8)
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, max(5.0, top * 1.2))
    ax.set_title(f"{title} (n={results['eval_sets'][split]['n']})", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
  ax = axes[2]
  vals = [_model(results, "pretrain", a)["code_loss"] for a in ARMS]
  bars = ax.bar(list(x), vals, 0.5, color=colors["pretrain"])
  for b, v in zip(bars, vals):
    ax.annotate(f"{v:.3f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                fontsize=8, xytext=(0, 2), textcoords="offset points")
  ax.set_xticks(list(x), [SHORT[a] for a in ARMS], fontsize=8)
  ax.set_ylim(min(vals) * 0.9, max(vals) * 1.05)
  ax.set_ylabel("nats / token")
  ax.set_title(f"base models: loss on held-out stdlib files "
               f"({results['code_validation_files']})", fontsize=9)
  ax = axes[3]
  lows = []
  for k, stage in enumerate(("pretrain", "finetune")):
    vals = [_model(results, stage, a)["exercise_loss_test"] for a in ARMS]
    lows.append(min(vals))
    pos = [i + (k - 0.5) * width for i in x]
    bars = ax.bar(pos, vals, width, color=colors[stage], label=names[stage])
    for b, v in zip(bars, vals):
      ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                  fontsize=8, xytext=(0, 2), textcoords="offset points")
  ax.set_xticks(list(x), [SHORT[a] for a in ARMS], fontsize=8)
  ax.set_ylabel("nats / token (body + EOS)")
  ax.set_title("held-out exercise loss, held-out families", fontsize=9)
  ax.legend(fontsize=7, loc="upper right")
  n_params = _model(results, "pretrain", ARMS[0])["num_params"]
  fig.suptitle(f"phi-1 Figure 2.1 layout at CPU scale: same {n_params / 1e6:.1f}M-parameter "
               "model, same tokens, different pretraining data (procedural stand-ins; see "
               "RESULTS.md)", fontsize=10)
  fig.tight_layout()
  tmp = path.with_name(f".{path.stem}.tmp.png")
  fig.savefig(tmp, dpi=110)
  tmp.replace(path)
  plt.close(fig)


def main(argv: list[str]) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("results", type=pathlib.Path)
  parser.add_argument("--figure", type=pathlib.Path, required=True)
  parser.add_argument("--table", type=pathlib.Path, required=True)
  args = parser.parse_args(argv)
  results = json.loads(args.results.read_text())
  figure(results, args.figure)
  text = table(results)
  args.table.write_text(text)
  print(text)


if __name__ == "__main__":
  main(sys.argv[1:])
