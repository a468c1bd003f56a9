"""Evaluates the SkipDecode experiment (run.sh): quality and decode speed of every setting.

    python experiments/skipdecode/evaluate.py --root=workdirs/skipdecode --out=results.json

Settings, all on the same first `num_examples` held-out `docstring_code` validation examples
(prompt = signature + docstring, target = body; files never seen in training):

    skipdecode Sx      the model fine-tuned with the Sx schedule (ROOT/ft_Sx), decoded with it;
                       S = 1 is the full model fine-tuned without skipping (the 1x reference)
    schedule-only Sx   the 1x model decoded with the Sx schedule, no skip fine-tuning
    calm T             the 1x model with CALM early exit (phi_jax.decoding.EarlyExit) at
                       confidence threshold T, an exit point after every layer

Per setting:
  loss              held-out loss (nats / target token, EOS included), teacher-forced with the
                    setting's layer mask `schedule.layer_mask(target_index)` (exactly what cached
                    decoding with the schedule computes; no mask for 1x). Undefined for CALM: its
                    depth depends on the confidence of the tokens it generates itself (and on the
                    rest of the batch), so there is no fixed teacher-forced computation to score.
  rouge_l           mean ROUGE-L F1 of the greedy generation (`generate(..., eos_id=EOS,
                    max_new_tokens=M)`, in batches of `batch_size`) against the reference body,
                    over code tokens (`code_tokens`).
  mean_layers       layers run per generated token during those generations (generate's
                    return_stats, averaged over all steps; g_0 comes from the full-depth prompt
                    pass and counts as L).
  measured_speedup  decode step time of the 1x model without skipping / the setting's, on the
                    first batch of prompts, exactly `speed_new_tokens` new tokens (no EOS), decode
                    steps only: each generate program is timed whole and with max_new_tokens=1
                    (the same compiled program: prefill + g_0), the difference is divided by the
                    new_tokens - 1 decode steps (as experiments/perf/skipdecode_speed.py does).
                    The median over `speed_reps` rounds, each timing the setting next to the 1x
                    model (`decode_times`), with the quartiles.
  nominal_speedup   L / mean n(t) over those decode steps (for CALM: L / the mean layers it ran).

CALM's confidence: phi_jax.decoding.early_exit.confidence takes the top two probabilities with
lax.top_k, which XLA:CPU compiles inside the decode loop into a full sort of each [B, V] row
(~25 ms per exit point at batch 16 x vocab 2,048 here, against ~30 ms for a whole full-depth
step). With --calm_confidence=argmax (the default) the CALM settings run with `argmax_confidence`
(the same value: top-1 minus the largest probability left after masking the top-1 position,
tested equal) so that the baseline is not charged for that; --calm_confidence=library keeps the
library's.

Prompts longer than `seq_len // 2` tokens keep their last seq_len // 2 tokens (the rule of the
training pipeline, phi_jax.data.pipeline.TokenizeExample). results.json is written atomically.
"""

from __future__ import annotations

import os
import sys

# Pinned to one CPU core (before jax is imported), as experiments/perf/ benchmarks are, unless
# --no_pin: the decode timings are then less disturbed by XLA's threads competing for the cores.
if __name__ == "__main__" and "--no_pin" not in sys.argv:
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "perf"))
  from one_core import pin  # noqa: E402
  PINNED_CPU = pin()
else:
  PINNED_CPU = None

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any, Optional, Sequence  # noqa: E402

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from phi_jax.data import builders, pipeline  # noqa: E402
from phi_jax.decoding import early_exit as early_exit_lib  # noqa: E402
from phi_jax.decoding import generation, skipdecode  # noqa: E402
from phi_jax.decoding.early_exit import EarlyExit  # noqa: E402
from phi_jax.decoding.skipdecode import SkipSchedule  # noqa: E402
from phi_jax.models import Transformer  # noqa: E402
from phi_jax.train import checkpoint, step as step_lib  # noqa: E402

# ---- ROUGE-L over code tokens ---------------------------------------------------------------------

CODE_TOKEN = re.compile(r"\w+|[^\w\s]")


