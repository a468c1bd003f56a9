"""Data pipelines as chains of resumable stages (`python -m phi_jax.curation --config=... --workdir=...`).

A config lists its stages in order (`config.stages`); each stage reads the documents the previous
one kept and writes, into `WORKDIR/<stage>/`:

    records.jsonl   the documents it kept: one JSON object per line, 'id', 'text', + fields
    stage.json      the marker, written last: the stage's fingerprint (its config section, the
                    previous stage's fingerprint, its input's fingerprint), counts, timing, info
    ...             its own artifacts (reports, the classifier, the TFDS dataset)

A stage's folder is written beside its final place and renamed into it; the marker comes last.
Rerunning skips every stage whose marker matches (same settings, same inputs); a stage whose
settings changed, whose folder was deleted or whose run was killed runs again, and so does every
stage after it. At the end: WORKDIR/summary.json and summary.md (documents, whitespace tokens,
bytes and, with `config.tokenizer`, tokenizer tokens kept by each stage).

All of this is in one process with every record in memory (workers=0, the default). With
`config.workers >= 1` (or `--workers=N`) the same stages stream over shards on datatrove's
executor, from a laptop to a Slurm / Ray cluster with the same config: `sharded.py`.

Stages (a config section of the same name holds each one's settings):
  source     documents from a `phi_jax.data.builders` corpus (code_corpus: this Python's stdlib by
             default) or a JSONL file
  dedup      near-duplicate removal (`dedup.deduplicate`: MinHash LSH, one kept per cluster)
  quality    the phi-1 classifier (`quality`): label a sample (JSONL labels, a teacher, or the
             heuristic STAND-IN), embed with a phi_jax model, fit a random forest, keep the top
             fraction (or those above a threshold); adds 'score'
  decontam   drop documents matching a benchmark (`decontam`: 13-grams, lexical embedding + AST)
  teacher    make the teacher (`teacher.make_teacher(config.teacher)`), optionally probe it once
  synthetic  exercises / textbooks from the teacher (`synthetic.generate_exercises` / `_textbooks`),
             or kind='mixture': the tiny coder's exercises + textbook sections (`mixture.make`)
  validate   re-check generated records: exercises parse and pass their asserts in the sandbox
             (`procedural.run_programs`); textbooks pass `synthetic.check_textbook`
  conversations  SFT chat data: held-in procedural exercises as user task -> assistant solution
             (`preferences.make_conversations`), decontaminated
  preferences    DPO pairs: replies sampled from `preferences.model`, run in the sandbox, a passing
             one (chosen) with a failing one (rejected) per prompt (`preferences.make_preferences`)
  dataset    write the TFDS dataset (`filtered_corpus` or `synthetic_exercises/_textbooks`) that
             a training config reads: data.dataset, data.source_dir, data.data_dir are printed
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import random
import time
from typing import Any, Callable, Optional, Sequence

import ml_collections

from phi_jax.curation import decontam as decontam_lib
from phi_jax.curation import dedup as dedup_lib
from phi_jax.curation import quality as quality_lib
from phi_jax.data import files

VERSION = 1  # Bump when a stage's output for the same settings changes: every stage reruns.
RECORDS = "records.jsonl"
MARKER = "stage.json"

Records = list[dict[str, Any]]


@dataclasses.dataclass
class Context:
  """What every stage may read: the whole config, the workdir, and shared state."""

  config: ml_collections.ConfigDict
  workdir: pathlib.Path
  progress: bool = True


@dataclasses.dataclass
class StageOutput:
  records: Records
  info: dict[str, Any]
  finalize: Optional[Callable[[pathlib.Path], dict[str, Any]]] = None  # runs in the final folder


# ---- I/O ---------------------------------------------------------------------------------------

def read_records(path: str | os.PathLike) -> Records:
  rows = []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if line.strip():
        try:
          rows.append(json.loads(line))
        except ValueError as e:
          raise ValueError(f"{path}:{n} is not valid JSON: {e}") from None
  return rows


def write_json(path: pathlib.Path, value: Any) -> None:
  """JSON to `path`, all or nothing (`data.files.write_text`)."""
  files.write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def counts(records: Records, tokenizer: Any = None) -> dict[str, Any]:
  """Documents, whitespace tokens, UTF-8 bytes (and tokenizer tokens) of `records`."""
  texts = [r.get("text", "") for r in records]
  out = {"documents": len(texts), "whitespace_tokens": sum(len(t.split()) for t in texts),
         "bytes": sum(len(t.encode("utf-8")) for t in texts)}
  if tokenizer is not None:
    out["tokenizer_tokens"] = sum(len(tokenizer.encode(t)) for t in texts)
  return out


def _tqdm(iterable, ctx: Context, **kwargs):
  if not ctx.progress:
    return iterable
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(iterable, **kwargs)


# ---- source ------------------------------------------------------------------------------------

def _source_kwargs(s: ml_collections.ConfigDict) -> dict[str, Any]:
  kwargs = {}
  for key in ("source_dir", "max_files", "max_bytes"):
    if s.get(key):
      kwargs[key] = s[key]
  return kwargs


def source_fingerprint(ctx: Context, s: ml_collections.ConfigDict) -> str:
  """What the source reads: the corpus config's listing hash, or the JSONL file's size + mtime."""
  if s.kind == "jsonl":
    stat = os.stat(s.path)
    return f"{s.path}:{stat.st_size}:{stat.st_mtime_ns}"
  from phi_jax.data import builders  # pylint: disable=g-import-not-at-top
  if s.kind not in builders.BUILDERS:
    raise ValueError(f"source.kind must be 'jsonl' or a builder {sorted(builders.BUILDERS)}, "
                     f"got {s.kind!r}")
  return builders.BUILDERS[s.kind].make_config(**_source_kwargs(s)).fingerprint


def stage_source(ctx: Context, s: ml_collections.ConfigDict, records: Records,
                 out: pathlib.Path) -> StageOutput:
  del records, out  # The first stage.
  rows: Records = []
  if s.kind == "jsonl":
    if not s.path:
      raise ValueError("source.kind='jsonl' needs source.path")
    for n, row in enumerate(read_records(s.path)):
      if not isinstance(row.get(s.text_key), str):
        raise ValueError(f"{s.path} line {n + 1} has no string field {s.text_key!r}")
      doc_id = str(row[s.id_key]) if s.id_key and s.id_key in row else f"{n}"
      rest = {k: v for k, v in row.items() if k not in (s.text_key, s.id_key, "id", "text")}
      rows.append({"id": doc_id, "text": row[s.text_key], **rest})
  else:
    from phi_jax.data import builders  # pylint: disable=g-import-not-at-top
    data_dir = s.data_dir or str(ctx.workdir / "_tfds")
    builder = builders.build(s.kind, data_dir, **_source_kwargs(s))
    for split in sorted(builder.info.splits):
      source = builder.as_data_source(split)
      for i in _tqdm(range(len(source)), ctx, desc=f"source {split}", unit="doc"):
        row = source[i]
        text = row["text"].decode("utf-8")
        path = row.get("path", b"").decode("utf-8") or f"{split}/{i}"
        rows.append({"id": path, "text": text, "path": path})
    rows.sort(key=lambda r: r["id"])
  if s.max_docs and len(rows) > s.max_docs:
    rows = rows[:s.max_docs]
  ids = [r["id"] for r in rows]
  if len(set(ids)) != len(ids):
    raise ValueError("source ids are not unique: set source.id_key to a unique field")
  return StageOutput(rows, {"kind": s.kind})


# ---- dedup -------------------------------------------------------------------------------------

def stage_dedup(ctx: Context, s: ml_collections.ConfigDict, records: Records,
                out: pathlib.Path) -> StageOutput:
  scores = None
  if s.use_scores and records and all("score" in r for r in records):
    scores = [float(r["score"]) for r in records]
  kept, report = dedup_lib.deduplicate(
      [r["text"] for r in records], s.threshold, scores=scores, ids=[r["id"] for r in records],
      num_perm=s.num_perm, shingle_size=s.shingle_size, seed=s.seed, verify=s.verify,
      progress=ctx.progress)
  write_json(out / "dedup_report.json", report)
  return StageOutput([records[i] for i in kept],
                     {"clusters": len(report["clusters"]), "removed": report["num_removed"]})


# ---- quality -----------------------------------------------------------------------------------

def _model_and_tokenizer(ctx: Context, s: ml_collections.ConfigDict, texts: Sequence[str],
                         out: pathlib.Path):
  """(cfg, params, tokenizer) for the quality embedder (see configs/data/stdlib_filtered.py)."""
  from phi_jax.data import tokenizer as tokenizers  # pylint: disable=g-import-not-at-top
  m = s.model
  tokenizer = tokenizers.load(s.tokenizer) if s.tokenizer else None
  if m.kind == "random":
    import flax.linen as nn  # pylint: disable=g-import-not-at-top
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from phi_jax.models import Transformer, presets  # pylint: disable=g-import-not-at-top
    if tokenizer is None:  # trained on the documents, kept with the stage's outputs
      budget, used, sample = s.tokenizer_train_bytes, 0, []
      for t in texts:
        if used >= budget:
          break
        sample.append(t)
        used += len(t)
      tokenizer = tokenizers.train_sentencepiece(sample, out / "tokenizer" / "sp",
                                                 vocab_size=s.tokenizer_vocab_size)
    cfg = presets.get(m.preset, vocab_size=tokenizer.vocab_size, **dict(m.overrides))
    params = jax.jit(Transformer(cfg).init)(jax.random.key(m.seed), jnp.zeros((1, 8), jnp.int32))
    return cfg, nn.unbox(params["params"]), tokenizer
  if not m.path:
    raise ValueError(f"quality.model.kind={m.kind!r} needs quality.model.path")
  formats = {"run": "workdir", "checkpoint": "checkpoint", "hf": "hf", "auto": None}
  if m.kind not in formats:
    raise ValueError(f"quality.model.kind must be 'random', 'auto', 'run', 'checkpoint' or 'hf', "
                     f"got {m.kind!r}")
  from phi_jax.convert import load  # pylint: disable=g-import-not-at-top
  loaded = load.load_model(m.path, tokenizer=tokenizer)
  if formats[m.kind] not in (None, loaded.format):
    raise ValueError(f"quality.model.kind={m.kind!r} but {m.path} is a {loaded.format} folder; "
                     "set kind='auto' (any model folder) or the kind that matches")
  cfg, params, tokenizer = loaded.cfg, loaded.params, loaded.tokenizer
  if tokenizer is None:
    raise ValueError(f"quality.model.path={m.path!r} has no tokenizer: set quality.tokenizer to "
                     "the model's tokenizer (a .model / tokenizer.json or a folder with one)")
  return cfg, params, tokenizer


def _labels(ctx: Context, s: ml_collections.ConfigDict, records: Records
            ) -> tuple[list[str], list[int], list[int]]:
  """(texts, labels, document index or -1 for external texts) of the labelled examples."""
  if s.labels.startswith("jsonl:"):
    texts, labels = quality_lib.read_labels(s.labels[len("jsonl:"):])
    return texts, labels, [-1] * len(texts)
  if s.labels not in ("heuristic", "teacher"):
    raise ValueError(f"quality.labels must be 'heuristic', 'teacher' or 'jsonl:PATH', got "
                     f"{s.labels!r}")
  order = list(range(len(records)))
  random.Random(s.seed).shuffle(order)
  chosen = sorted(order[:s.num_labels] if s.num_labels else order)
  texts = [records[i]["text"] for i in chosen]
  if s.labels == "heuristic":
    labels = [quality_lib.heuristic_label(t, s.heuristic_threshold) for t in texts]
  else:
    labels = quality_lib.label_with_teacher(_teacher(ctx), texts, batch_size=s.teacher_batch_size)
  return texts, labels, chosen


def stage_quality(ctx: Context, s: ml_collections.ConfigDict, records: Records,
                  out: pathlib.Path) -> StageOutput:
  texts = [r["text"] for r in records]
  cfg, params, tokenizer = _model_and_tokenizer(ctx, s, texts, out)
  embedder = quality_lib.Embedder(cfg, params, tokenizer, layer=s.layer, max_len=s.max_len,
                                  batch_size=s.batch_size, progress=ctx.progress)
  features = embedder(texts)
  if s.classifier:
    clf = quality_lib.load_classifier(s.classifier, embedder.fingerprint)
    label_info: dict[str, Any] = {"classifier": s.classifier}
  else:
    label_texts, labels, doc_index = _labels(ctx, s, records)
    known = [i for i in doc_index if i >= 0]
    label_features = (features[known] if len(known) == len(doc_index) else
                      embedder(label_texts))
    quality_lib.write_jsonl(out / "labels.jsonl", [
        {"id": records[i]["id"] if i >= 0 else f"labels:{k}", "label": y, "source": s.labels}
        for k, (i, y) in enumerate(zip(doc_index, labels))])
    clf = quality_lib.train_classifier(
        label_features, labels, test_fraction=s.test_fraction, seed=s.seed,
        n_estimators=s.n_estimators, max_depth=s.max_depth or None,
        min_samples_leaf=s.min_samples_leaf,
        metadata={"embedder": embedder.fingerprint, "layer": embedder.layer,
                  "labels": s.labels, "model": embedder.description})
    quality_lib.save_classifier(clf, out / "classifier.joblib")
    label_info = {"labels": s.labels, "num_labelled": sum(y >= 0 for y in labels)}
  scores = clf.score(features)
  if s.threshold >= 0:
    kept = quality_lib.select(scores, threshold=s.threshold)
  else:
    kept = quality_lib.select(scores, top_fraction=s.keep_fraction)
  kept_set = set(kept)
  quality_lib.write_jsonl(out / "scores.jsonl", [
      {"id": r["id"], "score": float(scores[i]), "kept": i in kept_set}
      for i, r in enumerate(records)])
  write_json(out / "metrics.json", clf.metrics)
  rows = [dict(records[i], score=float(scores[i])) for i in kept]
  return StageOutput(rows, {**label_info, "metrics": clf.metrics, "embedder": embedder.fingerprint,
                            "embedding": embedder.description})


# ---- decontam ----------------------------------------------------------------------------------

def stage_decontam(ctx: Context, s: ml_collections.ConfigDict, records: Records,
                   out: pathlib.Path) -> StageOutput:
  config = decontam_lib.DecontamConfig.from_settings(s)
  kept, report = decontam_lib.decontaminate(
      [r["text"] for r in records], list(s.benchmarks), config, ids=[r["id"] for r in records],
      progress=ctx.progress)
  write_json(out / "decontam_report.json", report)
  return StageOutput([records[i] for i in kept],
                     {"flagged": report["num_flagged"], "benchmarks": list(s.benchmarks)})


# ---- synthetic path ----------------------------------------------------------------------------

PROBE_FIELDS = ("probe", "probe_prompt", "probe_max_tokens")


def _teacher(ctx: Context):
  """`teacher.make_teacher` on config.teacher without the teacher stage's own probe fields."""
  from phi_jax.curation import teacher as teacher_lib  # pylint: disable=g-import-not-at-top
  if "teacher" not in ctx.config:
    raise ValueError("This pipeline needs a `teacher` config section (teacher.teacher_config "
                     "fields: kind='openai' | 'local' | 'procedural', ...)")
  fields = {k: v for k, v in ctx.config.teacher.items() if k not in PROBE_FIELDS}
  return teacher_lib.make_teacher(ml_collections.ConfigDict(fields))


