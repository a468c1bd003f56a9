"""Writes notebooks/skipdecode.ipynb (without outputs; CI executes it: tests/test_notebooks.py).

    python experiments/skipdecode/make_notebook.py
"""

from __future__ import annotations

import os
import pathlib

import nbformat
from nbformat import v4

REPO = pathlib.Path(__file__).resolve().parents[2]

CELLS = [
    ("markdown", """\
# SkipDecode: schedules, the speed/quality curve, and a live demo

SkipDecode (Del Corro et al. 2023) gives every generated position t a layer budget n(t) that only
decreases, so batched, KV-cached decoding can skip whole layers: the prompt runs all L layers, and
generated token t runs the warm-up layers plus the top n(t) - w. The model is fine-tuned with the
same schedule, teacher-forced (`SkipSchedule.layer_mask`). The method as phi_jax implements it:
`phi_jax/decoding/skipdecode.py`; the experiment: `experiments/skipdecode/` (`RESULTS.md`).

This notebook (1) plots the 2x / 3x / 5x schedules of a 16-layer model, (2) reads the experiment's
results: the tiny-coder run (`coder/results.json`: pass@1 of greedy bodies on held-out exercises,
once it has been run) and the previous run (`results.json`: docstring_code, ROUGE-L), and (3)
decodes with a tiny random model with and without skipping. It runs on a CPU in well under a
minute."""),
    ("code", """\
import json, pathlib
import numpy as np
import matplotlib.pyplot as plt
import jax, jax.numpy as jnp

from phi_jax.decoding import generate
from phi_jax.decoding.early_exit import EarlyExit
from phi_jax.decoding.skipdecode import SkipSchedule
from phi_jax.models import Transformer, presets

EXPERIMENT = pathlib.Path("..") / "experiments" / "skipdecode"
RESULTS = EXPERIMENT / "results.json"          # the previous run: docstring_code, ROUGE-L
CODER = EXPERIMENT / "coder" / "results.json"  # the tiny-coder run (run.sh)"""),
    ("markdown", """\
## 1. Schedules of a 16-layer model
`SkipSchedule.for_speedup(L, target, warmup_layers, decay_len)` picks the linear schedule whose
nominal speedup (L / mean n(t) over `decay_len` generated tokens) is closest to the target.
n(t) decays linearly from `max_layers` to `min_layers` over `decay_len` tokens, then stays."""),
    ("code", """\
L, DECAY = 16, 64
schedules = {f"{s}x": SkipSchedule.for_speedup(L, s, warmup_layers=1, decay_len=DECAY) for s in (2, 3, 5)}
for name, s in schedules.items():
    print(name, s.describe())

t = np.arange(96)
fig, ax = plt.subplots(figsize=(7, 3.2))
ax.axhline(L, color="gray", lw=1, ls=":", label="full model")
for name, s in schedules.items():
    ax.step(t, s.counts(len(t)), where="post", label=f"{name}: n {s.max_layers} -> {s.min_layers}")
ax.axvline(DECAY - 1, color="gray", lw=0.8, ls="--")
ax.set_xlabel("generated token t"); ax.set_ylabel("layers run n(t)"); ax.set_ylim(0, L + 1)
ax.legend(fontsize=8); plt.tight_layout(); plt.show()"""),
    ("markdown", """\
The active layers at each step (`schedule.table()`: row t = the layers that run for generated
token t). Layer 0 is the warm-up layer; the rest of each row is the top block, which only shrinks,
so every layer that runs at step t ran at every earlier step and finds keys/values for every
earlier position in the cache."""),
    ("code", """\
fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), sharey=True)
for ax, (name, s) in zip(axes, schedules.items()):
    ax.imshow(s.table(80), aspect="auto", cmap="Greens", interpolation="nearest")
    ax.set_title(f"{name}: nominal {s.nominal_speedup(DECAY):.2f}x", fontsize=9)
    ax.set_xlabel("layer"); ax.set_xticks(range(0, L, 3))
axes[0].set_ylabel("generated token t")
plt.tight_layout(); plt.show()"""),
    ("markdown", """\
## 2. Quality vs speed on the tiny coder
From `experiments/skipdecode/coder/results.json` (written by `bash experiments/skipdecode/run.sh`):
a 12-layer tiny coder trained on the textbook-quality mixture, fine-tuned on procedural exercises
with each schedule (over fine-tune seeds); quality = pass@1 of greedy bodies on held-out exercises
(unseen variants; whole held-out families), with 95% intervals over seeds and the paired
difference from the 1x model. Until that run exists this section says so."""),
    ("code", """\
coder = json.loads(CODER.read_text()) if CODER.exists() else None
if coder is None:
    print(f"{CODER} not found: the tiny-coder rerun has not been run yet "
          "(bash experiments/skipdecode/run.sh; RESULTS.md)")
else:
    m = coder["model"]
    print(f"{m['num_layers']} layers x d_model {m['d_model']} ({m['params']:,} parameters); "
          f"{coder['machine']['device']}; {coder['date']}")
    for set_name, info in coder["sets"].items():
        print(f"\\n{set_name}: {info['n']} exercises")
        print(f"{'setting':>18} {'measured':>9} {'layers':>7} {'loss':>7} {'pass@1 %':>9} "
              f"{'95% over seeds':>15} {'vs 1x (pooled)':>15}")
        for e in coder["settings"]:
            s = e["sets"][set_name]
            loss = "n/a" if s["loss"] is None else f"{s['loss']:.3f}"
            lo, hi = s["seed_ci95"]
            print(f"{e['name']:>18} {e['measured_speedup']:8.2f}x {e['mean_layers']:7.2f} "
                  f"{loss:>7} {100 * s['pass@1']:9.1f} {f'[{100 * lo:.1f}, {100 * hi:.1f}]':>15} "
                  f"{100 * s['diff_pooled']:+15.1f}")
    print("CALM at matched speed:", coder["calm_at_matched_speed"])"""),
    ("code", """\
if coder is not None:
    sets = list(coder["sets"])
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 3.8), squeeze=False)
    full = [e for e in coder["settings"] if e["name"] == "skipdecode 1x"]
    for kind, label, style in (("skipdecode", "SkipDecode (fine-tuned)", "o-"),
                               ("schedule_only", "schedule only (no skip fine-tuning)", "s--"),
                               ("calm", "CALM early exit", "^:")):
        es = [e for e in coder["settings"] if e["kind"] == kind] + (full if kind == "schedule_only" else [])
        es.sort(key=lambda e: e["nominal_speedup"])
        x = [e["measured_speedup"] for e in es]
        for ax, set_name in zip(axes[0], sets):
            y = np.array([100 * e["sets"][set_name]["pass@1"] for e in es])
            ci = np.array([[100 * v for v in e["sets"][set_name]["seed_ci95"]] for e in es])
            ax.errorbar(x, y, yerr=[y - ci[:, 0], ci[:, 1] - y], fmt=style, label=label, capsize=2)
    for ax, set_name in zip(axes[0], sets):
        ax.set_title(set_name, fontsize=9); ax.set_ylabel("pass@1 %")
        ax.set_xlabel("measured decode speedup"); ax.set_xscale("log", base=2); ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8); plt.tight_layout(); plt.show()
    for sample in coder["samples"][:2]:
        print("=" * 100)
        print(sample["prompt"] + "----- reference:\\n" + sample["reference"])
        for name in ("skipdecode 1x", "skipdecode 3x", "skipdecode 5x", "schedule-only 5x"):
            if name in sample["outputs"]:
                print(f"----- {name} ({'passes' if sample['passed'][name] else 'fails'}):\\n"
                      f"{sample['outputs'][name]}")"""),
    ("markdown", """\
## 3. The previous run: docstring_code, ROUGE-L
From `experiments/skipdecode/results.json` (written by the experiment's earlier run.sh, before the
tiny-coder rerun; RESULTS.md keeps its commands): a small model pretrained on this machine's Python stdlib, fine-tuned on `docstring_code` (signature +
docstring -> body) with each schedule; scored on held-out functions. Measured speedups are decode
steps of the same batch against the full model, on the machine named in the file. At this toy
scale the held-out loss is the informative column and the greedy generations are degenerate for
every setting: `experiments/skipdecode/RESULTS.md` says what the numbers do and do not show."""),
    ("code", """\
result = json.loads(RESULTS.read_text()) if RESULTS.exists() else None
if result is None:
    print(f"{RESULTS} not found (the previous run's results)")
else:
    m = result["model"]
    print(f"{m['num_layers']} layers x d_model {m['d_model']} ({m['params']:,} parameters); "
          f"{result['examples']['count']} held-out functions; {result['machine']['device']}; {result['date']}")
    print(f"{'setting':>18} {'nominal':>8} {'measured':>9} {'layers':>7} {'loss':>7} {'ROUGE-L':>8}")
    for e in result["settings"]:
        loss = "n/a" if e["loss"] is None else f"{e['loss']:.3f}"
        print(f"{e['name']:>18} {e['nominal_speedup']:7.2f}x {e['measured_speedup']:8.2f}x "
              f"{e['mean_layers']:7.2f} {loss:>7} {e['rouge_l']:8.3f}")
    print("CALM at matched speed:", result["calm_at_matched_speed"])"""),
    ("code", """\
if result is not None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    full = [e for e in result["settings"] if e["name"] == "skipdecode 1x"]
    for kind, label, style in (("skipdecode", "SkipDecode (fine-tuned)", "o-"),
                               ("schedule_only", "schedule only (no skip fine-tuning)", "s--"),
                               ("calm", "CALM early exit", "^:")):
        es = [e for e in result["settings"] if e["kind"] == kind] + (full if kind == "schedule_only" else [])
        es.sort(key=lambda e: e["nominal_speedup"])
        x = [e["measured_speedup"] for e in es]
        axes[0].plot(x, [e["rouge_l"] for e in es], style, label=label)
        if kind != "calm":
            axes[1].plot(x, [e["loss"] for e in es], style, label=label)
    axes[0].set_ylabel("ROUGE-L F1"); axes[1].set_ylabel("held-out loss (nats/token)")
    for ax in axes:
        ax.set_xlabel("measured decode speedup"); ax.set_xscale("log", base=2); ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8); plt.tight_layout(); plt.show()"""),
    ("markdown", """\
### Side by side
The same held-out prompts decoded greedily by each setting (the first samples stored in
`results.json`)."""),
    ("code", """\
if result is not None:
    matched = [v for v in result["calm_at_matched_speed"].values() if v]
    show = ["skipdecode 1x", "skipdecode 2x", "skipdecode 3x", "skipdecode 5x",
            "schedule-only 5x"] + sorted(set(matched))
    for sample in result["samples"][:2]:
        print("=" * 100)
        print(sample["prompt"] + "----- reference:\\n" + sample["reference"])
        for name in show:
            if name in sample["outputs"]:
                print(f"----- {name}:\\n{sample['outputs'][name]}")"""),
    ("markdown", """\
## 4. Live: a tiny random model, with and without skipping
A 4-layer `tiny-serial` model with random weights (its tokens are meaningless). With
`skip=schedule` only the active layers run for each generated token; `return_stats` reports the
layers run per generated position (the first comes from the full-depth prompt pass). A schedule
that skips nothing gives exactly the full model's tokens. CALM's early exit (`early_exit=`) is the
baseline: its depth depends on the confidence of every row of the batch."""),
    ("code", """\
cfg = presets.get("tiny-serial", num_layers=4)
params = Transformer(cfg).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
prompts = [[5, 17, 42, 9], [7, 7, 100, 3, 21, 64]]
schedule = SkipSchedule(4, max_layers=3, min_layers=2, warmup_layers=1, decay_len=8)
print(schedule.describe())

full, full_stats = generate(cfg, params, prompts, max_new_tokens=12, return_stats=True)
skip, skip_stats = generate(cfg, params, prompts, max_new_tokens=12, skip=schedule, return_stats=True)
same = generate(cfg, params, prompts, max_new_tokens=12, skip=SkipSchedule.no_skip(4))
calm, calm_stats = generate(cfg, params, prompts, max_new_tokens=12,
                            early_exit=EarlyExit(threshold=0.0), return_stats=True)
print("full  ", full[0], full_stats)
print("skip  ", skip[0], skip_stats)
print("calm  ", calm[0], calm_stats)
print("no-skip schedule == full model:", same == full)
assert same == full
assert skip_stats["layers_per_token"] == [4] + [schedule.n(t) for t in range(11)]"""),
]


def build() -> nbformat.NotebookNode:
  nb = v4.new_notebook()
  nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python",
                               "name": "python3"}
  for i, (kind, source) in enumerate(CELLS):
    cell = v4.new_markdown_cell(source) if kind == "markdown" else v4.new_code_cell(source)
    cell["id"] = f"skipdecode-{i:02d}"
    nb.cells.append(cell)
  return nb


def main() -> None:
  path = REPO / "notebooks" / "skipdecode.ipynb"
  tmp = path.with_name(path.name + ".tmp")
  nbformat.write(build(), str(tmp))
  os.replace(tmp, path)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
