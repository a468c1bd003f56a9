"""results.json (evaluate.py) -> quality_vs_speed.png next to it, and the results table as
Markdown on stdout (pasted into RESULTS.md).

    python experiments/skipdecode/report.py experiments/skipdecode/results.json
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any, Optional

SERIES = (("skipdecode", "SkipDecode (fine-tuned with the schedule)", "o-"),
          ("schedule_only", "schedule only (1x model, no skip fine-tuning)", "s--"),
          ("calm", "CALM early exit (1x model, threshold sweep)", "^:"))


def series(result: dict[str, Any], kind: str) -> list[dict[str, Any]]:
  """The settings of one kind, by nominal speedup; the 1x model starts schedule_only too."""
  entries = [e for e in result["settings"] if e["kind"] == kind]
  if kind == "schedule_only":
    entries += [e for e in result["settings"] if e["name"] == "skipdecode 1x"]
  return sorted(entries, key=lambda e: e["nominal_speedup"])


def _fmt(value: Optional[float], digits: int = 3) -> str:
  return "n/a" if value is None else f"{value:.{digits}f}"


def _rouge(e: dict[str, Any]) -> str:
  """'mean ± s.e.m. (paired difference from 1x ± s.e.m.)' as available."""
  text = f"{e['rouge_l']:.3f}"
  if e.get("rouge_l_sem") is not None:
    text += f" ± {e['rouge_l_sem']:.3f}"
  if e.get("rouge_l_diff_vs_1x") is not None and e["name"] != "skipdecode 1x":
    text += f" ({e['rouge_l_diff_vs_1x']:+.3f} ± {e['rouge_l_diff_sem']:.3f})"
  return text


def table(result: dict[str, Any]) -> str:
  """The Markdown table of every setting."""
  matched: dict[str, list[str]] = {}
  for target, name in (result.get("calm_at_matched_speed") or {}).items():
    if name:
      matched.setdefault(name, []).append(target)
  lines = ["| setting | nominal speedup | measured speedup (median [quartiles]) | mean layers / token "
           "| held-out loss | ROUGE-L F1 (vs 1x, paired) |", "|---|---|---|---|---|---|"]
  for e in result["settings"]:
    name = e["name"] + (f" (closest to {', '.join(matched[e['name']])})"
                        if e["name"] in matched else "")
    iqr = e.get("measured_speedup_iqr")
    spread = f" [{iqr[0]:.2f}, {iqr[1]:.2f}]" if iqr else ""
    lines.append(f"| {name} | {e['nominal_speedup']:.2f}x | {e['measured_speedup']:.2f}x{spread} | "
                 f"{e['mean_layers']:.2f} | "
                 f"{_fmt(e['loss'])} | {_rouge(e)} |")
  return "\n".join(lines)


def _iqr_err(entries: list[dict[str, Any]]):
  """[2, n] distances from the median to the quartiles of the measured speedup (0 if absent)."""
  low, high = [], []
  for e in entries:
    q25, q75 = e.get("measured_speedup_iqr") or (e["measured_speedup"],) * 2
    low.append(max(e["measured_speedup"] - q25, 0.0))
    high.append(max(q75 - e["measured_speedup"], 0.0))
  return [low, high]


def plot(result: dict[str, Any], path: pathlib.Path) -> None:
  """ROUGE-L (+- s.e.m.) and held-out loss against the measured speedup (quartile bars)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for kind, label, style in SERIES:
    entries = series(result, kind)
    if not entries:
      continue
    x = [e["measured_speedup"] for e in entries]
    xerr = _iqr_err(entries)
    axes[0].errorbar(x, [e["rouge_l"] for e in entries], xerr=xerr,
                     yerr=[e.get("rouge_l_sem", 0.0) for e in entries], fmt=style, label=label,
                     elinewidth=0.7, capsize=2)
    for e in entries:
      tag = f"{e['threshold']:g}" if kind == "calm" else f"{e['target_speedup']:g}x"
      axes[0].annotate(tag, (e["measured_speedup"], e["rouge_l"]), fontsize=7,
                       textcoords="offset points", xytext=(3, 3))
    with_loss = [e for e in entries if e["loss"] is not None]
    if with_loss:
      axes[1].errorbar([e["measured_speedup"] for e in with_loss], [e["loss"] for e in with_loss],
                       xerr=_iqr_err(with_loss), fmt=style, label=label, elinewidth=0.7,
                       capsize=2)
      for e in with_loss:
        axes[1].annotate(f"{e['target_speedup']:g}x", (e["measured_speedup"], e["loss"]),
                         fontsize=7, textcoords="offset points", xytext=(3, 3))
  axes[0].set_ylabel("ROUGE-L F1 (greedy, held-out)")
  axes[1].set_ylabel("held-out loss (nats / target token)")
  axes[1].set_title("CALM has no teacher-forced loss", fontsize=8)
  for ax in axes:
    ax.set_xlabel("measured decode speedup vs the full model")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  model = result["model"]
  fig.suptitle(f"SkipDecode on docstring_code ({model['num_layers']} layers x d_model "
               f"{model['d_model']}, {result['examples']['count']} held-out functions, batch "
               f"{result['args']['batch_size']}, {result['machine']['device']})", fontsize=9)
  fig.tight_layout()
  tmp = path.with_name(path.stem + ".tmp.png")
  fig.savefig(tmp, dpi=120)
  plt.close(fig)
  os.replace(tmp, path)


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    raise SystemExit(f"usage: {argv[0]} results.json")
  path = pathlib.Path(argv[1])
  result = json.loads(path.read_text())
  plot(result, path.with_name("quality_vs_speed.png"))
  print(table(result))
  print(f"\nCALM at matched speed: {result.get('calm_at_matched_speed')}")


if __name__ == "__main__":
  main(sys.argv)
