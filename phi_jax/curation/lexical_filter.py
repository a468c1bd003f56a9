"""A cheap lexical pre-filter for decontamination's AST test: which documents could hold a copy of
a benchmark function, found without parsing them.

    index = CandidateIndex.build(benchmark_function_sources)
    mask = index.candidates(texts, dice=0.5)   # [N] bool: the AST test runs on these only
    blocks = block_kgrams(text)                # once per document, for any number of indexes
    index.best_dice(blocks) >= 0.5             # the same test, from the document's blocks

Parsing a document (`ast.parse`) and normalising its functions costs ~3 ms for a 2 KB file, most
of decontamination's time, and almost every document of a real corpus matches no benchmark. This
module reads code as a flat token stream instead (one regular expression, no parse): comments are
dropped, string literals become `S`, numbers `N`, identifiers `v` unless they are a keyword, a
builtin or an attribute name (after `.`); operators stay themselves. That is the normalisation the
AST test applies (identifiers renamed, literals by type, no comments or formatting), read off the
characters, so a renamed, re-formatted or re-commented copy of a benchmark function has the same
token stream as the function. Each `def` block of a document (the `def` line and the lines
indented under it, nested ones too, as `decontam` finds them in text that does not parse) is
compared with each benchmark function by the Dice coefficient of their distinct token K-grams
(K = 4), 2 |A & B| / (|A| + |B|): like the AST test's match rate 2M / T, it is high only for a
block that is about as long as the function and shares most of it. A document with a block at
`dice` or more against some benchmark function is a candidate; the AST test then decides.

The filter only removes work: a document it passes gets the full AST test, one it drops cannot be
flagged by the AST test (the n-gram test still reads every document). It is not a proof that every
document the AST test would flag passes. Measured on 2026-12-02 (k = 4; HumanEval's 154 functions
of >= 20 normalised AST tokens): 1,065 near copies (renamed, 1-3 statements deleted or inserted,
AST match rate >= 0.85) scored Dice 0.615 at the least (1st percentile 0.685); plain documents of
the planted scale-test corpus at most 0.447, and 150 standard-library modules 0.571 (99th
percentile 0.566). `tests/test_decontam.py` checks near copies at the AST threshold pass, and that
filtered and unfiltered scans flag the same documents.
"""

from __future__ import annotations

import builtins
import dataclasses
import keyword
import re
import textwrap
from typing import Iterator, Sequence

import numpy as np

_TOKEN = re.compile(
    r"""(?P<s>[rRbBuUfF]{0,2}(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''"""
    r"""|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'))"""
    r"""|(?P<c>\#[^\n]*)|(?P<n>\d[\w.]*)|(?P<w>[A-Za-z_]\w*)|(?P<o>[^\s\w])""")
_DEF = re.compile(r"^([ \t]*)(?:async[ \t]+)?def[ \t]+\w+", re.M)
K = 4  # the k-gram length (measured: the module docstring)
_KEEP = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(dir(builtins))


def lexical_tokens(text: str) -> list[str]:
  """The normalised token stream of `text` (module docstring); no parse, any text."""
  out: list[str] = []
  prev = ""
  for m in _TOKEN.finditer(text):
    kind = m.lastgroup
    if kind == "w":
      word = m.group()
      tok = word if word in _KEEP or prev == "." else "v"
    elif kind == "o":
      tok = m.group()
    elif kind == "s":
      tok = "S"
    elif kind == "n":
      tok = "N"
    else:  # a comment
      continue
    out.append(tok)
    prev = tok
  return out


def kgrams(tokens: Sequence[str], k: int) -> set[tuple[str, ...]]:
  """The distinct k-grams of `tokens` (the whole stream as one gram when it is shorter than k)."""
  if len(tokens) < k:
    return {tuple(tokens)} if tokens else set()
  return {tuple(tokens[i:i + k]) for i in range(len(tokens) - k + 1)}


def def_blocks(text: str) -> Iterator[str]:
  """Each `def` of `text` (any indentation, nested ones too) and the lines indented under it,
  dedented: what a function's source is where the text does not parse."""
  lines = text.splitlines()
  for match in _DEF.finditer(text):
    start = text.count("\n", 0, match.start())
    indent = len(match.group(1).expandtabs())
    end = start + 1
    while end < len(lines):
      line = lines[end].expandtabs()
      if line.strip() and len(line) - len(line.lstrip()) <= indent:
        break
      end += 1
    yield textwrap.dedent("\n".join(lines[start:end]))


def block_kgrams(text: str) -> list[set[tuple[str, ...]]]:
  """The token K-grams of each `def` block of `text` (`def_blocks`), what `best_dice` reads."""
  return [kgrams(lexical_tokens(block), K) for block in def_blocks(text)]


@dataclasses.dataclass
class CandidateIndex:
  """Token K-grams of the benchmark functions: gram -> row of `incidence` [grams, functions]."""

  rows: dict[tuple[str, ...], int]
  incidence: np.ndarray   # [num_grams, num_functions] uint8, 1 where the function has the gram
  sizes: np.ndarray       # [num_functions] distinct K-grams of each function

  @classmethod
  def build(cls, sources: Sequence[str]) -> "CandidateIndex":
    """The index of the benchmark functions' sources (`ast.unparse` of each, or any code)."""
    grams = [kgrams(lexical_tokens(src), K) for src in sources]
    rows: dict[tuple[str, ...], int] = {}
    for gs in grams:
      for g in gs:
        rows.setdefault(g, len(rows))
    incidence = np.zeros((len(rows), len(sources)), np.uint8)
    for f, gs in enumerate(grams):
      incidence[[rows[g] for g in gs], f] = 1
    return cls(rows, incidence, incidence.sum(axis=0, dtype=np.int64))

  def dice(self, text: str) -> np.ndarray:
    """[num_functions] the best Dice coefficient of any `def` block of `text` with each function."""
    return self._dice(block_kgrams(text))

  def _dice(self, blocks: Sequence[set[tuple[str, ...]]]) -> np.ndarray:
    best = np.zeros(len(self.sizes))
    for grams in blocks:
      hit = [r for r in map(self.rows.get, grams) if r is not None]
      if hit:
        shared = self.incidence[hit].sum(axis=0, dtype=np.int64)
        np.maximum(best, 2 * shared / (len(grams) + self.sizes), out=best)
    return best

  def best_dice(self, blocks: Sequence[set[tuple[str, ...]]]) -> float:
    """The best Dice coefficient of any block (`block_kgrams`) with any function (0 if none)."""
    return float(self._dice(blocks).max()) if len(self.sizes) else 0.0

  def candidates(self, texts: Sequence[str], dice: float) -> np.ndarray:
    """[len(texts)] bool: documents with a `def` block at >= `dice` against some function."""
    return np.array([self.best_dice(block_kgrams(t)) >= dice for t in texts], bool)
