"""Decontamination (phi_jax/curation/decontam.py) against HumanEval: verbatim copies, renamed and
reformatted copies, the 13-gram test alone, other benchmark formats, and no false positives on
real standard-library code."""

import ast
import builtins
import dataclasses
import difflib
import gzip
import json
import pathlib
import random
import sysconfig
import textwrap

import numpy as np
import pytest

from phi_jax.curation import decontam
from phi_jax.curation import lexical_filter
from phi_jax.curation import planted

STDLIB = pathlib.Path(sysconfig.get_paths()["stdlib"])


@pytest.fixture(scope="module")
def problems():
  items = decontam.load_benchmark("humaneval")
  assert len(items) == 164 and items[0].id == "HumanEval/0"
  return {item.id: item for item in items}


class _Renamer(ast.NodeTransformer):
  """Renames the function, its arguments and locals; drops docstrings and annotations."""

  def __init__(self):
    self.names = {}

  def _new(self, name):
    if name in dir(builtins) or name in ("List", "Tuple", "Optional", "Any", "math"):
      return name
    return self.names.setdefault(name, f"renamed_{len(self.names)}_x")

  def visit_FunctionDef(self, node):
    node.name = self._new(node.name)
    node.returns = None
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
      body = body[1:] or [ast.Pass()]
    node.body = body
    self.generic_visit(node)
    return node

  def visit_arg(self, node):
    node.arg = self._new(node.arg)
    node.annotation = None
    return node

  def visit_Name(self, node):
    node.id = self._new(node.id)
    return node


def _renamed_copy(code):
  """A renamed, re-formatted (ast.unparse: other whitespace, quotes, parentheses) copy with
  comments and docstrings removed, indented by two spaces instead of four."""
  tree = _Renamer().visit(ast.parse(code))
  text = ast.unparse(ast.fix_missing_locations(tree))
  return "\n".join(line.replace("    ", "  ") for line in text.splitlines())


MODULES = ("textwrap.py", "heapq.py", "bisect.py", "fnmatch.py", "shlex.py", "glob.py",
           "statistics.py", "fractions.py", "difflib.py", "string.py", "calendar.py", "csv.py",
           "base64.py", "colorsys.py", "random.py", "posixpath.py", "tokenize.py", "ipaddress.py")


def _stdlib_functions(n, seed=0):
  """n real functions and methods (>= 4 lines, dedented) from standard-library modules."""
  found = []
  for name in MODULES:
    text = (STDLIB / name).read_text()
    lines = text.splitlines()
    for node in ast.walk(ast.parse(text)):
      if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 4:
        found.append(textwrap.dedent("\n".join(lines[node.lineno - 1:node.end_lineno])))
  assert len(found) > n
  random.Random(seed).shuffle(found)
  return found[:n]


def test_verbatim_solution_in_a_file_is_flagged(problems):
  p0 = problems["HumanEval/0"]
  doc = ("import os\n\n\ndef helper(path):\n    return os.path.basename(path)\n\n\n"
         + p0.code + "\n\nif __name__ == '__main__':\n    print(helper('/tmp/x'))\n")
  textwrap_source = (STDLIB / "textwrap.py").read_text()
  found = decontam.find_contaminated([textwrap_source, doc])
  # HumanEval/20 shares three 13-grams of loop code with HumanEval/0: reported as well
  assert found == [(1, "HumanEval/0"), (1, "HumanEval/20")]
  kept, report = decontam.decontaminate([textwrap_source, doc], ids=["tw", "doc"])
  assert kept == [0] and report["num_flagged"] == 1
  match, other = report["flagged"][0]["matches"]
  assert other["item"] == "HumanEval/20" and list(other["tests"]) == ["ngram"]
  assert report["flagged"][0]["id"] == "doc" and match["item"] == "HumanEval/0"
  assert match["tests"]["ngram"]["matches"] > 10 and match["tests"]["ast"]["score"] == 1.0
  assert match["tests"]["ast"]["function"] == "has_close_elements"
  json.dumps(report)


@pytest.mark.parametrize("task", ["HumanEval/0", "HumanEval/12", "HumanEval/26", "HumanEval/37",
                                  "HumanEval/129"])