def teacher_fingerprint(ctx: Context, s: ml_collections.ConfigDict) -> str:
  del s
  return _teacher(ctx).fingerprint


def stage_teacher(ctx: Context, s: ml_collections.ConfigDict, records: Records,
                  out: pathlib.Path) -> StageOutput:
  del records
  teacher = _teacher(ctx)
  info: dict[str, Any] = {"name": teacher.name, "fingerprint": teacher.fingerprint}
  if s.probe:  # one cheap request: a wrong endpoint or key fails here, not mid-generation
    answer = teacher.complete([s.probe_prompt], max_tokens=s.probe_max_tokens, temperature=0.0)
    if len(answer) != 1 or not isinstance(answer[0], str):
      raise ValueError(f"The teacher's probe returned {answer!r}, expected one string")
    info["probe_answer"] = answer[0][:500]
  write_json(out / "teacher.json", info)
  return StageOutput([], info)


def stage_synthetic(ctx: Context, s: ml_collections.ConfigDict, records: Records,
                    out: pathlib.Path) -> StageOutput:
  del records
  if s.kind == "mixture":  # no teacher: phi_jax's own generators (curation.mixture)
    from phi_jax.curation import mixture  # pylint: disable=g-import-not-at-top
    rows, stats = mixture.make(s.n, s.n_textbooks, s.n_drills, seed=s.seed,
                               workers=s.workers or None)
    return StageOutput(rows, stats)
  from phi_jax.curation import synthetic  # pylint: disable=g-import-not-at-top
  teacher = _teacher(ctx)
  topics = list(s.topics) or None
  common = dict(topics=topics, max_tokens=s.max_tokens, temperature=s.temperature,
                batch_size=s.batch_size, build=False)
  if s.kind == "exercises":
    stats = synthetic.generate_exercises(teacher, s.n, s.seed, out / "generated",
                                         require_tests=s.require_tests,
                                         workers=s.workers or None, timeout_s=s.timeout_s, **common)
  elif s.kind == "textbooks":
    stats = synthetic.generate_textbooks(teacher, s.n, s.seed, out / "generated",
                                         subject=s.subject, min_chars=s.min_chars, **common)
  else:
    raise ValueError(f"synthetic.kind must be 'exercises', 'textbooks' or 'mixture', got "
                     f"{s.kind!r}")
  rows = read_records(out / "generated" / RECORDS)
  return StageOutput(rows, {"requested": stats.requested, "kept": stats.kept,
                            "rejected": stats.rejected, "teacher": stats.teacher})


