"""The quality stage over shards: embed every shard, train once on a labelled sample, score, keep.

Steps (the layout is `sharded.py`'s; settings are the `quality` section of the in-memory stage):
1. sample (driver, one streaming pass): the `num_labels` documents with the smallest seeded hash
   of their id (a uniform sample of exact size; 0 = all), and for model.kind='random' without a
   tokenizer the first `tokenizer_train_bytes` of text, on which a SentencePiece is trained.
   Heuristic / teacher labels are made here; 'jsonl:PATH' labels are read here.
2. embed (one task per shard, + one for external label texts): the model (loaded, or for 'random'
   initialised from its seed: the same weights in every worker) embeds the shard in batches
   (`quality.Embedder`, on the worker's default JAX device: CPU or an accelerator) -> features
   [docs, d_model] float32, a side file per shard. The model is built once per worker process.
3. train (driver): the random forest on the sample's features (`quality.train_classifier`),
   saved as classifier.joblib (or quality.classifier is loaded): the file is what the workers get.
4. score (one task per shard): classifier.score(features) -> scores per shard.
5. cut (driver): from all scores (8 bytes a document) the rule of `quality.select`: the
   ceil(keep_fraction x N) highest (ties: lower corpus index) or every score >= threshold.
6. filter (one task per shard): the kept documents, with 'score' added, and scores.jsonl.gz.
The in-memory stage samples its labels by shuffling indices; this one by hashing ids, so the two
label different samples (the same rule otherwise).
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import math
import pathlib
from typing import Any

import ml_collections
import numpy as np

from phi_jax.curation import minhash_lsh
from phi_jax.curation import quality as quality_lib
from phi_jax.curation import shards


def _hash(seed: int, doc_id: str) -> int:
  return int.from_bytes(hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()[:8], "little")


@functools.lru_cache(maxsize=1)
def _embedder(section_json: str):
  """The Embedder of a quality section (built once per worker process)."""
  import json  # pylint: disable=g-import-not-at-top
  from phi_jax.curation import stages as stages_lib  # pylint: disable=g-import-not-at-top
  s = ml_collections.ConfigDict(json.loads(section_json))
  cfg, params, tokenizer = stages_lib._model_and_tokenizer(  # pylint: disable=protected-access
      None, s, [], pathlib.Path("."))
  return quality_lib.Embedder(cfg, params, tokenizer, layer=s.layer, max_len=s.max_len,
                              batch_size=s.batch_size)


def _embed_task(rank: int, io: Any, section_json: str) -> None:
  work = pathlib.Path(io.work_dir)
  if rank == io.num_shards:  # the external label texts
    path = work / "label_texts.jsonl.gz"
    texts = [r["text"] for r in shards.read_records(path)]
  else:
    texts = [r["text"] for r in shards.read_records(io.input(rank))]
  embedder = _embedder(section_json)
  features = embedder(texts) if texts else np.zeros((0, embedder.cfg.d_model), np.float32)
  shards.save_array(work / "features" / f"s{rank:05d}.npy", features.astype(np.float32))


def _score_task(rank: int, io: Any, classifier_path: str) -> None:
  work = pathlib.Path(io.work_dir)
  clf = quality_lib.load_classifier(classifier_path)
  features = shards.load_array(work / "features" / f"s{rank:05d}.npy")
  shards.save_array(work / "scores" / f"s{rank:05d}.npy", clf.score(features))


def _filter_task(rank: int, io: Any, cut: tuple[float, int], by_threshold: bool) -> None:
  from phi_jax.curation import sharded_stages  # pylint: disable=g-import-not-at-top
  work = pathlib.Path(io.work_dir)
  scores = shards.load_array(work / "scores" / f"s{rank:05d}.npy")
  report = []

  def kept():
    for k, row in enumerate(shards.read_records(io.input(rank))):
      score = float(scores[k])
      if by_threshold:
        keep = score >= cut[0]
      else:
        g = minhash_lsh.gid(rank, k)
        keep = score > cut[0] or (score == cut[0] and g <= cut[1])
      report.append({"id": row["id"], "score": score, "kept": keep})
      if keep:
        yield dict(row, score=score)

  sharded_stages.write_shard(io, rank, kept())
  shards.write_records(work / "scores" / shards.shard_name(rank, io.num_shards), report)


def _cut(scores: list[np.ndarray], s: ml_collections.ConfigDict) -> tuple[tuple[float, int], int]:
  """((score, gid) of the last kept document, number kept) for keep_fraction; see `select`."""
  n = sum(len(x) for x in scores)
  k = math.ceil(s.keep_fraction * n - 1e-9)
  if k <= 0:
    return (math.inf, -1), 0
  values = np.concatenate(scores)
  gids = np.concatenate([(np.uint64(r) << np.uint64(minhash_lsh.GID_BITS)) +
                         np.arange(len(x), dtype=np.uint64) for r, x in enumerate(scores)])
  order = np.lexsort((gids, -values))
  last = order[k - 1]
  return (float(values[last]), int(gids[last])), k


def stage_quality(ctx: Any, s: ml_collections.ConfigDict, io: Any, engine: Any) -> dict:
  work = pathlib.Path(io.work_dir)
  work.mkdir(parents=True, exist_ok=True)
  section = s.to_dict()
  external = s.labels.startswith("jsonl:")
  if s.labels not in ("heuristic", "teacher") and not external:
    raise ValueError(f"quality.labels must be 'heuristic', 'teacher' or 'jsonl:PATH', got "
                     f"{s.labels!r}")
  # 1. sample
  train_tokenizer = s.model.kind == "random" and not s.tokenizer
  heap: list[tuple[int, int, str]] = []  # (-hash, gid, text): the num_labels smallest hashes
  tokenizer_texts, used = [], 0
  for rank in range(io.num_shards):
    for k, row in enumerate(shards.read_records(io.input(rank))):
      if train_tokenizer and used < s.tokenizer_train_bytes:
        tokenizer_texts.append(row["text"])
        used += len(row["text"])
      if not external and not s.classifier:
        item = (-_hash(s.seed, row["id"]), minhash_lsh.gid(rank, k), row["text"])
        if not s.num_labels or len(heap) < s.num_labels:
          heapq.heappush(heap, item)
        elif item[0] > heap[0][0]:
          heapq.heapreplace(heap, item)
  if train_tokenizer:
    from phi_jax.data import tokenizer as tokenizers  # pylint: disable=g-import-not-at-top
    tokenizers.train_sentencepiece(tokenizer_texts, work / "tokenizer" / "sp",
                                   vocab_size=s.tokenizer_vocab_size)
    section["tokenizer"] = str(work / "tokenizer" / "sp.model")
  del tokenizer_texts
  import json  # pylint: disable=g-import-not-at-top
  section_json = json.dumps(section, sort_keys=True)
  sample = sorted((g, t) for _, g, t in heap)
  del heap
  labels: list[int] = []
  if external:
    label_texts, labels = quality_lib.read_labels(s.labels[len("jsonl:"):])
    shards.write_records(work / "label_texts.jsonl.gz", ({"id": str(i), "text": t}
                                                         for i, t in enumerate(label_texts)))
  elif not s.classifier:
    texts = [t for _, t in sample]
    if s.labels == "heuristic":
      labels = [quality_lib.heuristic_label(t, s.heuristic_threshold) for t in texts]
    else:
      from phi_jax.curation import stages as stages_lib  # pylint: disable=g-import-not-at-top
      teacher = stages_lib._teacher(ctx)  # pylint: disable=protected-access
      labels = quality_lib.label_with_teacher(teacher, texts, batch_size=s.teacher_batch_size)
  # 2. embed
  engine.map("quality.embed", functools.partial(_embed_task, io=io, section_json=section_json),
             io.num_shards + int(external), io.tasks("embed"))
  # 3. train (or load)
  classifier_path = work / "classifier.joblib"
  if s.classifier:
    classifier_path = pathlib.Path(s.classifier)
    metrics = quality_lib.load_classifier(classifier_path).metrics
  else:
    if external:
      features = shards.load_array(work / "features" / f"s{io.num_shards:05d}.npy")
    else:
      rows_by_shard: dict[int, list[int]] = {}
      for g, _ in sample:
        shard, position = divmod(g, 1 << minhash_lsh.GID_BITS)
        rows_by_shard.setdefault(shard, []).append(position)
      features = np.concatenate([shards.load_array(work / "features" / f"s{r:05d}.npy")[rows]
                                 for r, rows in sorted(rows_by_shard.items())])
    clf = quality_lib.train_classifier(
        features, labels, test_fraction=s.test_fraction, seed=s.seed,
        n_estimators=s.n_estimators, max_depth=s.max_depth or None,
        min_samples_leaf=s.min_samples_leaf,
        metadata={"labels": s.labels, "model": s.model.to_dict(), "layer": s.layer,
                  "max_len": s.max_len, "sharded": True})
    quality_lib.save_classifier(clf, classifier_path)
    metrics = clf.metrics
  shards.write_json(work / "metrics.json", metrics)
  # 4. score, 5. cut, 6. filter
  engine.map("quality.score", functools.partial(_score_task, io=io,
                                                classifier_path=str(classifier_path)),
             io.num_shards, io.tasks("score"))
  scores = [shards.load_array(work / "scores" / f"s{r:05d}.npy") for r in range(io.num_shards)]
  by_threshold = s.threshold >= 0
  if by_threshold:
    cut, num_kept = (float(s.threshold), -1), int(sum((x >= s.threshold).sum() for x in scores))
  else:
    cut, num_kept = _cut(scores, s)
  del scores
  engine.map("quality.filter", functools.partial(_filter_task, io=io, cut=cut,
                                                 by_threshold=by_threshold),
             io.num_shards, io.tasks("filter"))
  return {"labels": s.labels, "num_labelled": int(sum(y >= 0 for y in labels)),
          "metrics": metrics, "cut": list(cut), "kept": num_kept,
          "classifier": str(classifier_path)}
