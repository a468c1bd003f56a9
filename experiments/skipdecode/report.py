"""results.json (evaluate.py, the tiny-coder run) -> quality_vs_speed.png next to it, and the
results tables as Markdown on stdout (pasted into RESULTS.md).

    python experiments/skipdecode/report.py experiments/skipdecode/coder/results.json

The previous run's results.json (docstring_code, ROUGE-L; experiments/skipdecode/results.json)
has another layout: this script refuses it (its table is in RESULTS.md).
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any, Optional, Sequence

SERIES = (("skipdecode", "SkipDecode (fine-tuned with the schedule)", "o-"),
          ("schedule_only", "schedule only (1x model, no skip fine-tuning)", "s--"),
          ("calm", "CALM early exit (1x model, threshold sweep)", "^:"))
SET_TITLES = {"validation": "unseen variants of the training families",
              "test": "whole held-out families"}


def series(result: dict[str, Any], kind: str) -> list[dict[str, Any]]:
  """The settings of one kind, by nominal speedup; the 1x model starts schedule_only too."""
  entries = [e for e in result["settings"] if e["kind"] == kind]
  if kind == "schedule_only":
    entries += [e for e in result["settings"] if e["name"] == "skipdecode 1x"]
  return sorted(entries, key=lambda e: e["nominal_speedup"])


def _pct(x: float) -> str:
  return f"{100 * x:.1f}"


def _interval(pair: Optional[Sequence[float]], pct: bool = True, signed: bool = False) -> str:
  if not pair:
    return ""
  f = (lambda x: f"{100 * x:+.1f}" if signed else _pct(x)) if pct else (  # noqa: E731
      lambda x: f"{x:+.3f}" if signed else f"{x:.3f}")
  return f" [{f(pair[0])}, {f(pair[1])}]"


def pass_cell(s: dict[str, Any]) -> str:
  """'mean% [seed t-interval] (per seed); pooled k/n'."""
  per_seed = ", ".join(_pct(x) for x in s["pass@1_per_seed"])
  interval = _interval(s["seed_ci95"]) if len(s["seeds"]) > 1 else _interval(s["pooled_ci95"])
  return f"{_pct(s['pass@1'])}%{interval} ({per_seed}); {s['pooled'][0]}/{s['pooled'][1]}"


def diff_cell(s: dict[str, Any], name: str) -> str:
  """The paired difference from 1x in points: pooled [normal interval]; over seeds [t]."""
  if name == "skipdecode 1x":
    return "(reference)"
  text = f"{100 * s['diff_pooled']:+.1f}{_interval(s['diff_pooled_ci95'], signed=True)}"
  if len(s["seeds"]) > 1:
    text += f"; seeds {100 * s['diff_vs_1x']:+.1f}{_interval(s['diff_seed_ci95'], signed=True)}"
  return text


def loss_cell(s: dict[str, Any], name: str) -> str:
  if s.get("loss") is None:
    return "n/a"
  text = f"{s['loss']:.3f}"
  if name != "skipdecode 1x" and s.get("loss_diff_vs_1x") is not None:
    text += f" ({s['loss_diff_vs_1x']:+.3f}"
    if len(s["seeds"]) > 1:
      text += _interval(s["loss_diff_seed_ci95"], pct=False, signed=True)
    text += ")"
  return text


def table(result: dict[str, Any], set_name: str) -> str:
  """The Markdown table of every setting on one problem set."""
  matched: dict[str, list[str]] = {}
  for target, name in (result.get("calm_at_matched_speed") or {}).items():
    if name:
      matched.setdefault(name, []).append(target)
  lines = ["| setting | nominal speedup | measured speedup (median [quartiles]) | layers / token "
           "| held-out loss (vs 1x [95% over seeds]) | pass@1 % [95%] (per seed); pooled "
           "| vs 1x, points: pooled paired [95%]; over seeds [95%] | parses |",
           "|---|---|---|---|---|---|---|---|"]
  for e in result["settings"]:
    s = e["sets"][set_name]
    name = e["name"] + (f" (closest to {', '.join(matched[e['name']])})"
                        if e["name"] in matched else "")
    iqr = e.get("measured_speedup_iqr")
    spread = f" [{iqr[0]:.2f}, {iqr[1]:.2f}]" if iqr else ""
    lines.append(f"| {name} | {e['nominal_speedup']:.2f}x | {e['measured_speedup']:.2f}x{spread} "
                 f"| {e['mean_layers']:.2f} | {loss_cell(s, e['name'])} | {pass_cell(s)} | "
                 f"{diff_cell(s, e['name'])} | {100 * s['parse_rate']:.0f}% |")
  base = (result.get("base") or {}).get("sets", {}).get(set_name)
  if base:
    lines.append(f"| base (no fine-tune, one model) | 1.00x | - | {result['model']['num_layers']}"
                 f".00 | {base['loss']:.3f} | {_pct(base['pass@1'])}%"
                 f"{_interval(base['ci95'])}; {base['passed']}/{base['n']} | - | "
                 f"{100 * base['parse_rate']:.0f}% |")
  return "\n".join(lines)


def _iqr_err(entries: list[dict[str, Any]]):
  """[2, n] distances from the median to the quartiles of the measured speedup."""
  low, high = [], []
  for e in entries:
    q25, q75 = e.get("measured_speedup_iqr") or (e["measured_speedup"],) * 2
    low.append(max(e["measured_speedup"] - q25, 0.0))
    high.append(max(q75 - e["measured_speedup"], 0.0))
  return [low, high]


def _yerr(values: list[float], intervals: list[Sequence[float]]):
  return [[max(v - lo, 0.0) for v, (lo, _) in zip(values, intervals)],
          [max(hi - v, 0.0) for v, (_, hi) in zip(values, intervals)]]


def plot(result: dict[str, Any], path: pathlib.Path) -> None:
  """pass@1 of each set (95% over seeds; Wilson with one seed) and the held-out loss (95% over
  seeds of its difference from 1x, around the mean) against the measured speedup (quartiles)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  set_names = [s for s in ("validation", "test") if s in result["sets"]]
  fig, axes = plt.subplots(1, len(set_names) + 1, figsize=(5 * (len(set_names) + 1), 4))
  for kind, name, style in SERIES:
    entries = series(result, kind)
    if not entries:
      continue
    x = [e["measured_speedup"] for e in entries]
    for ax, set_name in zip(axes, set_names):
      stats = [e["sets"][set_name] for e in entries]
      y = [100 * s["pass@1"] for s in stats]
      ci = [[100 * v for v in (s["seed_ci95"] if len(s["seeds"]) > 1 else s["pooled_ci95"])]
            for s in stats]
      ax.errorbar(x, y, xerr=_iqr_err(entries), yerr=_yerr(y, ci), fmt=style, label=name,
                  elinewidth=0.7, capsize=2)
      for e, yy in zip(entries, y):
        tag = f"{e['threshold']:g}" if kind == "calm" else f"{e['target_speedup']:g}x"
        ax.annotate(tag, (e["measured_speedup"], yy), fontsize=7, textcoords="offset points",
                    xytext=(3, 3))
    with_loss = [e for e in entries if e["sets"][set_names[0]].get("loss") is not None]
    if with_loss:
      stats = [e["sets"][set_names[0]] for e in with_loss]
      y = [s["loss"] for s in stats]
      ci = [[s["loss"] + d - s["loss_diff_vs_1x"] for d in s["loss_diff_seed_ci95"]]
            if s.get("loss_diff_seed_ci95") and len(s["seeds"]) > 1 else [s["loss"]] * 2
            for s in stats]
      axes[-1].errorbar([e["measured_speedup"] for e in with_loss], y,
                        xerr=_iqr_err(with_loss), yerr=_yerr(y, ci), fmt=style, label=name,
                        elinewidth=0.7, capsize=2)
  for ax, set_name in zip(axes, set_names):
    ax.set_ylabel(f"pass@1 % ({result['sets'][set_name]['n']} exercises)")
    ax.set_title(SET_TITLES.get(set_name, set_name), fontsize=9)
  axes[-1].set_ylabel("held-out loss, unseen variants (nats / target token)")
  axes[-1].set_title("CALM has no teacher-forced loss", fontsize=8)
  for ax in axes:
    ax.set_xlabel("measured decode speedup vs the full model")
    ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  model, seeds = result["model"], result["settings"][0]["sets"][set_names[0]]["seeds"]
  fig.suptitle(f"SkipDecode on the tiny coder ({model['num_layers']} layers x d_model "
               f"{model['d_model']}; fine-tune seeds {', '.join(map(str, seeds))}; batch "
               f"{result['args']['batch_size']}; {result['machine']['device']}); bars: 95% over "
               "seeds (speed: quartiles)", fontsize=9)
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
  if result.get("task") != "tinycoder":
    raise SystemExit(f"{path} is not a tiny-coder results.json (evaluate.py): the previous "
                     "docstring_code run's table is in experiments/skipdecode/RESULTS.md")
  plot(result, path.with_name("quality_vs_speed.png"))
  for set_name in result["sets"]:
    print(f"\n### {SET_TITLES.get(set_name, set_name)} ({result['sets'][set_name]['n']} "
          "exercises)\n")
    print(table(result, set_name))
  print(f"\nCALM at matched speed: {result.get('calm_at_matched_speed')}")


if __name__ == "__main__":
  main(sys.argv)
