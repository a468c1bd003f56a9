"""phi-1's CodeExercises path: teacher -> exercises -> validate -> decontam -> dataset.

Paper: "Textbooks Are All You Need" (phi-1, arXiv 2306.11644), section 2.2: ~180M tokens of
"docstring -> solution" Python exercises written by GPT-3.5, diversified by constraining function
names and topics; section 5 prunes those too close to HumanEval (13-grams, embedding distance,
AST match rate) before reporting results.

By default the teacher is `ProceduralTeacher` (offline, no language model: `phi_jax.curation.procedural`
draws exercises from a grammar of 32 task families and checks them in the sandbox). With a real
teacher: `--config.teacher.kind=openai --config.teacher.model=gpt-3.5-turbo
--config.teacher.cache_dir=/data/teacher_cache` (key from $OPENAI_API_KEY; answers are cached, so
an interrupted run resumes), or `kind=local` with `teacher.path` (a phi_jax run or HF folder).

    python -m phi_jax.curation --config=configs/data/synthetic_exercises.py --workdir=workdirs/data_exercises
    # then fine-tune on it with the printed flags (data.dataset=synthetic_exercises, ...)

Stages: `teacher` builds it and asks one probe prompt (a bad endpoint fails here); `synthetic` asks
for `n` exercises (`phi_jax.curation.synthetic.generate_exercises`: parsed, asserts run in the
sandbox, exact duplicates dropped); `validate` re-checks every kept record on its own (parses,
asserts pass in the sandbox); `decontam` drops exercises matching HumanEval; `dataset` writes the
`synthetic_exercises` TFDS dataset (prompt / target / tests features).

Variants: `:tiny` (24 procedural exercises; for tests, ~15 s on 2 CPU cores).

Measured here with the procedural teacher: every requested exercise is kept and validated (they
are correct by construction); decontamination flags 83 of the 2,000 (4.2%): gcd exercises
(HumanEval/13 is greatest_common_divisor, 39), pairwise comparisons (HumanEval/73, 20),
element-wise `[f(x, y) for x, y in zip(a, b)]` (HumanEval/152, 18) and character counts
(HumanEval/98, 6), all by the AST test (match rate >= 0.85), none by 13-grams: structural
near-copies, which is what phi-1's AST pruning removes. `:tiny` keeps 23 of 24.
"""

import ml_collections

from phi_jax.curation import teacher as teacher_lib


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.stages = ("teacher", "synthetic", "validate", "decontam", "dataset")
  c.tokenizer = ""  # a tokenizer path: the summary then also counts its tokens
  c.progress = True

  c.teacher = teacher_lib.teacher_config("procedural")
  c.teacher.probe = True
  c.teacher.probe_prompt = ("Write a short Python function with a docstring that returns the sum "
                            "of a list of integers, then two asserts that test it.")
  c.teacher.probe_max_tokens = 256

  c.synthetic = ml_collections.ConfigDict(dict(
      kind="exercises", n=2000, seed=0, topics=(), max_tokens=700, temperature=0.8,
      batch_size=32, require_tests=False, workers=0, timeout_s=10.0,
      subject="code", min_chars=400))  # subject / min_chars: kind='textbooks' only

  c.validate = ml_collections.ConfigDict(dict(
      kind="exercises", run_tests=True, require_tests=False, workers=0, timeout_s=10.0,
      min_chars=400))

  c.decontam = ml_collections.ConfigDict(dict(
      benchmarks=("humaneval",), ngram=13, min_ngram_matches=1, max_item_share=2,
      embed_threshold=0.5, ast_threshold=0.85, min_ast_nodes=20))

  c.dataset = ml_collections.ConfigDict(dict(builder="synthetic_exercises",
                                             validation_fraction=0.02))

  if arg == "tiny":
    c.progress = False
    c.synthetic.n = 24
    c.dataset.validation_fraction = 0.1
  elif arg:
    raise ValueError(f"Unknown config variant {arg!r}; use '' or 'tiny'")
  return c