def stage_validate(ctx: Context, s: ml_collections.ConfigDict, records: Records,
                   out: pathlib.Path) -> StageOutput:
  import ast  # pylint: disable=g-import-not-at-top
  from phi_jax.curation import synthetic  # pylint: disable=g-import-not-at-top
  reasons: dict[int, str] = {}
  for i, r in enumerate(records):
    if s.kind == "textbooks":
      try:
        synthetic.check_textbook(r["text"], min_chars=s.min_chars)
      except synthetic.Rejected as e:
        reasons[i] = e.reason
      continue
    try:
      ast.parse(r["text"])
    except SyntaxError:
      reasons[i] = "syntax_error"
      continue
    if s.require_tests and not r.get("tests"):
      reasons[i] = "no_tests"
  if s.kind == "exercises" and s.run_tests:
    from phi_jax.curation import procedural  # pylint: disable=g-import-not-at-top
    todo = [i for i, r in enumerate(records) if i not in reasons and r.get("tests")]
    programs = [records[i]["text"] + "\n\n" + "\n".join(records[i]["tests"]) + "\n" for i in todo]
    results = procedural.run_programs(programs, workers=s.workers or None,
                                      timeout_s=s.timeout_s) if programs else []
    for i, result in zip(todo, results):
      if not result.passed:
        reasons[i] = {"failed": "tests_failed", "timeout": "tests_timeout"}.get(result.status,
                                                                                "sandbox_error")
  rejected: dict[str, int] = {}
  for reason in reasons.values():
    rejected[reason] = rejected.get(reason, 0) + 1
  write_json(out / "validate_report.json", {
      "rejected": rejected, "documents": [{"id": records[i]["id"], "reason": reasons[i]}
                                          for i in sorted(reasons)]})
  return StageOutput([r for i, r in enumerate(records) if i not in reasons],
                     {"rejected": rejected})


