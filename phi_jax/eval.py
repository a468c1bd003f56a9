"""Evaluate a training run's checkpoint or a Hugging Face folder on code, multiple-choice and
perplexity tasks.

    python -m phi_jax.eval --workdir=DIR --task=humaneval
    python -m phi_jax.eval --hf_dir=/models/phi-1_5 --task=mc:piqa:/data/piqa_valid.jsonl \\
        --task=mbpp:/data/mbpp.jsonl --limit=100 --out=/tmp/eval
    python -m phi_jax.eval --workdir=DIR --task=humaneval --num_samples=20 --temperature=0.8 \\
        --top_p=0.95 --k=1,10

Tasks (repeat --task): humaneval[:PATH], mbpp:PATH, mc:NAME:PATH, ppl:DATASET[:SPLIT] (see
phi_jax/evals/tasks.py). With --workdir the newest checkpoint (or --step) and the run's tokenizer
(its tokenizer/sp.model, else config.data.tokenizer, else its init_from's) are used; with --hf_dir
the folder's tokenizer.model / tokenizer.json. --tokenizer overrides both. Results go to --out
(default DIR/eval/step_N or HF_DIR/eval): results.json, results.md and one <task>.jsonl each.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir (its newest checkpoint).")
_HF_DIR = flags.DEFINE_string("hf_dir", None, "A Hugging Face folder (config.json, safetensors).")
_STEP = flags.DEFINE_integer("step", None, "With --workdir: this checkpoint step.")
_TASKS = flags.DEFINE_multi_string("task", None, "humaneval[:PATH] | mbpp:PATH | mc:NAME:PATH | "
                                   "ppl:DATASET[:SPLIT]; repeat for several.")
_OUT = flags.DEFINE_string("out", None, "Output folder for results.json / results.md / *.jsonl.")
_TOKENIZER = flags.DEFINE_string("tokenizer", None, "Tokenizer file or folder (overrides).")
_LIMIT = flags.DEFINE_integer("limit", None, "Only the first N problems / examples / documents.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 1, "Code tasks: samples per problem.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "Code tasks: 0 = greedy.")
_TOP_P = flags.DEFINE_float("top_p", None, "Code tasks: nucleus sampling.")
_MAX_NEW = flags.DEFINE_integer("max_new_tokens", 512, "Code tasks: tokens per completion.")
_K = flags.DEFINE_list("k", ["1", "10", "100"], "pass@k values (those <= num_samples).")
_TIMEOUT = flags.DEFINE_float("timeout_s", 10.0, "Code tasks: wall time per program.")
_WORKERS = flags.DEFINE_integer("workers", None, "Code tasks: programs run in parallel.")
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


def _run_config(workdir: pathlib.Path) -> dict:
  path = workdir / "config.json"
  return json.loads(path.read_text()) if path.exists() else {}


def load_model(workdir, hf_dir, step, tokenizer_path):
  """(cfg, params, tokenizer, meta) from a training workdir or a HF folder."""
  from phi_jax.data import tokenizer as tokenizers
  if (workdir is None) == (hf_dir is None):
    raise ValueError("pass exactly one of --workdir and --hf_dir")
  if workdir is not None:
    from phi_jax.train import checkpoint
    workdir = pathlib.Path(workdir)
    cfg, params, tok = checkpoint.load_run(workdir, step)
    meta = {"workdir": str(workdir), "step": step}
    if step is None:
      import orbax.checkpoint as ocp
      meta["step"] = ocp.CheckpointManager(str((workdir / "checkpoints").resolve()),
                                           options=ocp.CheckpointManagerOptions(
                                               read_only=True)).latest_step()
    if tok is None and tokenizer_path is None:
      data = _run_config(workdir).get("data", {})
      init_from = _run_config(workdir).get("init_from")
      if data.get("tokenizer"):
        tok = tokenizers.load(data["tokenizer"])
      elif init_from:
        tok = tokenizers.find(init_from)
  else:
    from phi_jax.convert import hf
    cfg, params = hf.load(hf_dir)
    meta = {"hf_dir": str(hf_dir)}
    tok = None if tokenizer_path else tokenizers.load(hf_dir)
  if tokenizer_path:
    tok = tokenizers.load(tokenizer_path)
  if tok is None:
    raise ValueError("could not find the run's tokenizer; pass --tokenizer=FILE_OR_DIR")
  if tok.vocab_size > cfg.vocab_size:
    raise ValueError(f"the tokenizer has {tok.vocab_size} tokens but the model only "
                     f"{cfg.vocab_size}: wrong --tokenizer?")
  return cfg, params, tok, meta


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.ERROR)
  from phi_jax.evals import execution, tasks
  try:
    specs = [tasks.parse(t) for t in (_TASKS.value or [])]
    if not specs:
      raise ValueError("pass at least one --task")
    cfg, params, tok, meta = load_model(_WORKDIR.value, _HF_DIR.value, _STEP.value,
                                        _TOKENIZER.value)
  except (ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  cfg = cfg.replace(dtype=_DTYPE.value)
  data_dir, builder_kwargs = _DATA_DIR.value, None
  if _BUILDER_KWARGS.value:
    builder_kwargs = json.loads(_BUILDER_KWARGS.value)
  if _WORKDIR.value:  # a run's own dataset: its data_dir and builder settings by default
    data = _run_config(pathlib.Path(_WORKDIR.value)).get("data", {})
    data_dir = data_dir or data.get("data_dir") or str(pathlib.Path(_WORKDIR.value) / "data")
    if builder_kwargs is None and any(t.kind == "ppl" and t.benchmark == data.get("dataset")
                                      for t in specs):
      builder_kwargs = {k: data[k] for k in ("source_dir", "max_files", "validation_fraction",
                                             "max_bytes") if data.get(k) not in (None, "", 0)}
  options = tasks.Options(
      limit=_LIMIT.value, num_samples=_NUM_SAMPLES.value, temperature=_TEMPERATURE.value,
      top_p=_TOP_P.value, max_new_tokens=_MAX_NEW.value, k=[int(k) for k in _K.value],
      timeout_s=_TIMEOUT.value, workers=_WORKERS.value, batch_size=_BATCH.value,
      num_fewshot=_FEWSHOT.value, fewshot_path=_FEWSHOT_PATH.value, mbpp_split=_MBPP_SPLIT.value,
      seq_len=_SEQ_LEN.value, data_dir=data_dir, builder_kwargs=builder_kwargs, seed=_SEED.value,
      progress=sys.stderr.isatty())
  if any(t.kind in ("humaneval", "mbpp") for t in specs):
    meta["sandbox"] = str(execution.isolation())
  meta.update(dtype=_DTYPE.value, limit=_LIMIT.value, num_samples=_NUM_SAMPLES.value,
              temperature=_TEMPERATURE.value, num_fewshot=_FEWSHOT.value)
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
  elif _WORKDIR.value:
    out = pathlib.Path(_WORKDIR.value) / "eval" / f"step_{meta['step']}"
  else:
    out = pathlib.Path(_HF_DIR.value) / "eval"
  path = tasks.write_results(out, results, meta)
  print(f"Results: {path} and {path.with_suffix('.md')}")


if __name__ == "__main__":
  app.run(main)
