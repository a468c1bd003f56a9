"""The data pipeline at scale: a planted synthetic code corpus through every filter, on shards.

What it checks (issue 15): the sharded, streaming pipeline (`phi_jax.curation.sharded`, run by
datatrove's local executor) on N synthetic Python documents (`phi_jax.curation.planted`: 2-4
template functions each, ~1.8 KB) with planted near-duplicates (5%: an earlier document with its
first function renamed, a comment rewritten and one added) and planted benchmark solutions
(0.5%: HumanEval prompt + canonical solution, half verbatim, half with every identifier renamed
and docstrings dropped), through source -> dedup -> quality -> decontam -> dataset.
DIR/summary.json: per-stage counts and seconds, `peak_rss_mib` (summed RSS of every process of
the run), `cpu_seconds`, `duplicate_recall` (planted copies found in their original's cluster),
`contamination_recall` (planted benchmark documents flagged, of those reaching decontam).

    python -m phi_jax.curation --config=configs/data/scale_test.py:num_docs=200000 --workdir=DIR
    # variants: num_docs=N, workers=W (default 2), shards=S (default: N / 6250, >= 2 x workers)

Goal on a 2-core machine with 2 workers: N = 200,000 in <= 10 min, peak RSS <= 2 GiB, both
recalls >= 0.95. Measured: BENCHMARKS.md ("Data pipeline at scale").
"""

import ml_collections

from phi_jax import config_args


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  args = config_args.parse_arg(arg, {"num_docs": "20000", "workers": "2", "shards": "0"})
  num_docs, workers, num_shards = int(args["num_docs"]), int(args["workers"]), int(args["shards"])
  c = ml_collections.ConfigDict()
  c.stages = ("source", "dedup", "quality", "decontam", "dataset")
  c.tokenizer = ""
  c.progress = False
  c.workers = workers  # >= 1: the sharded pipeline on datatrove's local executor
  c.shards = num_shards or max(2 * workers, -(-num_docs // 6250))
  c.executor = "local"  # 'slurm' / 'ray' with executor_options: docs/DATA_AT_SCALE.md
  c.executor_options = ml_collections.ConfigDict()

  c.source = ml_collections.ConfigDict(dict(
      kind="planted", num_docs=num_docs, seed=0, dup_rate=0.05, contam_rate=0.005,
      path="", text_key="text", id_key="id", max_docs=0))

  # Threshold 0.7: the planted copies' Jaccard to their original is 0.70-0.94 (median 0.88).
  c.dedup = ml_collections.ConfigDict(dict(
      threshold=0.7, num_perm=128, shingle_size=5, seed=0, verify="exact", use_scores=False))

  c.quality = ml_collections.ConfigDict(dict(
      labels="heuristic", num_labels=2000, heuristic_threshold=0.7, teacher_batch_size=32,
      classifier="", tokenizer="", tokenizer_vocab_size=512, tokenizer_train_bytes=2_000_000,
      layer=-1, max_len=64, batch_size=64, test_fraction=0.2, seed=0, n_estimators=50,
      max_depth=0, min_samples_leaf=1, keep_fraction=0.9, threshold=-1.0))
  c.quality.model = ml_collections.ConfigDict(dict(
      kind="random", path="", preset="tiny-parallel", seed=0))
  c.quality.model.overrides = ml_collections.ConfigDict()

  c.decontam = ml_collections.ConfigDict(dict(
      benchmarks=("humaneval",), ngram=13, min_ngram_matches=1, max_item_share=2,
      embed_threshold=0.5, ast_threshold=0.85, min_ast_nodes=20))

  c.dataset = ml_collections.ConfigDict(dict(builder="filtered_corpus", validation_fraction=0.02))
  return c
