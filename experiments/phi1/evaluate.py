"""Evaluates the six models of the phi-1 ablation (run.sh): 3 pretraining arms x before / after
the exercise fine-tune.

    python experiments/phi1/evaluate.py --root=workdirs/phi1_ablation \\
        --tokenizer=workdirs/phi1_ablation/pretrain_unfiltered/tokenizer/sp.model --out=results.json

Per model (ROOT/pretrain_<arm>, ROOT/finetune_<arm>; every one shares the tokenizer):

  pass@1 test        greedy pass@1 on `n_eval` exercises of procedural's 'test' split: the 6
                     HELDOUT_FAMILIES, task types no run trained on (the HumanEval stand-in).
  pass@1 validation  the same on `n_eval` exercises of the 'validation' split: unseen
                     parameterisations of the training families (an easier, in-distribution set).
  exercise loss      teacher-forced loss (nats per token) of the reference body + EOS given the
                     prompt (signature + docstring), on the same exercises: what the fine-tune
                     optimises, measured on held-out exercises.
  code loss          nats per token (and bits per byte) on every file of code_corpus's validation
                     split (the stdlib files no arm trained on: the filter read only the train
                     split), in rows of `seq_len` tokens: the common held-out set of the base models.

Generation: greedy `phi_jax.decoding.generate` (`max_new_tokens`, stop at EOS), prompts
sorted by length in batches of `batch_size`; the text is cut at HumanEval's stop sequences and at
the first non-empty line that is not indented (the end of the function body);
`procedural.evaluate_exercises` runs prompt + completion + asserts in the sandbox. 95% Wilson
intervals are given next to each pass@1. results.json is written atomically.

Tokenization follows each model's training (DECODING): the base models were trained on whole
documents, so the prompt is scored / continued as one text ('joint': the exercise loss scores
encode(prompt + body) from the prompt's last token; generated ids are decoded together with the
prompt, `codegen.decode_continuation`). The fine-tunes were trained by the prompt_completion
pipeline (`pipeline.TokenizeExample`), which encodes prompt and target SEPARATELY: with this
SentencePiece (dummy prefix on), a body '    return x' is then '▁▁▁▁' '▁return' ... instead of
'▁▁▁▁' 'return' ..., an extra leading space when decoded after the prompt ('target': loss on
encode(prompt) + encode(body); generated ids decoded on their own, `tokenizer.decode(new)`, which
drops that dummy space). Every model is also scored the other way (`*_other` fields): with joint
decoding every fine-tuned completion starts with 5 spaces, an IndentationError.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time
from typing import Any, Sequence

import jax

from phi_jax.data import builders
from phi_jax.curation import procedural
from phi_jax.data import tokenizer as tokenizers
from phi_jax.decoding import generate
from phi_jax.evals import codegen, humaneval, perplexity, scoring
from phi_jax.evals.functions import function_body, wilson
from phi_jax.train import checkpoint

ARMS = ("unfiltered", "filtered", "textbook")
ARM_LABELS = {"unfiltered": "stdlib (unfiltered)", "filtered": "filtered stdlib",
              "textbook": "filtered + procedural textbooks"}
STAGES = ("pretrain", "finetune")
STOP = tuple(humaneval.STOP_SEQUENCES) + ("\nassert",)


DECODING = {"pretrain": "joint", "finetune": "target"}
OTHER = {"joint": "target", "target": "joint"}


def exercise_loss(cfg, params, tokenizer, exercises: Sequence[procedural.Exercise],
                  mode: str) -> float:
  """Mean nats per token of body + EOS given the prompt, tokenized as `mode` (module doc)."""
  seqs, starts = [], []
  for ex in exercises:
    prompt = tokenizer.encode(ex.prompt)
    joint = tokenizer.encode(ex.prompt + ex.solution)
    if mode == "joint" and joint[:len(prompt)] == prompt:
      seqs.append(joint + [tokenizer.eos_id])
    elif mode in ("joint", "target"):  # (joint: the prompt's tokens are not a prefix; rare)
      seqs.append(prompt + tokenizer.encode(ex.solution) + [tokenizer.eos_id])
    else:
      raise ValueError(f"mode must be 'joint' or 'target', got {mode!r}")
    starts.append(len(prompt))
  sums, counts = scoring.sequence_logprobs(cfg, params, seqs, starts, batch_size=8)
  return float(-sums.sum() / counts.sum())


def generate_ids(cfg, params, tokenizer, prompts: Sequence[str], *, max_new_tokens: int,
                 batch_size: int) -> list[tuple[list[int], list[int]]]:
  """Greedy (prompt ids, new ids up to EOS) per prompt; prompts batched in length order."""
  ids = [tokenizer.encode(p) for p in prompts]
  order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
  out: list = [None] * len(ids)
  for b in range(0, len(order), batch_size):
    chunk = order[b:b + batch_size]
    new = generate(cfg, params, [ids[i] for i in chunk], max_new_tokens=max_new_tokens,
                   temperature=0.0, eos_id=tokenizer.eos_id, rng=jax.random.key(b))
    for i, tokens in zip(chunk, new):
      tokens = list(tokens)
      if tokenizer.eos_id in tokens:
        tokens = tokens[:tokens.index(tokenizer.eos_id)]
      out[i] = (ids[i], tokens)
  return out


def decode(tokenizer, prompt_ids: list[int], new_ids: list[int], mode: str) -> str:
  """The completion text of generated ids, decoded as `mode` (module doc), cut to the body."""
  if mode == "joint":
    text = codegen.decode_continuation(tokenizer, prompt_ids, new_ids, None)
  elif mode == "target":
    text = tokenizer.decode(list(new_ids))
  else:
    raise ValueError(f"mode must be 'joint' or 'target', got {mode!r}")
  return function_body(codegen.truncate(text, STOP))


def pass_at_1(exercises: Sequence[procedural.Exercise], bodies: Sequence[str]) -> dict[str, Any]:
  result = procedural.evaluate_exercises(exercises, list(bodies), k=(1,))
  passed = sum(p["passed"][0] for p in result["problems"])
  statuses: dict[str, int] = {}
  for p in result["problems"]:
    statuses[p["status"][0]] = statuses.get(p["status"][0], 0) + 1
  return {"pass@1": result["pass@1"], "passed": passed, "n": len(exercises),
          "ci95": wilson(passed, len(exercises)), "per_family": result["per_family"],
          "statuses": statuses,
          "samples": [{"id": ex.id, "prompt": ex.prompt, "completion": b, "passed": p["passed"][0]}
                      for ex, b, p in list(zip(exercises, bodies, result["problems"]))[:3]]}


def evaluate_model(workdir: pathlib.Path, stage: str, tokenizer, sets: dict[str, list],
                   code_texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
  start = time.time()
  cfg, params, _ = checkpoint.load_run(workdir)
  out: dict[str, Any] = {"workdir": str(workdir),
                         "num_params": int(sum(x.size for x in jax.tree.leaves(params)))}
  summary = workdir / "summary.json"
  if summary.exists():
    s = json.loads(summary.read_text())
    out.update(steps=s.get("step"), final_train_loss=s.get("final_loss"),
               run_eval_loss=s.get("eval_loss"))
  code = perplexity.evaluate_texts(cfg, params, tokenizer, code_texts, seq_len=args.seq_len,
                                   batch_size=16)
  out["code_loss"] = code["loss"]
  out["code_bits_per_byte"] = code["bits_per_byte"]
  out["code_tokens"] = code["tokens"]
  mode = DECODING[stage]
  out["decoding"] = mode
  for split, exercises in sets.items():
    out[f"exercise_loss_{split}"] = exercise_loss(cfg, params, tokenizer, exercises, mode)
    out[f"exercise_loss_{split}_other"] = exercise_loss(cfg, params, tokenizer, exercises,
                                                        OTHER[mode])
    gens = generate_ids(cfg, params, tokenizer, [ex.prompt for ex in exercises],
                        max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    for m, key in ((mode, split), (OTHER[mode], f"{split}_other")):
      out[key] = pass_at_1(exercises, [decode(tokenizer, p, n, m) for p, n in gens])
  out["eval_seconds"] = round(time.time() - start, 1)
  return out


def main(argv: list[str]) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--root", type=pathlib.Path, required=True)
  parser.add_argument("--tokenizer", required=True)
  parser.add_argument("--out", type=pathlib.Path, required=True)
  parser.add_argument("--n_eval", type=int, default=200)
  parser.add_argument("--eval_seed", type=int, default=2024)
  parser.add_argument("--max_new_tokens", type=int, default=128)
  parser.add_argument("--batch_size", type=int, default=50)
  parser.add_argument("--seq_len", type=int, default=256)
  parser.add_argument("--code_validation_fraction", type=float, default=0.05)
  args = parser.parse_args(argv)

  tokenizer = tokenizers.load(args.tokenizer)
  sets = {split: procedural.generate(args.n_eval, seed=args.eval_seed, split=split)
          for split in ("test", "validation")}
  source = builders.build("code_corpus", args.root / "tfds",
                          validation_fraction=args.code_validation_fraction
                          ).as_data_source("validation")
  code_texts = [source[i]["text"].decode("utf-8") for i in range(len(source))]
  models: dict[str, dict[str, Any]] = {}
  for arm in ARMS:
    for stage in STAGES:
      workdir = args.root / f"{stage}_{arm}"
      print(f"== {stage}_{arm}", flush=True)
      result = evaluate_model(workdir, stage, tokenizer, sets, code_texts, args)
      models[f"{stage}_{arm}"] = dict(result, arm=arm, stage=stage, label=ARM_LABELS[arm])
      print(json.dumps({k: v for k, v in result.items() if not isinstance(v, dict)}),
            {s: round(result[s]["pass@1"], 4) for s in result if isinstance(result[s], dict)},
            flush=True)
  cpu = ""
  try:
    cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
               if line.startswith("model name"))
  except (OSError, StopIteration):
    pass
  results = {
      "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
      "machine": {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
                  "python": platform.python_version(), "jax": jax.__version__,
                  "device": str(jax.devices()[0])},
      "settings": {k: (str(v) if isinstance(v, pathlib.Path) else v)
                   for k, v in vars(args).items()},
      "eval_sets": {s: {"n": len(v), "families": sorted({e.family for e in v})}
                    for s, v in sets.items()},
      "code_validation_files": len(code_texts),
      "models": models,
  }
  mix = args.root / "data" / "code_textbook" / "mix.json"
  if mix.exists():
    results["mixture"] = json.loads(mix.read_text())
  args.out.parent.mkdir(parents=True, exist_ok=True)
  tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
  tmp.write_text(json.dumps(results, indent=2) + "\n")
  os.replace(tmp, args.out)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main(sys.argv[1:])
