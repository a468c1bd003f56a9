"""Measures every model of the phi-1 ablation (run.sh): 3 arms x seeds x before / after the
exercise fine-tune.

    python experiments/phi1/evaluate.py --root=ROOT [--tiny] [--shard=0 --num_shards=2]

The models: ROOT/pretrain/seed=S/ARM (the pretraining studies' arms) and the fine-tuning sweep's
runs (`phi_jax.sweep.plan_sweep` of configs/phi1_ablation.py:stage=finetune: init_from says
which base model each one started from). For each, in its own folder (a current file is reused,
so a rerun measures only what changed; shards split the models between processes):

  study_eval.json      pass@1 as the study measures it (`phi_jax.study.measure.measure` with the
                       config's `study` settings: greedy bodies of the unseen-variant and
                       held-out-family exercises and the hand-written problems, run against
                       their asserts in the sandbox). The studies write it for the base models;
                       this measures the fine-tuned ones (and any base model it is missing for).
  heldout_losses.json  teacher-forced losses, nats per token:
                       stdlib      the held-out standard-library files (code_corpus's validation
                                   split: no arm, and not the filter, read them), up to
                                   --code_max_bytes of them in file order, rows of seq_len
                       exercises   the reference body + EOS given the prompt, tokenized as the
                                   prompt_completion pipeline does (the body's ids as they
                                   follow the prompt in the joint encoding), on the same
                                   unseen-variant ('validation') and held-out-family ('test')
                                   exercises that pass@1 uses
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any, Sequence

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "phi1_ablation.py"
LOSSES = "heldout_losses.json"
LOSS_VERSION = 1  # bump when what heldout_losses.json measures changes


def _spec(stage: str, root: str, tiny: bool) -> str:
  return f"{CONFIG}:stage={stage},root={root}" + (",tiny" if tiny else "")


def models(root: str, tiny: bool) -> list[dict[str, Any]]:
  """[{'arm', 'seed', 'stage': 'pretrain' | 'finetune', 'workdir'}] of the whole experiment."""
  from phi_jax import sweep  # pylint: disable=g-import-not-at-top
  module = sweep.load_module(CONFIG)
  p = module.paths(root)
  seeds = module.TINY_SEEDS if tiny else module.SEEDS
  out = [{"arm": arm, "seed": seed, "stage": "pretrain",
          "workdir": f"{p['pretrain']}/seed={seed}/{arm}"}
         for arm in module.ARMS for seed in seeds]
  for run in sweep.plan_sweep(_spec("finetune", root, tiny), p["finetune"]):
    base = pathlib.Path(run.overrides["init_from"])
    out.append({"arm": base.name, "seed": int(run.overrides["seed"]), "stage": "finetune",
                "workdir": str(run.workdir), "init_from": str(base)})
  return out


def exercise_loss(cfg: Any, params: Any, tokenizer: Any, exercises: Sequence[Any]) -> float:
  """Mean nats per token of body + EOS given the prompt (the prompt_completion tokenization)."""
  from phi_jax.evals import scoring  # pylint: disable=g-import-not-at-top
  seqs, starts = [], []
  for ex in exercises:
    prompt = tokenizer.encode(ex.prompt)
    joint = tokenizer.encode(ex.prompt + ex.solution)
    if joint[:len(prompt)] == prompt and len(joint) > len(prompt):
      seqs.append(joint + [tokenizer.eos_id])
    else:  # the prompt's ids are not a prefix of the whole (rare): as the pipeline does
      seqs.append(prompt + tokenizer.encode(ex.solution) + [tokenizer.eos_id])
    starts.append(len(prompt))
  sums, counts = scoring.sequence_logprobs(cfg, params, seqs, starts, batch_size=8)
  return float(-sums.sum() / counts.sum())


def stdlib_texts(config: Any, max_bytes: int) -> list[str]:
  """The held-out stdlib files (code_corpus's validation split), up to max_bytes in order."""
  from phi_jax.evals import perplexity  # pylint: disable=g-import-not-at-top
  kwargs = {"validation_fraction": config.data.validation_fraction}
  if config.data.max_files:
    kwargs["max_files"] = config.data.max_files
  texts = perplexity.dataset_texts("code_corpus", config.data.data_dir, split="validation",
                                   builder_kwargs=kwargs)
  kept, used = [], 0
  for text in texts:
    if kept and used + len(text.encode("utf-8")) > max_bytes:
      break
    kept.append(text)
    used += len(text.encode("utf-8"))
  return kept


def losses(workdir: pathlib.Path, code_texts: list[str], sets: dict[str, list[Any]],
           seq_len: int) -> dict[str, Any]:
  from phi_jax.convert.load import load_model  # pylint: disable=g-import-not-at-top
  from phi_jax.evals import perplexity  # pylint: disable=g-import-not-at-top
  start = time.time()
  model = load_model(workdir, require_tokenizer=True)
  code = perplexity.evaluate_texts(model.cfg, model.params, model.tokenizer, code_texts,
                                   seq_len=seq_len, batch_size=16)
  out = {"step": model.step,
         "stdlib": {k: code[k] for k in ("loss", "bits_per_byte", "tokens", "bytes",
                                         "documents")},
         "exercises": {name: exercise_loss(model.cfg, model.params, model.tokenizer, items)
                       for name, items in sets.items()}}
  out["seconds"] = round(time.time() - start, 1)
  return out


def _current(path: pathlib.Path, step: Any, **settings: Any) -> bool:
  if not path.exists():
    return False
  cached = json.loads(path.read_text())
  return cached.get("step") == step and all(cached.get(k) == v for k, v in settings.items())


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--root", required=True)
  parser.add_argument("--tiny", action="store_true")
  parser.add_argument("--shard", type=int, default=0)
  parser.add_argument("--num_shards", type=int, default=1)
  parser.add_argument("--code_max_bytes", type=int, default=400_000)
  args = parser.parse_args(argv)
  if not 0 <= args.shard < args.num_shards:
    parser.error(f"--shard must be in [0, --num_shards={args.num_shards}), got {args.shard}")
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.ERROR)
  tfds.disable_progress_bar()
  from phi_jax.config_args import load_config  # pylint: disable=g-import-not-at-top
  from phi_jax.curation.stages import write_json  # pylint: disable=g-import-not-at-top
  from phi_jax.study import measure  # pylint: disable=g-import-not-at-top

  config = load_config(_spec("pretrain", args.root, args.tiny))
  study = json.loads(json.dumps(config.study.to_dict()))  # as a study stores it
  sets = measure.problem_sets(config.study)
  sets = {name: items for name, items in sets.items() if name in ("validation", "test")}
  code_texts = stdlib_texts(config, args.code_max_bytes)
  loss_settings = {"version": LOSS_VERSION, "code_max_bytes": args.code_max_bytes,
                   "eval_seed": config.study.eval_seed,
                   "n": {name: len(items) for name, items in sets.items()}}
  todo = models(args.root, args.tiny)[args.shard::args.num_shards]
  for m in todo:
    workdir = pathlib.Path(m["workdir"])
    summary = workdir / "summary.json"
    if not summary.exists():
      raise SystemExit(f"{workdir} has no summary.json: train it first (run.sh)")
    step = json.loads(summary.read_text()).get("step")
    name = f"{m['stage']} {m['arm']} seed {m['seed']}"
    path = workdir / "study_eval.json"
    if not _current(path, step, study=study):
      print(f"== {name}: pass@1", flush=True)
      result = measure.measure(workdir, config.study)
      result["study"] = study
      write_json(path, result)
    path = workdir / LOSSES
    if not _current(path, step, settings=loss_settings):
      print(f"== {name}: held-out losses", flush=True)
      result = losses(workdir, code_texts, sets, config.data.seq_len)
      result["settings"] = loss_settings
      write_json(path, result)
      print(f"   stdlib {result['stdlib']['loss']:.3f}, exercises " + ", ".join(
          f"{k} {v:.3f}" for k, v in result["exercises"].items()), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