def test_renamed_and_reformatted_copies_are_flagged_by_the_ast_test(problems, task):
  code = problems[task].code
  copy = _renamed_copy(code)
  assert "renamed_0_x" in copy and '"""' not in copy and copy != code
  doc = "# utilities\nimport sys\n\n" + copy + "\n\nprint(sys.argv)\n"
  matches = decontam.scan([doc], ["humaneval"])
  assert [(m["index"], m["item"]) for m in matches] == [(0, task)]
  assert "ngram" not in matches[0]["tests"]  # the renaming defeats the n-gram test ...
  assert matches[0]["tests"]["ast"]["score"] == 1.0  # ... not the normalised AST
  # the same copy inside a Markdown textbook (does not parse as a whole): still found
  book = f"## A lesson\nHere is how:\n```python\n{copy}\n```\nAnd that is it.\n"
  assert decontam.find_contaminated([book]) == [(0, task)]
  unfenced = f"A lesson. Here is how:\n{copy}\nAnd that is all: no fences.\n"
  assert decontam.find_contaminated([unfenced]) == [(0, task)]


def test_ngram_test_alone(problems):
  p = problems["HumanEval/53"]  # `return x + y`: too small for the AST test
  words = decontam.words(p.text)
  window = " ".join(words[3:16])  # exactly 13 consecutive normalised words, as prose
  assert decontam.find_contaminated([window.upper() + " !!"], ast_threshold=2.0) == [
      (0, "HumanEval/53")]
  assert decontam.find_contaminated([" ".join(words[3:15])], ast_threshold=2.0) == []  # 12 words
  assert decontam.find_contaminated([window], ngram=8, ast_threshold=2.0) == [(0, "HumanEval/53")]
  assert decontam.find_contaminated([window], min_ngram_matches=2, ast_threshold=2.0) == []
  assert decontam.find_contaminated([p.code], min_ngram_matches=0) == []  # AST alone: too small


def test_no_false_positives_on_standard_library_code():
  funcs = _stdlib_functions(200)
  assert len(funcs) == 200
  textwrap_source = (STDLIB / "textwrap.py").read_text()
  assert decontam.find_contaminated(funcs + [textwrap_source]) == []
  # and the scores stay well clear of the threshold (calibration shown in the module docstring)
  loose = decontam.DecontamConfig(ast_threshold=0.0, embed_threshold=0.2, candidate_dice=0.0)
  scores = [m["tests"]["ast"]["score"] for m in decontam.scan(funcs, ["humaneval"], loose)
            if "ast" in m["tests"]]
  assert max(scores, default=0.0) < 0.8


def test_other_benchmarks_and_model_embeddings(problems, tmp_path):
  p = problems["HumanEval/12"]
  mbpp = tmp_path / "mbpp.jsonl"
  mbpp.write_text(json.dumps({"task_id": 7, "text": "Return the longest string of a list.",
                              "code": p.code,
                              "test_list": ["assert longest([]) is None"]}) + "\n")
  custom = tmp_path / "bench.jsonl.gz"
  with gzip.open(custom, "wt") as f:
    f.write(json.dumps({"name": "mine/1", "body": p.code}) + "\n")
  copy = _renamed_copy(p.code)
  assert decontam.find_contaminated([copy], f"mbpp:{mbpp}") == [(0, "Mbpp/7")]
  assert decontam.find_contaminated([copy, "x = 1"], f"jsonl:{custom}:name:body") == [(0, "mine/1")]
  with pytest.raises(ValueError, match="jsonl:PATH:ID_FIELD:TEXT_FIELD"):
    decontam.find_contaminated([copy], f"jsonl:{custom}:name")
  with pytest.raises(ValueError, match="Unknown benchmark 'gsm8k'"):
    decontam.find_contaminated([copy], "gsm8k")

  calls = []

  def embed(texts):  # a stand-in for a model: bag of characters
    calls.append(len(texts))
    return np.stack([np.bincount(np.frombuffer(t.encode(), np.uint8), minlength=256)
                     for t in texts]).astype(np.float32)

  found = decontam.find_contaminated([copy], "humaneval", embed_fn=embed, embed_threshold=0.5)
  assert ((0, "HumanEval/12") in found) and len(calls) == 2  # benchmark once, documents once


