"""The tiny coder's data: VERSION 2 splits (held-out variants, not held-out tasks), the mixture
(verified, train split only, decontaminated), pass@1 scoring, hand-written problems."""

import collections

import pytest

from phi_jax.curation import decontam, mixture, procedural
from phi_jax.curation import procedural_textbook as pt
from phi_jax.evals import functions, problems


def _shape(ex):
  """(family, mode): the task shape an exercise is a variant of."""
  head = ex.key.split(":", 1)[1]
  return ex.family, head.split(",")[0]


def test_validation_holds_out_constants_not_tasks():
  train = procedural.generate(6000, seed=0, split="train")
  validation = procedural.generate(300, seed=1, split="validation")
  train_shapes = {_shape(ex) for ex in train}
  assert all(ex.split == "validation" for ex in validation)
  assert all(_shape(ex) in train_shapes for ex in validation)  # every shape is taught
  assert not {ex.key for ex in validation} & {ex.key for ex in train}  # no variant is
  # balanced: no family dominates (the VERSION 1 split drew 18% of 'validation' from one family)
  top = collections.Counter(ex.family for ex in validation).most_common(1)[0][1]
  assert top < 0.15 * len(validation) and len({ex.family for ex in validation}) >= 15
  # a task without constants is never a validation variant
  assert procedural.split_of("gcd_lcm", ("lcm",)) == "train"
  assert procedural.variant_constants(("greater", 5)) == (5,)
  assert procedural.variant_constants(("largest", 0)) == ()
  assert procedural.split_of("rotate", (True, 3)) == "test"


def test_docstring_styles_keep_the_example_and_summary():
  exercises = procedural.generate(400, seed=3, split="all")
  styles = collections.Counter()
  for ex in exercises:
    doc = ex.prompt.split('"""')[1]
    assert ex.summary.split()[0] in doc
    styles[">>>" in doc, "Example:" in doc, "Args:" in doc] += 1
    call, result = ex.example
    assert call.startswith(ex.entry_point + "(") and result
  assert len(styles) == 4  # doctest, 'Example:' line, Args/Returns + doctest, summary only
  assert all(r.passed for r in procedural.verify(exercises[:60]))


def test_textbook_sections_bind_numbers_to_code():
  text, used = pt.write_textbook({"topic": "functions and return values"}, seed=5)
  assert "Reading the task: the code reads" in text
  for ex in used:
    assert ex.split == "train" and ex.prompt + ex.solution in text


def test_mixture_is_verified_train_only_and_drops_broken_exercises():
  records, stats = mixture.make(120, 6, 30, seed=0)
  assert stats["requested"] == {"exercise": 120, "drill": 30, "textbook": 6}
  kinds = stats["kinds"]
  assert kinds["exercise"] == 120 and kinds["drill"] == 30 and kinds["textbook"] >= 6  # pieces
  assert all(r["text"] == r["prompt"] + r["target"] and r["target"].strip() for r in records)
  sections = collections.defaultdict(list)
  for r in records:
    if r["kind"] == "textbook":
      sections[r["split_key"]].append(r)
  assert len(sections) == 6
  for pieces in sections.values():  # the pieces of a section are the section, in order
    pieces.sort(key=lambda r: int(r["id"].rsplit("-", 1)[1]))
    assert all(r["text"].count("```") % 2 == 0 for r in pieces)  # never cut inside code
  assert stats["dropped"] == {"failed_asserts": 0, "duplicate": 0}
  held_out = {ex.text for ex in procedural.generate(200, seed=2024, split="validation")}
  assert not held_out & {r["text"] for r in records}
  assert not any(r["family"] in procedural.HELDOUT_FAMILIES for r in records)
  # a template whose body disagrees with its asserts is caught by the batched check
  good = procedural.generate(30, seed=4, split="train")
  broken = good[:5] + [procedural.Exercise(**{**good[5].__dict__,
                                              "solution": "    return None\n"})] + good[6:]
  assert mixture.verify(broken, batch=8) == [i != 5 for i in range(30)]
  hang = procedural.Exercise(**{**good[0].__dict__, "solution": "    while True:\n        pass\n"})
  assert mixture.verify([good[1], hang, good[2]], batch=3, timeout_s=3.0) == [True, False, True]


def test_decontam_scores_each_distinct_function_once_with_the_same_result():
  texts = [ex.text for ex in procedural.generate(150, seed=7, split="train")]
  texts += [problems.HANDWRITTEN[0].text, texts[0]]
  kept, report = decontam.decontaminate(texts, ["humaneval", "handwritten"])
  flagged = {f["index"] for f in report["flagged"]}
  assert len(texts) - 2 in flagged  # the hand-written problem itself
  one_by_one = {i for i in range(len(texts))
                if decontam.find_contaminated([texts[i]], "humaneval")
                or decontam.find_contaminated([texts[i]], "handwritten")}
  assert flagged == one_by_one
  assert kept == [i for i in range(len(texts)) if i not in flagged]


def test_function_scoring_pass_fail_parse():
  items = list(problems.HANDWRITTEN[:3])
  bodies = [items[0].solution, "    return n - 7\n", "    return (\n"]
  result = functions.evaluate(items, bodies)
  assert result["passed"] == 1 and result["n"] == 3
  assert [r["passed"] for r in result["problems"]] == [True, False, False]
  assert result["parse_rate"] == pytest.approx(2 / 3)
  assert not functions.parses(items[0].prompt, "\n")  # an empty body is not a completion
  lo, hi = result["ci95"]
  assert lo < 1 / 3 < hi
  assert functions.function_body("    return 1\n\nprint(f(2))\n") == "    return 1\n"
  exit_early = functions.evaluate(items[:1], ["    import sys; sys.exit(0)\n"])
  assert exit_early["passed"] == 0


def test_handwritten_solutions_pass_and_are_phrased_differently():
  result = functions.evaluate(problems.HANDWRITTEN, [p.solution for p in problems.HANDWRITTEN])
  assert result["passed"] == len(problems.HANDWRITTEN)
  openings = ("Return", "Returns", "Compute and return", "This function returns")
  for p in problems.HANDWRITTEN:
    doc = p.prompt.split('"""')[1]
    assert not doc.startswith(openings) and ">>>" not in doc
  names = {ex.entry_point for ex in procedural.generate(3000, seed=0, split="all")}
  assert not names & {p.entry_point for p in problems.HANDWRITTEN}


def test_binding_drills_are_copies_and_no_eval_body():
  import re
  drills = procedural.generate_drills(400, seed=0)
  assert all(r.passed for r in procedural.verify(drills[:80]))
  for ex in drills:
    assert ex.family.startswith("drill_") and ex.family not in procedural.FAMILIES
    expr = ex.solution.strip()[len("return "):]
    assert expr in ex.summary  # the body is the docstring's expression

  def shape(ex):  # the body with identifiers and numbers erased
    return re.sub(r"\d+", "N", re.sub(r"\b(?!return\b)[A-Za-z_]\w*\b", "v", ex.solution))
  held = procedural.generate(1500, seed=5, split="validation")
  held += procedural.generate(600, seed=5, split="test")
  assert not {shape(ex) for ex in drills} & {shape(ex) for ex in held}