# ---- post-training data -------------------------------------------------------------------------

def stage_conversations(ctx: Context, s: ml_collections.ConfigDict, records: Records,
                        out: pathlib.Path) -> StageOutput:
  del ctx, records
  from phi_jax.curation import preferences  # pylint: disable=g-import-not-at-top
  rows, info, report = preferences.make_conversations(s)
  write_json(out / "decontam_report.json", report)
  return StageOutput(rows, info)


def stage_preferences(ctx: Context, s: ml_collections.ConfigDict, records: Records,
                      out: pathlib.Path) -> StageOutput:
  del records
  from phi_jax.curation import preferences  # pylint: disable=g-import-not-at-top
  rows, info, report = preferences.make_preferences(s, progress=ctx.progress)
  write_json(out / "decontam_report.json", report)
  write_json(out / "counts.json", info)
  return StageOutput(rows, info)


def preferences_fingerprint(ctx: Context, s: ml_collections.ConfigDict) -> str:
  del ctx
  from phi_jax.curation import preferences  # pylint: disable=g-import-not-at-top
  return preferences.model_fingerprint(s.model) if s.model else ""


# ---- dataset -----------------------------------------------------------------------------------

def stage_dataset(ctx: Context, s: ml_collections.ConfigDict, records: Records,
                  out: pathlib.Path) -> StageOutput:
  del ctx, out
  if len(records) < 2:
    raise ValueError(f"Only {len(records)} document(s) reached the dataset stage; need >= 2 for "
                     "train and validation splits: loosen the filters or use more sources")

  def build(final: pathlib.Path) -> dict[str, Any]:
    from phi_jax.data import builders  # pylint: disable=g-import-not-at-top
    data_dir = final / "tfds"
    builder = builders.build(s.builder, data_dir, source_dir=str(final),
                             validation_fraction=s.validation_fraction)
    splits = {k: int(v.num_examples) for k, v in builder.info.splits.items()}
    train = {"data.dataset": s.builder, "data.source_dir": str(final),
             "data.data_dir": str(data_dir), "data.validation_fraction": s.validation_fraction}
    return {"splits": splits, "train_config": train}

  return StageOutput(records, {"builder": s.builder}, finalize=build)