def code_tokens(text: str) -> list[str]:
  """Code tokens: maximal runs of word characters (identifiers, keywords, numbers) and single
  punctuation characters; whitespace (hence indentation) is dropped.

      code_tokens("return x+1  # ok") == ['return', 'x', '+', '1', '#', 'ok']
  """
  return CODE_TOKEN.findall(text)


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
  """Length of the longest common subsequence of a and b (O(len(a) * len(b)) time, O(len(b))
  memory)."""
  if len(a) < len(b):
    a, b = b, a
  previous = [0] * (len(b) + 1)
  for x in a:
    current = [0]
    for j, y in enumerate(b):
      current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
    previous = current
  return previous[-1]


def rouge_l(candidate: str, reference: str) -> float:
  """ROUGE-L F1 of candidate against reference over `code_tokens`: with L = LCS length,
  P = L / |candidate|, R = L / |reference|, F1 = 2PR / (P + R); 0 when L = 0, and 1 when both
  have no tokens."""
  cand, ref = code_tokens(candidate), code_tokens(reference)
  if not cand and not ref:
    return 1.0
  common = lcs_length(cand, ref)
  if common == 0:
    return 0.0
  precision, recall = common / len(cand), common / len(ref)
  return 2 * precision * recall / (precision + recall)


# ---- CALM's confidence without a sort -------------------------------------------------------------


def argmax_confidence(logits: jax.Array) -> jax.Array:
  """logits [..., V] -> top-1 minus top-2 softmax probability [...], as
  `early_exit.confidence`, from two max reductions instead of lax.top_k (ties: the second max
  equals the first, 0 as with top_k)."""
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  first = jnp.argmax(probs, axis=-1)
  rest = jnp.where(jnp.arange(probs.shape[-1]) == first[..., None], -jnp.inf, probs)
  return jnp.max(probs, axis=-1) - jnp.max(rest, axis=-1)


@contextlib.contextmanager
def calm_confidence(kind: str):
  """Within the block, CALM programs traced use `argmax_confidence` (kind 'argmax') or the
  library's (kind 'library')."""
  if kind not in ("argmax", "library"):
    raise ValueError(f"calm_confidence must be 'argmax' or 'library', got {kind!r}")
  saved = early_exit_lib.confidence
  if kind == "argmax":
    early_exit_lib.confidence = argmax_confidence
  try:
    yield
  finally:
    early_exit_lib.confidence = saved


# ---- data -----------------------------------------------------------------------------------------


def builder_kwargs(data_config: dict[str, Any]) -> dict[str, Any]:
  """The docstring_code builder arguments of a run's config.json `data` section (as training
  passes them: empty values left out)."""
  return {k: data_config[k] for k in ("source_dir", "max_files", "validation_fraction",
                                      "max_bytes")
          if data_config.get(k) not in (None, "", 0)}


def load_examples(data_dir: str, num_examples: int, **kwargs) -> list[dict[str, str]]:
  """The first num_examples validation records of docstring_code as {prompt, target, name,
  path} strings."""
  source = builders.build("docstring_code", data_dir, **kwargs).as_data_source("validation")
  examples = []
  for i in range(min(num_examples, len(source))):
    record = source[i]
    examples.append({k: record[k].decode("utf-8") if isinstance(record[k], bytes) else record[k]
                     for k in ("prompt", "target", "name", "path")})
  return examples


