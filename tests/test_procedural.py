"""The offline exercise generator: determinism, diversity, splits, sandbox verification, pass@k."""

import ast
import collections

import pytest

from phi_jax.curation import procedural
from phi_jax.curation import teacher as teachers


def test_deterministic_and_prefix_stable():
  a = procedural.generate(40, seed=5)
  assert a == procedural.generate(40, seed=5)
  assert procedural.generate(15, seed=5) == a[:15]
  assert {e.id for e in procedural.generate(40, seed=6)} != {e.id for e in a}


def test_diverse_and_well_formed():
  exercises = procedural.generate(3000, seed=0, split="all")
  assert len({e.id for e in exercises}) == 3000
  assert len({e.prompt + e.solution for e in exercises}) == 3000
  families = collections.Counter(e.family for e in exercises)
  assert len(procedural.FAMILIES) >= 20 and set(families) == set(procedural.FAMILIES)
  assert len({e.entry_point for e in exercises}) > 300
  assert len({e.key for e in exercises}) > 500  # Parameterisations, ignoring names and inputs.
  for e in exercises:
    tree = ast.parse(e.program())
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef) and func.name == e.entry_point
    doc = ast.get_docstring(func)  # the summary, then an example in one of the styles (or none)
    assert doc and " ".join(e.summary.split()[:6]) in " ".join(doc.split())
    assert e.example[0].startswith(e.entry_point + "(")
    assert e.prompt.endswith('"""\n') and e.solution.startswith("    ")
    assert len(e.tests) >= 3 and all(t.startswith(f"assert {e.entry_point}(") for t in e.tests)
  record = exercises[0].to_record()
  assert set(record) == {"id", "family", "prompt", "solution", "tests", "entry_point"}


def test_reference_solutions_pass_in_the_sandbox_and_wrong_ones_fail():
  exercises = procedural.generate(60, seed=11, split="all")
  results = procedural.verify(exercises, workers=2)
  failed = [(e.family, r.status, r.stderr[-300:]) for e, r in zip(exercises, results)
            if not r.passed]
  assert not failed
  wrong = [procedural.Exercise(**{**e.__dict__, "solution": "    return None\n"})
           for e in exercises[:10]]
  assert not any(r.passed for r in procedural.verify(wrong, workers=2))


def test_splits_are_disjoint():
  train = procedural.generate(600, seed=0, split="train")
  validation = procedural.generate(150, seed=0, split="validation")
  test = procedural.generate(150, seed=0, split="test")
  fam = lambda xs: {e.family for e in xs}
  assert fam(test) == set(procedural.HELDOUT_FAMILIES)
  assert not fam(test) & (fam(train) | fam(validation))
  keys = lambda xs: {e.key for e in xs}
  assert not keys(train) & keys(validation) and not keys(test) & (keys(train) | keys(validation))
  texts = lambda xs: {e.prompt + e.solution for e in xs}
  assert not texts(train) & texts(validation) and not texts(train) & texts(test)
  # Drawing with another seed never crosses a split either.
  assert not keys(procedural.generate(300, seed=9, split="train")) & keys(validation)
  with pytest.raises(ValueError, match="not in split 'train'"):
    procedural.generate(5, split="train", families=["rotate"])
  with pytest.raises(ValueError, match="Unknown task families"):
    procedural.check_split("test", ["nope"])
  with pytest.raises(ValueError, match="split must be one of"):
    procedural.generate(5, split="dev")


def test_evaluate_exercises():
  bench = procedural.generate(12, seed=2, split="test")
  ref = procedural.evaluate_exercises(bench, [e.solution for e in bench], workers=2)
  assert ref["pass@1"] == 1.0 and ref["num_problems"] == 12
  assert set(ref["per_family"]) <= set(procedural.HELDOUT_FAMILIES)
  empty = procedural.evaluate_exercises(bench, [""] * len(bench), workers=2)
  assert empty["pass@1"] == 0.0
  mixed = procedural.evaluate_exercises(
      bench[:4], [[e.solution, "    import sys\n    sys.exit(0)\n"] for e in bench[:4]],
      k=(1, 2), workers=2)
  assert mixed["pass@1"] == 0.5 and mixed["pass@2"] == 1.0  # An early exit(0) does not pass.
  assert mixed["problems"][0]["passed"] == [True, False]
  with pytest.raises(ValueError, match="k=.*needs"):
    procedural.evaluate_exercises(bench[:2], ["", ""], k=(2,))
  with pytest.raises(ValueError, match="completions for"):
    procedural.evaluate_exercises(bench[:2], [""])


def test_procedural_teacher_answers_with_exercises():
  t = teachers.ProceduralTeacher(seed=3, split="validation")
  out = t.complete(["Write an exercise about lists.", "Another one."], max_tokens=256,
                   temperature=0.8)
  assert out == t.complete(["Write an exercise about lists.", "Another one."], max_tokens=1,
                           temperature=0.0)
  assert out[0] != out[1]
  for text in out:
    assert text.startswith("```python\n") and text.endswith("```\n")
    ast.parse(text[len("```python\n"):-len("```\n")])
  assert t.exercises(5) == procedural.generate(5, seed=3, split="validation")
  with pytest.raises(ValueError, match="not in split"):
    teachers.ProceduralTeacher(split="train", families=["grade"])
