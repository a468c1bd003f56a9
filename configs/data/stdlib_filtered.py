"""phi-1's filtered code data, at home: stdlib code -> dedup -> quality filter -> decontam -> dataset.

Paper: "Textbooks Are All You Need" (phi-1, arXiv 2306.11644), section 2.1: ~35B tokens of Python
(The Stack + StackOverflow) were near-deduplicated, GPT-4 labelled ~100k files with their
"educational value for a student whose goal is to learn basic coding concepts", a random forest
on a pretrained code model's output embeddings scored everything, and the best ~6B tokens were
kept; section 5 decontaminates against HumanEval (13-grams, embeddings, AST match rate).

Here the source is this Python's standard library (the `code_corpus` builder, tests excluded) and
the embedding model is the quickstart run (a small phi-1-shaped model trained on that corpus):

    python -m phi_jax.main --config=configs/quickstart.py --workdir=workdirs/quickstart
    python -m phi_jax.curation --config=configs/data/stdlib_filtered.py --workdir=workdirs/data_stdlib
    # then train on the result with the printed flags, e.g.
    python -m phi_jax.main --config=configs/quickstart.py --workdir=workdirs/qs_filtered \
        --config.data.dataset=filtered_corpus --config.data.source_dir=workdirs/data_stdlib/dataset \
        --config.data.data_dir=workdirs/data_stdlib/dataset/tfds

LABELS: by default `quality.labels='heuristic'`, a STAND-IN for the GPT-4 labels that runs offline:
`phi_jax.curation.quality.heuristic_label` scores docstring/comment density, documented functions,
identifier length and line length. It is not phi-1's judgement. For the real thing give labels:
`--config.quality.labels=jsonl:/path/labels.jsonl` (lines {"text", "label": 0/1}), or ask a
teacher the phi-1 question: `--config.quality.labels=teacher --config.teacher.kind=openai
--config.teacher.model=gpt-4o --config.teacher.cache_dir=/data/teacher_cache` (key from
$OPENAI_API_KEY).

Variants: `:tiny` (40 small stdlib files, a random tiny model and a 512-token SentencePiece trained
on the documents; for tests, ~20 s on 2 CPU cores). Fields are overridden on the command line
(--config.quality.keep_fraction=0.3, --config.quality.model.path=..., --config.tokenizer=...).

Measured here (CPython 3.11 stdlib, quickstart run as the embedder, stand-in labels on a 300-file
sample; 4 min on a busy 2-core CPU machine):

    | stage    | documents | whitespace tokens | bytes      |
    | source   | 731       | 1,287,146         | 12,118,641 |
    | dedup    | 685       | 1,221,853         | 11,654,088 |   46 removed: codec tables
    | quality  | 343       | 827,261           | 7,907,744  |   (encodings/cp*.py), sre_* shims
    | decontam | 343       | 827,261           | 7,907,744  |   nothing flagged
    quality: held-out accuracy 0.73 (majority baseline 0.60), ROC AUC 0.86 on 60 labelled files.
Expected at phi-1's scale: ~35B -> ~6B tokens with GPT-4 labels (not reproducible offline).
"""

import ml_collections

from phi_jax.curation import teacher as teacher_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.stages = ("source", "dedup", "quality", "decontam", "dataset")
  c.tokenizer = ""  # a tokenizer path: the summary then also counts its tokens
  c.progress = True

  c.source = ml_collections.ConfigDict(dict(
      kind="code_corpus",  # or 'text_corpus' / another builder, or 'jsonl' (path, text_key, id_key)
      source_dir="", max_files=0, max_bytes=0, data_dir="", path="", text_key="text", id_key="id",
      max_docs=0))

  c.dedup = ml_collections.ConfigDict(dict(
      threshold=0.8, num_perm=128, shingle_size=5, seed=0, verify="exact", use_scores=False))

  c.quality = ml_collections.ConfigDict(dict(
      labels="heuristic",  # 'heuristic' (STAND-IN) | 'teacher' | 'jsonl:PATH'
      # documents labelled: a seeded sample, as phi-1 labelled ~100k files and classified the
      # rest; 0 = all (then the forest's scores on them are in-sample)
      num_labels=300,
      heuristic_threshold=0.7, teacher_batch_size=32,
      classifier="",  # a saved classifier to apply instead of training one
      tokenizer="",  # '' = the run's tokenizer (kind 'run'); trained on the documents for 'random'
      tokenizer_vocab_size=4096, tokenizer_train_bytes=4_000_000,
      layer=-1, max_len=512, batch_size=16,
      test_fraction=0.2, seed=0, n_estimators=200, max_depth=0, min_samples_leaf=1,
      keep_fraction=0.5, threshold=-1.0))  # threshold >= 0 keeps score >= threshold instead
  c.quality.model = ml_collections.ConfigDict(dict(
      kind="run",  # 'auto' (detected) | 'run' (a workdir) | 'checkpoint' | 'hf' | 'random'
      path="workdirs/quickstart", preset="tiny-parallel", seed=0))
  c.quality.model.overrides = ml_collections.ConfigDict()

  c.decontam = ml_collections.ConfigDict(dict(
      benchmarks=("humaneval",),  # + 'mbpp:/path/mbpp.jsonl', 'jsonl:PATH:ID_FIELD:TEXT_FIELD'
      ngram=13, min_ngram_matches=1, max_item_share=2, embed_threshold=0.5, ast_threshold=0.85,
      min_ast_nodes=20))

  c.dataset = ml_collections.ConfigDict(dict(builder="filtered_corpus", validation_fraction=0.02))

  c.teacher = teacher_lib.teacher_config("openai")  # used by quality.labels='teacher' only

  if arg == "tiny":
    c.progress = False
    c.source.update(max_files=40, max_bytes=60_000)
    c.quality.update(num_labels=0, tokenizer_vocab_size=512, tokenizer_train_bytes=1_000_000, max_len=128,
                     batch_size=8, n_estimators=50, test_fraction=0.25, keep_fraction=0.75)
    c.quality.model.update(kind="random", path="", preset="tiny-parallel")
    c.dataset.validation_fraction = 0.1
  elif arg:
    raise ValueError(f"Unknown config variant {arg!r}; use '' or 'tiny'")
  return c