def encode(tokenizer, examples: Sequence[dict[str, str]], seq_len: int):
  """-> (prompts: token lists of at most seq_len // 2 (the tail of long prompts),
  rows: [n, 4] int32 arrays of TokenizeExample (input, target, loss_mask, target_index))."""
  tokenize = pipeline.TokenizeExample(tokenizer, seq_len)
  prompts = [tokenizer.encode(ex["prompt"])[-(seq_len // 2):] for ex in examples]
  rows = [tokenize.map(ex)["tokens"] for ex in examples]
  return prompts, rows


# ---- (a) held-out loss under a schedule -----------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("cfg", "schedule"))
def _loss_sums(params, batch, *, cfg, schedule: Optional[SkipSchedule]):
  mask = None if schedule is None else schedule.layer_mask(batch["target_index"])
  logits = Transformer(cfg).apply({"params": params}, batch["inputs"],
                                  positions=batch["positions"],
                                  segment_ids=batch["segment_ids"], layer_mask=mask)
  return step_lib.cross_entropy(logits, batch["targets"], batch["loss_mask"])


def heldout_loss(cfg, params, rows: Sequence[np.ndarray], schedule: Optional[SkipSchedule],
                 batch_size: int = 16) -> dict[str, float]:
  """Mean target-token loss (nats) of TokenizeExample rows, one example per row, teacher-forced
  with schedule.layer_mask(target_index) (None: every layer). -> {'loss', 'tokens'}."""
  length = max(len(r) for r in rows)
  total, count = 0.0, 0.0
  params = nn.unbox(params)
  for start in range(0, len(rows), batch_size):
    chunk = rows[start:start + batch_size]
    batch = {k: np.zeros((batch_size, length), np.int32)
             for k in ("inputs", "targets", "segment_ids", "positions")}
    batch["loss_mask"] = np.zeros((batch_size, length), np.float32)
    batch["target_index"] = np.full((batch_size, length), -1, np.int32)
    for i, row in enumerate(chunk):
      n = len(row)
      batch["inputs"][i, :n], batch["targets"][i, :n] = row[:, 0], row[:, 1]
      batch["loss_mask"][i, :n], batch["target_index"][i, :n] = row[:, 2], row[:, 3]
      batch["segment_ids"][i, :n], batch["positions"][i, :n] = 1, np.arange(n)
    s, c = _loss_sums(params, batch, cfg=cfg, schedule=schedule)
    total, count = total + float(s), count + float(c)
  return {"loss": total / max(count, 1.0), "tokens": int(count)}


# ---- (b) generations and ROUGE-L ------------------------------------------------------------------


def generate_all(cfg, params, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, eos_id: int,
                 batch_size: int, skip: Optional[SkipSchedule] = None,
                 early_exit: Optional[EarlyExit] = None) -> tuple[list[list[int]], float]:
  """Greedy generations in batches -> (token lists without the EOS, mean layers per generated
  token over every step of every batch)."""
  outputs, layers = [], []
  for start in range(0, len(prompts), batch_size):
    out, stats = generation.generate(cfg, params, prompts[start:start + batch_size],
                                     max_new_tokens=max_new_tokens, eos_id=eos_id, skip=skip,
                                     early_exit=early_exit, return_stats=True)
    outputs += [o[:-1] if o and o[-1] == eos_id else o for o in out]
    layers += stats["layers_per_token"]
  return outputs, float(np.mean(layers))


def rouge_scores(tokenizer, outputs: Sequence[Sequence[int]],
                 references: Sequence[str]) -> tuple[list[float], list[str]]:
  """(ROUGE-L F1 of each decoded output against its reference, the decoded outputs)."""
  texts = [tokenizer.decode(list(o)) for o in outputs]
  return [rouge_l(t, r) for t, r in zip(texts, references)], texts


def sem(values: Sequence[float]) -> float:
  """Standard error of the mean (sample standard deviation / sqrt(n)); 0 for n < 2."""
  values = np.asarray(values, np.float64)
  return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


# ---- (c) decode speed -----------------------------------------------------------------------------


def _run(cfg, params, prompts, max_new: int, out_len: int, skip, early_exit, layout):
  """One generate program as `generate` buckets it (greedy, no EOS), blocking ->
  layers run per position [out_len]."""
  program = generation.prepare(cfg, params, prompts, max_new_tokens=max_new, out_len=out_len,
                               decode_layout=layout, skip=skip, early_exit=early_exit)
  return np.asarray(program.run()[2])


def decode_times(cfg, settings: dict[str, tuple[Any, Optional[SkipSchedule], Optional[EarlyExit]]],
                 prompts: Sequence[Sequence[int]], *, new_tokens: int, out_len: int, reps: int,
                 reference: str) -> dict[str, dict[str, float]]:
  """Decode step times and speedups against settings[reference], for settings {name: (params,
  skip, early_exit)}.

  A step time is (the whole call - the max_new_tokens=1 call of the same program) / (new_tokens
  - 1). Each of `reps` rounds times every setting right next to the reference (in alternating
  order), so that a speedup is a ratio of two measurements taken within about a second of each
  other: on a shared machine the load changes on longer time scales. Returns {name: {'step_ms':
  median step time, 'speedup': median over rounds of reference step / this step, 'speedup_q25',
  'speedup_q75': its quartiles, 'decode_layers': mean layers over the timed decode steps}}.

  out_len: the program's output bucket; pass bucket(M) of the generations to reuse their
  compiled programs (the number of new tokens is a traced value)."""
  if new_tokens < 2:
    raise ValueError(f"new_tokens must be >= 2 to time decode steps, got {new_tokens}")
  if reference not in settings:
    raise ValueError(f"reference {reference!r} is not one of the settings {sorted(settings)}")
  layout = generation.default_decode_layout()
  if layout == "stacked":
    layout = "per_layer"  # skip / early_exit need a per-layer layout
  params = {name: jax.device_put(nn.unbox(p)) for name, (p, _, _) in settings.items()}
  layers = {}
  for name, (_, skip, early) in settings.items():  # compile + warm up
    layers[name] = _run(cfg, params[name], prompts, new_tokens, out_len, skip, early, layout)
    _run(cfg, params[name], prompts, 1, out_len, skip, early, layout)

  def step_ms(name: str) -> float:
    _, skip, early = settings[name]
    elapsed = []
    for n in (new_tokens, 1):
      start = time.perf_counter()
      _run(cfg, params[name], prompts, n, out_len, skip, early, layout)
      elapsed.append(time.perf_counter() - start)
    return 1e3 * max(elapsed[0] - elapsed[1], 1e-9) / (new_tokens - 1)

  steps = {name: [] for name in settings}
  ratios = {name: [] for name in settings}
  for rep in range(reps):
    for name in settings:
      if name == reference:
        continue
      pair = (reference, name) if rep % 2 == 0 else (name, reference)
      measured = {n: step_ms(n) for n in pair}
      for n in pair:
        steps[n].append(measured[n])
      ratios[name].append(measured[reference] / measured[name])
  ratios[reference] = [1.0]
  result = {}
  for name in settings:
    q25, q50, q75 = np.percentile(ratios[name], [25, 50, 75])
    result[name] = {"step_ms": statistics.median(steps[name]), "speedup": float(q50),
                    "speedup_q25": float(q25), "speedup_q75": float(q75),
                    "decode_layers": float(np.mean(layers[name][1:new_tokens]))}
  return result


# ---- the experiment -------------------------------------------------------------------------------


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--root", default="workdirs/skipdecode",
                 help="holds ft_1x, ft_2x, ... (run.sh's workdirs) and data/")
  p.add_argument("--speedups", default="1,2,3,5")
  p.add_argument("--data_dir", default="", help="default: the 1x run's config.data.data_dir")
  p.add_argument("--num_examples", type=int, default=128)
  p.add_argument("--max_new_tokens", type=int, default=128)
  p.add_argument("--batch_size", type=int, default=16)
  p.add_argument("--thresholds", default="0.1,0.01,0.003,0.001,0.0003,0.0001,0.0",
                 help="CALM confidence thresholds (top-1 minus top-2 probability)")
  p.add_argument("--speed_new_tokens", type=int, default=64)
  p.add_argument("--speed_reps", type=int, default=9)
  p.add_argument("--num_samples", type=int, default=3)
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
  config = json.loads((workdir / "config.json").read_text())
  summary = json.loads((workdir / "summary.json").read_text())
  return {"workdir": str(workdir), "steps": summary.get("step"),
          "final_train_loss": summary.get("final_loss"), "eval_loss": summary.get("eval_loss"),
          "config": config}


def closest(entries: Sequence[dict[str, Any]], target: float) -> Optional[dict[str, Any]]:
  """The entry whose measured speedup is closest to target (in ratio: |log(measured/target)|)."""
  if not entries:
    return None
  return min(entries, key=lambda e: abs(np.log(e["measured_speedup"] / target)))


def main(args: argparse.Namespace) -> dict[str, Any]:
  wall_start = time.perf_counter()
  root = pathlib.Path(args.root)
  speedups = [float(s) for s in args.speedups.split(",")]
  if 1.0 not in speedups:
    raise ValueError("--speedups must include 1 (the fine-tuned full model: the reference)")
  label = lambda s: f"{s:g}x"  # noqa: E731
  runs = {}
  for s in speedups:
    workdir = root / f"ft_{label(s)}"
    if not (workdir / "summary.json").exists():
      raise FileNotFoundError(f"{workdir}/summary.json not found: run experiments/skipdecode/"
                              "run.sh (or its fine-tuning stage) first")
    runs[s] = _run_info(workdir)
  base_config = runs[1.0]["config"]
  data_dir = args.data_dir or base_config["data"]["data_dir"]
  seq_len = base_config["data"]["seq_len"]

  print("loading models", flush=True)
  models = {s: checkpoint.load_run(runs[s]["workdir"]) for s in speedups}
  cfg, params_1x, tokenizer = models[1.0]
  eos = tokenizer.eos_id
  schedules = {s: skipdecode.from_config(
      ml_dict(runs[s]["config"].get("skip")), models[s][0].num_layers) for s in speedups}
  if schedules[1.0] is not None:
    raise ValueError("the 1x run was trained with a skip schedule; expected none")

  examples = load_examples(data_dir, args.num_examples,
                           **builder_kwargs(base_config["data"]))
  prompts, rows = encode(tokenizer, examples, seq_len)
  references = [ex["target"] for ex in examples]
  print(f"{len(examples)} held-out examples; prompts of {min(map(len, prompts))}.."
        f"{max(map(len, prompts))} tokens", flush=True)

  # settings: name -> (kind, target, params, skip, early_exit)
  settings: dict[str, tuple] = {}
  for s in speedups:
    settings[f"skipdecode {label(s)}"] = ("skipdecode", s, models[s][1], schedules[s], None)
  for s in speedups:
    if s != 1.0:
      settings[f"schedule-only {label(s)}"] = ("schedule_only", s, params_1x, schedules[s], None)
  for threshold in [float(t) for t in args.thresholds.split(",") if t]:
    settings[f"calm {threshold:g}"] = ("calm", None, params_1x, None,
                                       EarlyExit(threshold, exit_layers=None, min_layers=1))

  entries, texts, scores = [], {}, {}
  for name, (kind, target, params, skip, early) in settings.items():
    start = time.perf_counter()
    entry = {"name": name, "kind": kind, "target_speedup": target,
             "threshold": None if early is None else early.threshold}
    if skip is not None:
      entry["schedule"] = {"max_layers": skip.max_layers, "min_layers": skip.min_layers,
                           "warmup_layers": skip.warmup_layers, "decay_len": skip.decay_len,
                           "nominal_over_decay_len": skip.nominal_speedup(skip.decay_len)}
    entry.update(heldout_loss(cfg, params, rows, skip) if early is None
                 else {"loss": None, "tokens": None})
    with calm_confidence(args.calm_confidence):
      outputs, entry["mean_layers"] = generate_all(
          cfg, params, prompts, max_new_tokens=args.max_new_tokens, eos_id=eos,
          batch_size=args.batch_size, skip=skip, early_exit=early)
    scores[name], texts[name] = rouge_scores(tokenizer, outputs, references)
    entry["rouge_l"], entry["rouge_l_sem"] = float(np.mean(scores[name])), sem(scores[name])
    entry["mean_new_tokens"] = float(np.mean([len(o) for o in outputs]))
    entry["eval_s"] = time.perf_counter() - start
    print(f"{name:>18}: loss {entry['loss'] if entry['loss'] is None else round(entry['loss'], 4)}"
          f"  ROUGE-L {entry['rouge_l']:.4f}  mean layers {entry['mean_layers']:.2f}"
          f"  ({entry['eval_s']:.0f} s)", flush=True)
    entries.append(entry)

  print("timing decode steps", flush=True)
  speed_prompts = prompts[:args.batch_size]
  with calm_confidence(args.calm_confidence):
    timing = decode_times(
        cfg, {name: (params, skip, early)
              for name, (_, _, params, skip, early) in settings.items()},
        speed_prompts, new_tokens=args.speed_new_tokens,
        out_len=generation.bucket(args.max_new_tokens), reps=args.speed_reps,
        reference="skipdecode 1x")
  for entry in entries:
    t = timing[entry["name"]]
    entry["step_ms"] = t["step_ms"]
    entry["decode_tok_per_s"] = len(speed_prompts) / (t["step_ms"] / 1e3)
    entry["measured_speedup"] = t["speedup"]
    entry["measured_speedup_iqr"] = [t["speedup_q25"], t["speedup_q75"]]
    entry["decode_layers"] = t["decode_layers"]
    entry["nominal_speedup"] = cfg.num_layers / t["decode_layers"]

  for entry in entries:  # paired with the 1x model on the same examples
    diff = np.subtract(scores[entry["name"]], scores["skipdecode 1x"])
    entry["rouge_l_diff_vs_1x"], entry["rouge_l_diff_sem"] = float(diff.mean()), sem(diff)
    entry["rouge_l_per_example"] = [round(x, 4) for x in scores[entry["name"]]]

  calm = [e for e in entries if e["kind"] == "calm"]
  matched = {}
  for s in speedups:
    if s != 1.0:
      best = closest(calm, s)
      matched[label(s)] = None if best is None else best["name"]

  sample_ids = [i for i, ex in enumerate(examples) if len(ex["target"]) <= 400][:args.num_samples]
  samples = [{"name": examples[i]["name"], "path": examples[i]["path"],
              "prompt": examples[i]["prompt"], "reference": references[i],
              "outputs": {name: texts[name][i] for name in settings}} for i in sample_ids]
  device = jax.devices()[0]
  result = {
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "machine": {"device": f"{device.platform}: {getattr(device, 'device_kind', '')}",
                  "cpu_count": os.cpu_count(), "pinned_cpu": PINNED_CPU,
                  "load_average_at_end": os.getloadavg(),
                  "python": platform.python_version(), "jax": jax.__version__,
                  "platform": platform.platform()},
      "args": vars(args),
      "model": {"num_layers": cfg.num_layers, "d_model": cfg.d_model, "vocab": cfg.vocab_size,
                "params": int(sum(x.size for x in jax.tree_util.tree_leaves(params_1x)))},
      "runs": {label(s): {k: v for k, v in runs[s].items() if k != "config"} for s in speedups},
      "examples": {"count": len(examples), "prompt_tokens_mean": float(np.mean(list(map(
          len, prompts)))), "target_tokens_mean": float(np.mean([r[:, 2].sum() for r in rows]))},
      "notes": {
          "loss": "nats per target token (EOS included), teacher-forced under the setting's "
                  "layer mask; null for CALM: its depth depends on its own generated tokens and "
                  "on the batch, so no fixed teacher-forced computation exists to score",
          "rouge_l": "mean ROUGE-L F1 over code tokens (regex \\w+|[^\\w\\s]) of greedy "
                     f"generations (max {args.max_new_tokens} new tokens, stop at EOS, batches of "
                     f"{args.batch_size}) vs the reference body; rouge_l_sem: its standard "
                     "error over examples; rouge_l_diff_vs_1x (+ _sem): the paired difference "
                     "from 'skipdecode 1x' on the same examples",
          "mean_layers": "layers per generated token in those generations (return_stats; g_0 "
                         "from the full-depth prompt pass counts as L)",
          "measured_speedup": "median over rounds of the decode step time of 'skipdecode 1x' / "
                              "the setting's, each round timing the two next to each other; "
                              f"batch of {len(speed_prompts)} prompts, {args.speed_new_tokens} "
                              f"new tokens, no EOS, decode steps only, {args.speed_reps} rounds; "
                              "measured_speedup_iqr: the quartiles over rounds",
          "nominal_speedup": "num_layers / mean layers over the timed decode steps",
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


def ml_dict(section: Optional[dict[str, Any]]):
  """A config.json section as the ConfigDict-like mapping `skipdecode.from_config` reads."""
  if section is None:
    return None
  import ml_collections  # pylint: disable=g-import-not-at-top
  return ml_collections.ConfigDict(section)


if __name__ == "__main__":
  sys.exit(0 if main(_parse()) else 1)