STAGES: dict[str, Callable[..., StageOutput]] = {
    "source": stage_source, "dedup": stage_dedup, "quality": stage_quality,
    "decontam": stage_decontam, "teacher": stage_teacher, "synthetic": stage_synthetic,
    "validate": stage_validate, "conversations": stage_conversations,
    "preferences": stage_preferences, "dataset": stage_dataset}
INPUT_FINGERPRINTS: dict[str, Callable[[Context, ml_collections.ConfigDict], str]] = {
    "source": source_fingerprint, "teacher": teacher_fingerprint,
    "preferences": preferences_fingerprint}


# ---- the runner --------------------------------------------------------------------------------

def fingerprint(name: str, section: Any, previous: str, input_key: str = "") -> str:
  payload = json.dumps({"version": VERSION, "stage": name, "previous": previous,
                        "input": input_key,
                        "settings": section.to_dict() if hasattr(section, "to_dict") else section},
                       sort_keys=True, default=str)
  return hashlib.sha256(payload.encode()).hexdigest()[:16]


def read_marker(stage_dir: pathlib.Path) -> Optional[dict[str, Any]]:
  try:
    return json.loads((stage_dir / MARKER).read_text())
  except (OSError, ValueError):
    return None


def _summary_tokenizer(config: ml_collections.ConfigDict):
  if not config.get("tokenizer"):
    return None
  from phi_jax.data import tokenizer as tokenizers  # pylint: disable=g-import-not-at-top
  return tokenizers.load(config.tokenizer)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
  columns = ["stage", "status", "documents", "whitespace_tokens", "bytes"]
  if any("tokenizer_tokens" in r for r in rows):
    columns.append("tokenizer_tokens")
  columns.append("seconds")
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for r in rows:
    cells = []
    for c in columns:
      v = r.get(c, "")
      cells.append(f"{v:,}" if isinstance(v, int) else f"{v:.1f}" if isinstance(v, float) else
                   str(v))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
        progress: Optional[bool] = None, log: Callable[[str], None] = print) -> dict[str, Any]:
  """Runs (or resumes) the pipeline `config.stages` in `workdir`; returns the summary.

  With `config.workers >= 1` the stages run streaming over shards on the engine instead
  (`sharded.run`: datatrove's executor, `workers` processes; docs/DATA_AT_SCALE.md).
  """
  if int(config.get("workers", 0) or 0) >= 1:
    from phi_jax.curation import sharded  # pylint: disable=g-import-not-at-top
    return sharded.run(config, workdir, log=log)
  from phi_jax.convert.checkpoint_io import atomic_directory  # pylint: disable=g-import-not-at-top
  workdir = pathlib.Path(workdir).absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  stages = list(config.stages)
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    raise ValueError(f"Unknown stage(s) {unknown}; known: {sorted(STAGES)}")
  if len(set(stages)) != len(stages):
    raise ValueError(f"Each stage may appear once, got {stages}")
  missing = [s for s in stages if s not in config]
  if missing:
    raise ValueError(f"The config has no section for stage(s) {missing}")
  ctx = Context(config, workdir, config.get("progress", True) if progress is None else progress)
  write_json(workdir / "config.json", json.loads(config.to_json_best_effort()))
  tokenizer = _summary_tokenizer(config)
  tokenizer_name = config.get("tokenizer") or ""
  previous, records, rows = "", None, []
  for k, name in enumerate(stages):
    section = config[name]
    key_fn = INPUT_FINGERPRINTS.get(name)
    fp = fingerprint(name, section, previous, key_fn(ctx, section) if key_fn else "")
    stage_dir = workdir / name
    marker = read_marker(stage_dir)
    if marker is not None and marker.get("fingerprint") == fp:
      log(f"[{name}] finished before (fingerprint {fp}): skipped")
      status, records = "skipped", None
      if tokenizer is not None and marker["counts"].get("tokenizer") != tokenizer_name:
        marker["counts"] = dict(counts(read_records(stage_dir / RECORDS), tokenizer),
                                tokenizer=tokenizer_name)
        write_json(stage_dir / MARKER, marker)
    else:
      if records is None:
        records = read_records(workdir / stages[k - 1] / RECORDS) if k else []
      log(f"[{name}] running" + (f" on {len(records):,} document(s)" if k else ""))
      start = time.time()
      with atomic_directory(stage_dir) as tmp:
        result = STAGES[name](ctx, section, records, tmp)
        quality_lib.write_jsonl(tmp / RECORDS, result.records)
      info = dict(result.info)
      if result.finalize is not None:
        info.update(result.finalize(stage_dir))
      stage_counts = counts(result.records, tokenizer)
      if tokenizer is not None:
        stage_counts["tokenizer"] = tokenizer_name
      marker = {"stage": name, "fingerprint": fp, "previous": previous, "version": VERSION,
                "counts": stage_counts, "seconds": round(time.time() - start, 2),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "info": info}
      write_json(stage_dir / MARKER, marker)  # last: the stage is done
      status, records = "ran", result.records
      log(f"[{name}] kept {len(records):,} document(s) in {marker['seconds']:.1f}s")
    row = {"stage": name, "status": status, "seconds": float(marker["seconds"])}
    row.update({c: v for c, v in marker["counts"].items() if c != "tokenizer"})
    rows.append(row)
    previous = fp
  final = read_marker(workdir / stages[-1]) or {}
  summary = {"workdir": str(workdir), "stages": rows,
             "train_config": final.get("info", {}).get("train_config")}
  write_json(workdir / "summary.json", summary)
  table = markdown_table(rows)
  (workdir / "summary.md").write_text(table + "\n")
  log(table)
  if summary["train_config"]:
    log("Train on it with: " + " ".join(f"--config.{k}={v}"
                                        for k, v in summary["train_config"].items()))
  return summary
