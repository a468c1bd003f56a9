"""Evaluate a model (a training workdir, a converted phi_jax checkpoint or a Hugging Face folder)
on code, multiple-choice and perplexity tasks.

    python -m phi_jax.eval --model=DIR --task=humaneval
    python -m phi_jax.eval --model=/models/phi-1_5 --task=mc:piqa:/data/piqa_valid.jsonl \\
        --task=mbpp:/data/mbpp.jsonl --limit=100 --out=/tmp/eval
    python -m phi_jax.eval --model=DIR --task=humaneval --num_samples=20 --temperature=0.8 \\
        --top_p=0.95 --k=1,10

Tasks (repeat --task): humaneval[:PATH], mbpp:PATH, mc:NAME:PATH, ppl:DATASET[:SPLIT] (see
phi_jax/evals/tasks.py). The folder's format is told from its contents (phi_jax/convert/load.py):
a workdir gives its newest checkpoint (or --step) and the run's tokenizer (its tokenizer/sp.model,
else config.data.tokenizer, else its init_from's); a checkpoint or HF folder its tokenizer.model /
tokenizer.json. --tokenizer overrides them (and is needed where the folder has none). --workdir,
--hf_dir and --ckpt_dir are older names of --model. Code tasks: --max_new_tokens defaults to 512,
capped to half the model's context (with a message) so that prompts fit. Results go to --out
(default DIR/eval/step_N for a workdir, else DIR/eval): results.json, results.md, <task>.jsonl.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

from absl import app, flags, logging

_MODEL = flags.DEFINE_string("model", None, "A training workdir, a phi_jax checkpoint "
                             "(config.json + params/) or a Hugging Face folder.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Same as --model (older name).")
_HF_DIR = flags.DEFINE_string("hf_dir", None, "Same as --model (older name).")
_CKPT_DIR = flags.DEFINE_string("ckpt_dir", None, "Same as --model (older name).")
_STEP = flags.DEFINE_integer("step", None, "A workdir's checkpoint step (default: the newest).")
_TASKS = flags.DEFINE_multi_string("task", None, "humaneval[:PATH] | mbpp:PATH | mc:NAME:PATH | "
                                   "ppl:DATASET[:SPLIT]; repeat for several.")
_OUT = flags.DEFINE_string("out", None, "Output folder for results.json / results.md / *.jsonl.")
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "Tokenizer file or folder (overrides).")
_LIMIT = flags.DEFINE_integer("limit", None, "Only the first N problems / examples / documents.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Code tasks: samples per problem.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "Code tasks: 0 = greedy.")
_TOP_P = flags.DEFINE_float("top_p", None, "Code tasks: nucleus sampling.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", None, "Code tasks: tokens per completion "
                                "(default: 512, capped to half the model's context).")
_K = flags.DEFINE_list("k", ["1", "10", "100"], "pass@k values (those <= num_samples).")
_TIMEOUT = flags.DEFINE_float("timeout_s", 10.0, "Code tasks: wall time per program.")
_WORKERS = flags.DEFINE_integer("workers", None, "Code tasks: programs run in parallel.")
_ISOLATION = flags.DEFINE_enum("isolation", "auto", ["auto", "namespaces", "userns", "uid",
                                                     "rlimits"],
                               "Code tasks: sandbox level; auto = the strongest that works here "
                               "(README 'Sandbox threat model').")
_REQUIRE_ISOLATION = flags.DEFINE_enum("require_isolation", None, ["namespaces", "userns", "uid",
                                                                   "rlimits"],
                                       "Code tasks: refuse to run if the sandbox is weaker than "
                                       "this level.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Generation / scoring batch size.")
_FEWSHOT = flags.DEFINE_integer("num_fewshot", 0, "mc: few-shot examples per question.")
_FEWSHOT_PATH = flags.DEFINE_string("fewshot_path", None, "mc: file to draw few-shot examples "
                                    "from (default: the evaluated file, minus the question).")
_MBPP_SPLIT = flags.DEFINE_string("mbpp_split", "test", "mbpp: test | validation | train | "
                                  "prompt | all.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 512, "ppl: tokens per row.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "ppl: TFDS data dir (default: the run's).")
_BUILDER_KWARGS = flags.DEFINE_string("builder_kwargs", None, "ppl: JSON dict for the dataset "
                                      "builder (default: the run's, for its own dataset).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling and few-shot seed.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16", "float16"], "Compute dtype.")


def load_model(model, step, tokenizer_path):
  """(cfg, params, tokenizer, meta, loaded) from any model folder (phi_jax.convert.load)."""
  from phi_jax.convert import load
  loaded = load.load_model(model, tokenizer=tokenizer_path, step=step, require_tokenizer=True)
  meta = loaded.meta()
  legacy = {"workdir": "workdir", "checkpoint": "ckpt_dir", "hf": "hf_dir"}[loaded.format]
  meta[legacy] = str(model)  # the key results.json had before --model
  return loaded.cfg, loaded.params, loaded.tokenizer, meta, loaded


def _model_flag() -> str:
  given = [(f.name, f.value) for f in (_MODEL, _WORKDIR, _HF_DIR, _CKPT_DIR) if f.value]
  if len(given) != 1:
    raise ValueError("pass exactly one model folder: --model=DIR (a training workdir, phi_jax "
                     "checkpoint or Hugging Face folder; --workdir / --hf_dir / --ckpt_dir are "
                     f"older names), got {[f'--{n}' for n, _ in given] or 'none'}")
  return given[0][1]


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.ERROR)
  from phi_jax.evals import execution, tasks
  try:
    specs = [tasks.parse(t) for t in (_TASKS.value or [])]
    if not specs:
      raise ValueError("pass at least one --task")
    sandbox = None
    if any(t.kind in ("humaneval", "mbpp") for t in specs):  # before the model loads
      sandbox = execution.isolation(_ISOLATION.value, require=_REQUIRE_ISOLATION.value)
      print(f"sandbox isolation: {sandbox.level} ({sandbox.reason})", file=sys.stderr)
    model_dir = _model_flag()
    cfg, params, tok, meta, loaded = load_model(model_dir, _STEP.value, _TOKENIZER.value)
    code = any(t.kind in ("humaneval", "mbpp") for t in specs)
    max_new, note = (tasks.fit_max_new_tokens(_MAX_NEW.value, cfg.max_seq_len) if code
                     else (_MAX_NEW.value, None))
  except (ValueError, FileNotFoundError, execution.IsolationError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  cfg = cfg.replace(dtype=_DTYPE.value)
  if note:
    print(f"note: {note}", file=sys.stderr)
  data_dir, builder_kwargs = _DATA_DIR.value, None
  if _BUILDER_KWARGS.value:
    builder_kwargs = json.loads(_BUILDER_KWARGS.value)
  if loaded.format == "workdir":  # a run's own dataset: its data_dir and builder settings
    data = loaded.run_config.get("data", {})
    data_dir = data_dir or data.get("data_dir") or str(loaded.path / "data")
    if builder_kwargs is None and any(t.kind == "ppl" and t.benchmark == data.get("dataset")
                                      for t in specs):
      builder_kwargs = {k: data[k] for k in ("source_dir", "max_files", "validation_fraction",
                                             "max_bytes") if data.get(k) not in (None, "", 0)}
  options = tasks.Options(
      limit=_LIMIT.value, num_samples=_NUM_SAMPLES.value, temperature=_TEMPERATURE.value,
      top_p=_TOP_P.value, max_new_tokens=max_new, k=[int(k) for k in _K.value],
      timeout_s=_TIMEOUT.value, workers=_WORKERS.value, isolation=_ISOLATION.value,
      require_isolation=_REQUIRE_ISOLATION.value, batch_size=_BATCH.value,
      num_fewshot=_FEWSHOT.value, fewshot_path=_FEWSHOT_PATH.value, mbpp_split=_MBPP_SPLIT.value,
      seq_len=_SEQ_LEN.value, data_dir=data_dir, builder_kwargs=builder_kwargs, seed=_SEED.value,
      progress=sys.stderr.isatty())
  if sandbox is not None:
    meta["sandbox"] = str(sandbox)  # each code task's summary has 'isolation' (level, reason)
  meta.update(dtype=_DTYPE.value, limit=_LIMIT.value, num_samples=_NUM_SAMPLES.value,
              temperature=_TEMPERATURE.value, num_fewshot=_FEWSHOT.value)
  if code:
    meta["max_new_tokens"] = max_new
  results = []
  for task in specs:
    start = time.perf_counter()
    try:
      result = tasks.run(task, cfg, params, tok, options)
    except (ValueError, FileNotFoundError) as e:
      print(f"error: task {task.name}: {e}", file=sys.stderr)
      sys.exit(2)
    result["seconds"] = round(time.perf_counter() - start, 2)
    results.append(result)
    print(f"{task.name}: " + ", ".join(f"{k}={v:.4f}" for k, v in tasks.scalars(result).items()
                                       if k in tasks.HEADLINE[task.kind]), flush=True)
  if _OUT.value:
    out = pathlib.Path(_OUT.value)
  elif loaded.format == "workdir":
    out = pathlib.Path(model_dir) / "eval" / f"step_{loaded.step}"
  else:
    out = pathlib.Path(model_dir) / "eval"
  path = tasks.write_results(out, results, meta)
  print(f"Results: {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
  app.run(main)