def _near_copy(code, rng):
  """A renamed copy of `code` with 1-2 statements of its bodies deleted or inserted."""
  tree = ast.parse(code)
  for _ in range(rng.randint(1, 2)):
    bodies = [n for n in ast.walk(tree) if isinstance(getattr(n, "body", None), list)
              and len(n.body) > 1]
    if not bodies:
      break
    node = rng.choice(bodies)
    i = rng.randrange(len(node.body))
    if rng.random() < 0.5:
      del node.body[i]
    else:
      node.body.insert(i, ast.parse(f"extra_{i} = len(str(extra_{i})) + {i}").body[0])
  return _renamed_copy(ast.unparse(ast.fix_missing_locations(tree)))


def test_lexical_prefilter_passes_near_copies_at_the_ast_threshold():
  """Every near copy the AST test flags (rate >= 0.85) is a candidate of the pre-filter, and the
  filtered scan flags it; plain standard-library functions mostly are not candidates."""
  index = decontam.index_for("humaneval")
  config = decontam.DecontamConfig()
  rng = random.Random(0)
  near = []
  for g in range(0, len(index.func_source), 3):
    for _ in range(3):
      copy = _near_copy(index.func_source[g], rng)
      funcs = decontam.functions(copy)
      toks = decontam.normalized_tokens(funcs[0][1])
      rate = difflib.SequenceMatcher(None, toks, index.func_tokens[g], autojunk=False).ratio()
      if rate >= config.ast_threshold:
        near.append((g, "import os\n\n" + copy + "\n\nprint(os.sep)\n"))
  assert len(near) >= 50
  dice = [index.candidates.dice(doc)[g] for g, doc in near]
  assert min(dice) >= config.candidate_dice, min(dice)
  flagged = {m["index"] for m in decontam.scan([doc for _, doc in near], ["humaneval"])
             if "ast" in m["tests"]}
  unfiltered = {m["index"] for m in decontam.scan(
      [doc for _, doc in near], ["humaneval"], dataclasses.replace(config, candidate_dice=0.0))
      if "ast" in m["tests"]}
  assert flagged == unfiltered and len(flagged) >= 0.9 * len(near)
  funcs = _stdlib_functions(200)
  assert index.candidates.candidates(funcs, config.candidate_dice).mean() < 0.05


def test_lexical_prefilter_removes_work_not_flags():
  """On a planted corpus (5% benchmark copies, verbatim and renamed) and standard-library code, the
  filtered and the unfiltered scans report the same matches; the filtered one parses far fewer."""
  docs = [planted.document(n, seed=3, contam_rate=0.05)["text"] for n in range(600)]
  docs += _stdlib_functions(100, seed=1)
  config = decontam.DecontamConfig()
  kept, report = decontam.decontaminate(docs, config=config)
  kept0, report0 = decontam.decontaminate(docs, config=dataclasses.replace(config,
                                                                           candidate_dice=0.0))
  assert report["flagged"] == report0["flagged"] and kept == kept0
  assert report["num_flagged"] >= 20
  assert report0["num_parsed"] == sum("def" in d for d in docs) > 600
  assert report["num_parsed"] < 0.15 * report0["num_parsed"]


def test_lexical_tokens_normalise_like_the_ast():
  a = "def f(xs, k=3):\n    # sum\n    return sum(x * k for x in xs) + len('ab')  # done\n"
  b = "def total(values,factor = 10):\n  return sum(v*factor for v in values)+len(\"zzz\")\n"
  assert lexical_filter.lexical_tokens(a) == lexical_filter.lexical_tokens(b)
  assert lexical_filter.lexical_tokens("x.append(1)") == ["v", ".", "append", "(", "N", ")"]
  assert list(lexical_filter.def_blocks("x = 1\ndef f():\n  return 2\ny = 3\n")) == [
      "def f():\n  return 2"]
  with pytest.raises(ValueError, match="candidate_dice"):
    decontam.DecontamConfig(candidate_dice=1.5).validate()
