"""phi_jax's packages import each other in one direction (imports inside functions included).

A "part" is a top-level subpackage (phi_jax/<part>/...) or module (phi_jax/<part>.py). The test
builds the import graph between parts from every file's AST and fails on any cycle, naming the
imports that close it; it also pins the intended order of the layers, so a new upward import
fails here even before it closes a cycle.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "phi_jax"

# Lower layers first. A part may import only parts of strictly lower layers (or its own).
LAYERS = (
    ("models", "data", "config_args", "cpus"),
    ("convert", "decoding", "chat"),
    ("evals",),
    ("train",),
    ("curation",),
    ("study",),
    ("sweep_table",),
    ("main", "eval", "generate", "sweep", "aot"),
)


def _part(module: str) -> str | None:
  bits = module.split(".")
  return bits[1] if len(bits) > 1 and bits[0] == "phi_jax" else None


def _imports(path: pathlib.Path) -> list[tuple[str, int]]:
  """(imported module, line) for every import in the file, relative imports resolved."""
  rel = path.relative_to(ROOT.parent).with_suffix("")
  package = list(rel.parts if rel.name == "__init__" else rel.parts[:-1])
  if package[-1:] == ["__init__"]:
    package = package[:-1]
  out = []
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      out += [(a.name, node.lineno) for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package[: len(package) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
      else:
        module = node.module or ""
      out.append((module, node.lineno))
      if module == "phi_jax":  # from phi_jax import train
        out += [(f"phi_jax.{a.name}", node.lineno) for a in node.names]
  return out


def import_graph() -> dict[str, dict[str, str]]:
  """part -> {imported part: 'file:line' of the first such import}."""
  graph: dict[str, dict[str, str]] = {}
  for path in sorted(ROOT.rglob("*.py")):
    rel = path.relative_to(ROOT.parent)
    src = rel.parts[1].removesuffix(".py") if len(rel.parts) > 1 else None
    if src is None or src == "__init__":
      continue
    for module, line in _imports(path):
      dst = _part(module)
      if dst and dst != src:
        graph.setdefault(src, {}).setdefault(dst, f"{rel}:{line}")
  return graph


def find_cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
  """Strongly connected components with more than one part (Tarjan)."""
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  comps: list[list[str]] = []

  def visit(v: str) -> None:
    index[v] = low[v] = len(index)
    stack.append(v)
    for w in graph.get(v, {}):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        comps.append(sorted(comp))

  for v in sorted(set(graph) | {d for e in graph.values() for d in e}):
    if v not in index:
      visit(v)
  return comps


def test_find_cycles_sees_a_cycle():
  graph = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:1"}, "c": {"a": "c.py:3"}, "d": {"a": "d:1"}}
  assert find_cycles(graph) == [["a", "b", "c"]]
  assert find_cycles({"a": {"b": "x"}, "b": {}}) == []


def test_imports_inside_functions_are_seen(tmp_path):
  graph = import_graph()
  # stages.py imports models inside a function only: the graph must still contain that edge.
  assert "models" in graph["curation"]
  assert "data" in graph["train"]


def test_no_cycle_between_packages():
  graph = import_graph()
  cycles = find_cycles(graph)
  detail = [" <-> ".join(c) + ": " + "; ".join(f"{a}->{b} ({graph[a][b]})" for a in c
                                                for b in c if b in graph.get(a, {}))
            for c in cycles]
  assert not cycles, "packages import each other in a circle:\n" + "\n".join(detail)


@pytest.mark.parametrize("src", sorted({p for layer in LAYERS for p in layer}))
def test_imports_point_down_the_layers(src):
  level = {p: i for i, layer in enumerate(LAYERS) for p in layer}
  known = {p.name.removesuffix(".py") for p in ROOT.iterdir()
           if p.suffix == ".py" or (p / "__init__.py").exists()} - {"__init__", "__pycache__"}
  assert known <= set(level), f"parts missing from LAYERS: {sorted(known - set(level))}"
  up = {dst: where for dst, where in import_graph().get(src, {}).items()
        if level[dst] >= level[src]}
  assert not up, f"{src} (layer {level[src]}) imports parts at its level or above: {up}"
