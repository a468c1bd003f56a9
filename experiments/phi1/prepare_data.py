"""The data of the phi-1 ablation (run.sh), made once for every run: ROOT/data, ROOT/tokenizer.

    python experiments/phi1/prepare_data.py --root=ROOT [--tiny]

needs ROOT/embedder (the quality classifier's feature model: `python -m phi_jax.main
--config=configs/phi1_ablation.py:stage=embedder,root=ROOT --workdir=ROOT/embedder`) and runs,
each step skipped when its output exists (the `phi_jax.curation` pipelines skip their finished
stages themselves):

  heldout    ROOT/data/heldout/test.jsonl: the evaluation's held-out-family exercises and more of
             those families (procedural 'test' split, the study's eval seed), a decontamination
             benchmark for every training set; validation.jsonl: the unseen-variant exercises
  export     code_corpus's TRAIN split -> ROOT/data/stdlib_train/records.jsonl (the filter's
             source: the validation split stays held out from every arm)
  filter     configs/data/stdlib_filtered.py on it: MinHash dedup -> quality classifier (random
             forest on the embedder's features, heuristic STAND-IN labels, top 50%) ->
             decontamination (HumanEval, hand-written problems, held-out families)
  textbooks  procedural textbook sections (`curation.mixture`, train-split worked examples,
             verified, decontaminated), as many as make TEXTBOOK_FRACTION of the textbook arm's
             bytes (the mean section size measured on 16 sections)
  mix        filtered code + those sections, each section whole again (the mixture stores it
             cut into prompt/target pieces) -> ROOT/data/code_textbook/records.jsonl
  exercises  the fine-tune's data: the tiny coder's exercises + binding drills (train split),
             verified, decontaminated -> ROOT/data/exercises/dataset (`synthetic_exercises`)
  tokenizer  ONE SentencePiece on equal shares of the four training sets -> ROOT/tokenizer
  check      ROOT/data/data.json: what each set holds (documents, bytes, tokens), the
             decontamination counts of every pipeline, and the split checks (no held-out
             exercise's parameterisation or prompt in any training set)

Sizes and paths come from configs/phi1_ablation.py (EXERCISES, TEXTBOOK_FRACTION, paths()).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import pathlib
import sys
import time
from typing import Any, Callable, Iterable

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "phi1_ablation.py"
STEPS = ("heldout", "export", "filter", "textbooks", "mix", "exercises", "tokenizer", "check")


def load_config_module() -> Any:
  from phi_jax import sweep  # pylint: disable=g-import-not-at-top
  return sweep.load_module(CONFIG)


def _write_jsonl(path: pathlib.Path, rows: Iterable[dict[str, Any]]) -> int:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  n = 0
  with tmp.open("w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
      n += 1
  os.replace(tmp, path)
  return n


def _read_jsonl(path: pathlib.Path) -> list[dict[str, Any]]:
  with path.open(encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _bytes(records: Iterable[dict[str, Any]]) -> int:
  return sum(len(r["text"].encode("utf-8")) for r in records)


def benchmarks(p: dict[str, str]) -> tuple[str, ...]:
  """What every training set is decontaminated against."""
  return ("humaneval", "handwritten", f"jsonl:{p['heldout']}/test.jsonl:id:text")


# ---- steps ---------------------------------------------------------------------------------

def heldout(p: dict[str, str], study: Any, tiny: bool) -> dict[str, Any]:
  """The evaluation exercises (the first n of each split are the study's sets) as JSONL."""
  from phi_jax.curation import procedural  # pylint: disable=g-import-not-at-top
  out = pathlib.Path(p["heldout"])
  n_test = max(study.n_test, 20 if tiny else 300)
  info = {}
  for split, n in (("test", n_test), ("validation", study.n_validation)):
    rows = [{"id": ex.id, "text": ex.prompt + ex.solution, "prompt": ex.prompt,
             "family": ex.family, "key": ex.key, "split": ex.split}
            for ex in procedural.generate(n, seed=study.eval_seed, split=split)]
    info[split] = _write_jsonl(out / f"{split}.jsonl", rows)
  return info


def export(p: dict[str, str], data: Any) -> dict[str, Any]:
  """code_corpus's train split (the unfiltered arm's files) -> records.jsonl."""
  from phi_jax.data import builders  # pylint: disable=g-import-not-at-top
  kwargs = {"validation_fraction": data.validation_fraction}
  if data.max_files:
    kwargs["max_files"] = data.max_files
  builder = builders.build("code_corpus", p["tfds"], **kwargs)
  source = builder.as_data_source("train")
  rows = []
  for i in range(len(source)):
    path = source[i]["path"].decode("utf-8")
    rows.append({"id": path, "text": source[i]["text"].decode("utf-8"), "path": path})
  rows.sort(key=lambda r: r["id"])
  n = _write_jsonl(pathlib.Path(p["stdlib_train"]) / "records.jsonl", rows)
  return {"documents": n, "bytes": _bytes(rows),
          "held_out_documents": len(builder.as_data_source("validation"))}


def filter_config(p: dict[str, str], tiny: bool) -> Any:
  """configs/data/stdlib_filtered.py[:tiny] reading the export, embedding with ROOT/embedder."""
  from phi_jax.config_args import load_config  # pylint: disable=g-import-not-at-top
  spec = str(REPO / "configs" / "data" / "stdlib_filtered.py") + (":tiny" if tiny else "")
  overrides = {
      "progress": False, "source.kind": "jsonl",
      "source.path": f"{p['stdlib_train']}/records.jsonl",
      "quality.model.kind": "run", "quality.model.path": p["embedder"],
      "quality.keep_fraction": 0.5,
  }
  config = load_config(spec, overrides)
  config.decontam.benchmarks = benchmarks(p)
  return config


def run_filter(p: dict[str, str], tiny: bool) -> dict[str, Any]:
  from phi_jax.curation import stages  # pylint: disable=g-import-not-at-top
  if not (pathlib.Path(p["embedder"]) / "summary.json").exists():
    raise SystemExit(f"no embedder run in {p['embedder']}: train it first (run.sh does: "
                     "python -m phi_jax.main --config=configs/phi1_ablation.py:stage=embedder,"
                     f"root={p['root']} --workdir={p['embedder']})")
  return stages.run(filter_config(p, tiny), p["filtered"], progress=False)


def section_bytes(n: int = 16, seed: int = 0) -> float:
  """The mean bytes of `n` procedural textbook sections (what the mixture generates)."""
  from phi_jax.curation import procedural_textbook  # pylint: disable=g-import-not-at-top
  texts = [procedural_textbook.write_textbook({}, seed=seed + k)[0] for k in range(n)]
  return sum(len(t.encode("utf-8")) for t in texts) / n


def textbooks(p: dict[str, str], fraction: float, seed: int) -> dict[str, Any]:
  """Sections for `fraction` of the textbook arm's bytes: n = ceil(filtered bytes x fraction /
  (1 - fraction) / mean section bytes)."""
  from phi_jax.curation import mixture, stages  # pylint: disable=g-import-not-at-top
  if not 0 < fraction < 1:
    raise ValueError(f"TEXTBOOK_FRACTION must be in (0, 1), got {fraction}")
  code = _bytes(_read_jsonl(pathlib.Path(p["filtered_dataset"]) / "records.jsonl"))
  n = max(2, math.ceil(code * fraction / (1 - fraction) / section_bytes()))
  config = mixture.pipeline_config(0, n, 0, seed=seed, benchmarks=benchmarks(p))
  summary = stages.run(config, p["textbooks"], progress=False)
  return {"requested_sections": n, "filtered_code_bytes": code, "summary": summary}


def whole_sections(pieces: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """The mixture's textbook pieces ('textbook-K-J', split_key 'textbook-K') joined back into
  one document per section, pieces in order (a piece decontamination dropped stays out)."""
  groups: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
  for r in pieces:
    if r.get("kind") != "textbook":
      raise ValueError(f"record {r.get('id')!r} is a {r.get('kind')!r}, not a textbook piece")
    groups[r["split_key"]].append((int(r["id"].rsplit("-", 1)[1]), r["text"]))
  out = []
  for key in sorted(groups, key=lambda k: int(k.rsplit("-", 1)[1])):
    parts = [text for _, text in sorted(groups[key])]
    out.append({"id": key, "text": "\n\n".join(part.rstrip("\n") for part in parts) + "\n"})
  return out


def mix(filtered: pathlib.Path, pieces: pathlib.Path, out: pathlib.Path) -> dict[str, Any]:
  """filtered code + whole textbook sections -> OUT/records.jsonl (ids 'code:' / 'textbook:')."""
  code = _read_jsonl(filtered / "records.jsonl")
  books = whole_sections(_read_jsonl(pieces / "records.jsonl"))
  rows = [dict(r, id=f"code:{r['id']}", source="filtered_code") for r in code]
  rows += [dict(r, id=f"textbook:{r['id']}", source="procedural_textbook") for r in books]
  _write_jsonl(out / "records.jsonl", rows)
  info = {"code_documents": len(code), "code_bytes": _bytes(code),
          "textbook_documents": len(books), "textbook_bytes": _bytes(books)}
  info["textbook_byte_fraction"] = info["textbook_bytes"] / (info["code_bytes"] +
                                                             info["textbook_bytes"])
  (out / "mix.json").write_text(json.dumps(info, indent=2) + "\n")
  return info


def exercises(p: dict[str, str], sizes: dict[str, int]) -> dict[str, Any]:
  from phi_jax.curation import mixture, stages  # pylint: disable=g-import-not-at-top
  config = mixture.pipeline_config(sizes["n_exercises"], 0, sizes["n_drills"],
                                   seed=sizes["seed"], benchmarks=benchmarks(p))
  summary = stages.run(config, p["exercises"], progress=False)
  made = (summary.get("train_config") or {}).get("data.source_dir")
  if made and pathlib.Path(made).resolve() != pathlib.Path(p["exercises_dataset"]).resolve():
    raise ValueError(f"the exercises' dataset is in {made}, not {p['exercises_dataset']} where "
                     "configs/phi1_ablation.py's finetune stage reads it: update paths()")
  return summary


def training_sets(p: dict[str, str], data: Any) -> dict[str, tuple[str, dict[str, Any]]]:
  """name -> (builder, builder kwargs) of every training set (train splits are read)."""
  code = {"validation_fraction": data.validation_fraction}
  if data.max_files:
    code["max_files"] = data.max_files
  return {
      "unfiltered": ("code_corpus", code),
      "filtered": ("filtered_corpus", {"source_dir": p["filtered_dataset"],
                                       "validation_fraction": 0.02}),
      "textbook": ("filtered_corpus", {"source_dir": p["code_textbook"],
                                       "validation_fraction": 0.02}),
      "exercises": ("synthetic_exercises", {"source_dir": p["exercises_dataset"],
                                            "validation_fraction": 0.02}),
  }


def _data_dir(p: dict[str, str], name: str) -> str:
  return f"{p['exercises_dataset']}/tfds" if name == "exercises" else p["tfds"]


def train_texts(builder: str, data_dir: str, kwargs: dict[str, Any],
                budget: int = 0) -> list[str]:
  """The train split's texts in source order, up to `budget` bytes (0: all)."""
  from phi_jax.data import builders  # pylint: disable=g-import-not-at-top
  source = builders.build(builder, data_dir, **kwargs).as_data_source("train")
  texts, used = [], 0
  for i in range(len(source)):
    text = source[i]["text"]
    texts.append(text.decode("utf-8") if isinstance(text, bytes) else text)
    used += len(texts[-1].encode("utf-8"))
    if budget and used >= budget:
      break
  return texts


def tokenizer(p: dict[str, str], data: Any) -> dict[str, Any]:
  """One SentencePiece (data.tokenizer_vocab_size) on equal shares of every training set."""
  from phi_jax.data import tokenizer as tokenizers  # pylint: disable=g-import-not-at-top
  sets = training_sets(p, data)
  share = data.tokenizer_train_bytes // len(sets)
  texts = [t for name, (builder, kwargs) in sets.items()
           for t in train_texts(builder, _data_dir(p, name), kwargs, share)]
  model = pathlib.Path(p["tokenizer"])
  model.parent.mkdir(parents=True, exist_ok=True)
  tokenizers.train_sentencepiece(texts, model.with_suffix(""),
                                 vocab_size=data.tokenizer_vocab_size)
  return {"vocab_size": data.tokenizer_vocab_size, "sets": list(sets),
          "train_bytes": sum(len(t.encode("utf-8")) for t in texts)}


def _decontam_counts(pipeline: pathlib.Path) -> dict[str, Any]:
  """{'documents_in', 'flagged', 'by_benchmark': {benchmark: documents}, 'by_item': {item: n}}
  of a pipeline's decontam stage."""
  report = json.loads((pipeline / "decontam" / "decontam_report.json").read_text())
  by_benchmark: collections.Counter = collections.Counter()
  by_item: collections.Counter = collections.Counter()
  for doc in report["flagged"]:
    for bench in sorted({m["benchmark"] for m in doc["matches"]}):
      by_benchmark["heldout_families" if bench.startswith("jsonl:") else bench] += 1
    for item in sorted({m["item"] for m in doc["matches"]}):
      by_item[item] += 1
  return {"documents_in": report["num_documents"], "flagged": report["num_flagged"],
          "by_benchmark": dict(by_benchmark), "by_item": dict(by_item.most_common(12))}


def split_checks(p: dict[str, str], texts: dict[str, list[str]],
                 exercise_rows: list[dict[str, Any]]) -> dict[str, Any]:
  """Held-out exercises in training data: prompts found verbatim in any training text, and
  exercise records whose (family, parameterisation) is a held-out one or whose family is held
  out. All should be 0 (the generators draw the train split only)."""
  from phi_jax.curation import procedural  # pylint: disable=g-import-not-at-top
  held = [r for split in ("validation", "test")
          for r in _read_jsonl(pathlib.Path(p["heldout"]) / f"{split}.jsonl")]
  keys = {(r["family"], r["key"]) for r in held}
  prompts = [r["prompt"] for r in held]
  joined = {name: "\0".join(ts) for name, ts in texts.items()}  # one search per prompt and set
  found = {name: sum(prompt in text for prompt in prompts) for name, text in joined.items()}
  families = set(procedural.HELDOUT_FAMILIES)
  bad_keys = sum((r.get("family"), r.get("split_key")) in keys for r in exercise_rows)
  bad_families = sum(r.get("family") in families for r in exercise_rows)
  return {"heldout_exercises": len(held), "prompts_found_verbatim": found,
          "exercise_records_with_heldout_key": bad_keys,
          "exercise_records_of_heldout_families": bad_families}


def check(p: dict[str, str], data: Any, log: Callable[[str], None]) -> dict[str, Any]:
  """ROOT/data/data.json (see the module doc)."""
  from phi_jax.data import tokenizer as tokenizers  # pylint: disable=g-import-not-at-top
  tok = tokenizers.load(p["tokenizer"])
  sets: dict[str, Any] = {}
  texts: dict[str, list[str]] = {}
  for name, (builder, kwargs) in training_sets(p, data).items():
    texts[name] = train_texts(builder, _data_dir(p, name), kwargs)
    tokens = sum(len(tok.encode(t)) + 1 for t in texts[name])  # + EOS per document
    sets[name] = {"train_documents": len(texts[name]),
                  "train_bytes": sum(len(t.encode("utf-8")) for t in texts[name]),
                  "train_tokens": tokens}
    log(f"[check] {name}: {sets[name]}")
  exercise_rows = _read_jsonl(pathlib.Path(p["exercises_dataset"]) / "records.jsonl")
  kinds = collections.Counter(r.get("kind") for r in exercise_rows)
  out = {
      "sets": sets,
      "exercise_kinds": dict(kinds),
      "decontam": {"filtered": _decontam_counts(pathlib.Path(p["filtered"])),
                   "textbooks": _decontam_counts(pathlib.Path(p["textbooks"])),
                   "exercises": _decontam_counts(pathlib.Path(p["exercises"]))},
      "benchmarks": list(benchmarks(p)),
      "split_checks": split_checks(p, texts, exercise_rows),
      "filter_stages": json.loads((pathlib.Path(p["filtered"]) / "summary.json").read_text()
                                  )["stages"],
      "quality_metrics": _maybe_json(pathlib.Path(p["filtered"]) / "quality" / "metrics.json"),
      "mix": json.loads((pathlib.Path(p["code_textbook"]) / "mix.json").read_text()),
  }
  return out


def _maybe_json(path: pathlib.Path) -> Any:
  return json.loads(path.read_text()) if path.exists() else None


# ---- main ----------------------------------------------------------------------------------

def prepare(root: str, tiny: bool, only: tuple[str, ...] = STEPS,
            log: Callable[[str], None] = print) -> dict[str, Any]:
  """Runs the steps (see the module doc) that are not done yet; returns ROOT/data/data.json's
  content when `check` ran."""
  module = load_config_module()
  arg = f"stage=pretrain,root={root}" + (",tiny" if tiny else "")
  config = module.get_config(arg)
  p = module.paths(root)
  sizes = module.TINY_EXERCISES if tiny else module.EXERCISES
  seconds: dict[str, float] = {}

  def step(name: str, done: bool, fn: Callable[[], Any]) -> None:
    if name not in only:
      return
    if done:
      log(f"[{name}] done before: skipped")
      return
    log(f"[{name}] running")
    start = time.time()
    fn()
    seconds[name] = round(time.time() - start, 1)
    log(f"[{name}] {seconds[name]:.1f} s")

  held = pathlib.Path(p["heldout"])
  step("heldout", (held / "test.jsonl").exists() and (held / "validation.jsonl").exists(),
       lambda: heldout(p, config.study, tiny))
  step("export", (pathlib.Path(p["stdlib_train"]) / "records.jsonl").exists(),
       lambda: export(p, config.data))
  step("filter", False, lambda: run_filter(p, tiny))  # the pipeline skips finished stages
  step("textbooks", False, lambda: textbooks(p, module.TEXTBOOK_FRACTION, seed=0))
  step("mix", (pathlib.Path(p["code_textbook"]) / "records.jsonl").exists(),
       lambda: mix(pathlib.Path(p["filtered_dataset"]),
                   pathlib.Path(p["textbooks"]) / "dataset", pathlib.Path(p["code_textbook"])))
  step("exercises", False, lambda: exercises(p, sizes))
  step("tokenizer", pathlib.Path(p["tokenizer"]).exists(), lambda: tokenizer(p, config.data))
  result: dict[str, Any] = {}
  if "check" in only:
    start = time.time()
    result = check(p, config.data, log)
    seconds["check"] = round(time.time() - start, 1)
    path = pathlib.Path(p["root"]) / "data" / "data.json"
    previous = _maybe_json(path) or {}
    result["seconds"] = {**previous.get("seconds", {}), **seconds}
    path.write_text(json.dumps(result, indent=2) + "\n")
    log(f"[check] wrote {path}")
  return result


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--root", required=True, help="the experiment's ROOT (run.sh's)")
  parser.add_argument("--tiny", action="store_true", help="the smoke scale (SMOKE=1)")
  parser.add_argument("--only", default=",".join(STEPS),
                      help=f"comma-separated steps to run, of {','.join(STEPS)}")
  args = parser.parse_args(argv)
  only = tuple(s for s in args.only.split(",") if s)
  unknown = sorted(set(only) - set(STEPS))
  if unknown:
    parser.error(f"--only: unknown step(s) {unknown}; steps: {', '.join(STEPS)}")
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.ERROR)
  tfds.disable_progress_bar()
  prepare(args.root, args.tiny, only)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
