"""CodeExercises-style problems without a language model: a grammar of small Python tasks.

    exercises = procedural.generate(1000, seed=0, split='train')     # deterministic
    ex = exercises[0]
    ex.prompt        # 'def count_vowels(text: str) -> int:' + a docstring with one example
    ex.solution      # the function body, indented: what a model must write
    ex.tests         # ('assert count_vowels("banana") == 3', ...)
    results = verify(exercises)                                     # runs them in the sandbox
    bench = procedural.generate(200, seed=0, split='test')          # the held-out benchmark
    procedural.evaluate_exercises(bench, completions, k=(1,))       # pass@k, HumanEval-style

Each task family (32 of them: arithmetic, digits, strings, lists, dicts, conditionals, loops and
compositions such as filter -> map -> reduce) draws its own constants and operations, writes a
docstring (with one example) and a reference body, and computes the expected value of each test
with a Python twin of that body; `verify` then runs body + asserts in the sandbox
(`phi_jax.evals.execution`), so a template that disagrees with its twin is caught. Function and
argument names are drawn from per-family vocabularies (the papers' "constrain the function name"
diversity). Everything is seeded: the same (n, seed, split, families) gives the same exercises, and
the first k of n are the exercises of n=k.

Splits (no exercise is in two of them):
  'test'        the HELDOUT_FAMILIES, whole families never drawn for training: the held-out
                exercise benchmark measures transfer to unseen task types.
  'validation'  unseen variants of seen tasks: parameterisations (a family's operations and
                constants, ignoring names and test inputs) that have constants and whose hash is
                < VALIDATION_FRACTION. The task shape (family + mode) is always also in 'train'
                with other constants: what is held out is binding the docstring's numbers,
                characters and words, not a new kind of task (`split_of`).
  'train'       every other parameterisation of the non-held-out families.
  'all'         every family and parameterisation (e.g. for an offline stand-in teacher).
`Exercise.split` says which split an exercise belongs to.

Binding drills (`generate_drills`, `drills.py`): training-only one-line tasks whose body is the
docstring's expression, for teaching a small model to copy names and constants; never evaluated,
not in FAMILIES.

Records (`Exercise.to_record`) are HumanEval-like: {id, family, prompt, solution, tests,
entry_point}; the program that is run is `prompt + completion + "\\n\\n" + tests`.
"""

from phi_jax.curation.procedural.exercises import (FAMILIES, check_split,
                                                   evaluate_exercises, format_response, generate,
                                                   generate_drills,
                                                   run_programs, split_of, variant_constants, verify)
from phi_jax.curation.procedural.grammar import (HELDOUT_FAMILIES, SPLITS, VALIDATION_FRACTION,
                                                VERSION, Exercise, Task)
