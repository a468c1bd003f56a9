"""Near-duplicate removal (phi_jax/curation/dedup.py) on real standard-library functions."""

import ast
import json
import pathlib
import sysconfig

import pytest

from phi_jax.curation import dedup

STDLIB = pathlib.Path(sysconfig.get_paths()["stdlib"])


def _functions(*modules, min_lines=6):
  """{name: source} of the functions and methods (>= min_lines lines) of stdlib modules."""
  out = {}
  for module in modules:
    text = (STDLIB / module).read_text()
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, ast.FunctionDef):
        segment = ast.get_source_segment(text, node)
        if segment.count("\n") >= min_lines:
          out.setdefault(f"{module}:{node.name}", segment)
  return out


NAMED = _functions("textwrap.py", "heapq.py", "bisect.py", "fnmatch.py", "shlex.py", "glob.py")
FUNCS = list(NAMED.values())


def _edited_copies():
  """Three originals and an edited copy of each: a renamed local, a changed comment, both."""
  wrap = NAMED["textwrap.py:_wrap_chunks"]
  fix = NAMED["textwrap.py:_fix_sentence_endings"]
  dedent = NAMED["textwrap.py:dedent"]
  assert "cur_len" in wrap and "# Nope" in wrap and "patsearch" in fix and "indents" in dedent
  return [(wrap, wrap.replace("cur_len", "current_length")),
          (fix, fix.replace("patsearch", "search")),
          (dedent, dedent.replace("indents", "found").replace("# Look for", "# Find"))]


def test_exact_and_edited_copies_cluster_and_unrelated_texts_do_not():
  pairs = _edited_copies()
  texts = list(FUNCS)
  expected = []
  for original, copy in pairs:
    assert original != copy
    texts.append(copy)
    expected.append(sorted([texts.index(original), len(texts) - 1]))
  texts.append(FUNCS[-1])  # an exact copy
  expected.append([len(FUNCS) - 1, len(texts) - 1])
  assert len(FUNCS) > 40
  assert dedup.near_duplicates(texts) == sorted(expected)
  assert dedup.near_duplicates(FUNCS) == []  # distinct real functions: no clusters


def test_deduplicate_keeps_lowest_index_or_highest_score_and_reports():
  wrap, wrap_edit = _edited_copies()[0]
  texts = [FUNCS[0], wrap_edit, FUNCS[1], wrap, wrap, "", "x"]
  kept, report = dedup.deduplicate(texts, ids=[f"d{i}" for i in range(len(texts))])
  assert kept == [0, 1, 2, 5, 6]
  (cluster,) = report["clusters"]
  assert cluster["members"] == [1, 3, 4] and cluster["kept"] == 1 and cluster["removed"] == [3, 4]
  assert cluster["ids"] == ["d1", "d3", "d4"]
  sims = cluster["similarity_to_kept"]
  assert sims[0] == 1.0 and sims[1] == sims[2] and 0.8 <= sims[1] < 1.0
  assert (report["num_documents"], report["num_kept"], report["num_removed"]) == (7, 5, 2)
  json.dumps(report)
  scores = [0.0, 0.1, 0.0, 0.9, 0.9, 0.0, 0.0]
  kept, report = dedup.deduplicate(texts, scores=scores)
  assert kept == [0, 2, 3, 5, 6] and report["clusters"][0]["kept"] == 3  # tie 3/4 -> lower index
  with pytest.raises(ValueError, match="scores has 2 entries for 7 texts"):
    dedup.deduplicate(texts, scores=[1.0, 2.0])


def test_threshold_is_monotone():
  texts = [t for pair in _edited_copies() for t in pair]
  texts += [f for f in FUNCS[:20] if f not in texts]
  base = _edited_copies()[0][0]
  for k in range(1, 6):  # increasingly many renames of the same function
    texts.append(base.replace("cur_len", "a" * k).replace("width", "w" * k, k)
                 .replace("chunks", "c" * k, 4 * k))
  removed = []
  for threshold in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0):
    kept, report = dedup.deduplicate(texts, threshold)
    removed.append(report["num_removed"])
    for cluster in report["clusters"]:
      assert min(cluster["similarity_to_kept"]) > 0  # reported similarities are real
  assert removed == sorted(removed, reverse=True), removed
  assert removed[0] > removed[-1] and removed[-1] == 0


def test_empty_and_short_texts():
  assert dedup.near_duplicates([]) == []
  assert dedup.near_duplicates(["", "   \n", ""]) == []  # no tokens: never a duplicate
  assert dedup.near_duplicates(["x = 1", "x = 1", "y = 2", "x=1"]) == [[0, 1, 3]]  # < 1 shingle
  assert dedup.shingles("a b", 5) == {b"a b"} and dedup.shingles("", 5) == set()
  assert len(dedup.shingles("a b c d e f", 5)) == 2


def test_deterministic_and_estimate_mode():
  texts = [t for pair in _edited_copies() for t in pair] + FUNCS
  first = dedup.near_duplicates(texts, seed=3)
  assert first == dedup.near_duplicates(texts, seed=3) == dedup.near_duplicates(list(texts), seed=3)
  assert first == dedup.near_duplicates(texts, verify="estimate", num_perm=256)
  with pytest.raises(ValueError, match="threshold must be in"):
    dedup.near_duplicates(texts, threshold=1.5)
  with pytest.raises(ValueError, match="verify must be"):
    dedup.near_duplicates(texts, verify="fuzzy")
