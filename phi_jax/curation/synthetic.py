"""Synthetic textbooks and exercises (phi-1's CodeTextbook / CodeExercises, phi-1.5's textbooks).

    teacher = teacher_lib.OpenAITeacher('gpt-3.5-turbo', cache_dir='/data/cache')
    stats = generate_textbooks(teacher, 1000, seed=0, out_dir='/data/textbooks')
    stats = generate_exercises(teacher, 5000, seed=0, out_dir='/data/exercises')
    stats = generate_exercises(ProceduralTeacher(), 5000, seed=0, out_dir='/data/proc')  # offline
    DataConfig(name=stats.dataset, data_dir=stats.data_dir, builder_kwargs=stats.builder_kwargs)

Diversity comes from the prompts, as in the papers: a textbook prompt combines a topic, an
audience, a style, a domain for the examples and one extra requirement (drawn without repeating a
combination); an exercise prompt fixes a topic, a difficulty and the function's name (phi-1
"constrained the function names"). Both are deterministic in (n, seed), and the first k prompts of
n are the prompts of k.

Validation: textbooks must be long enough, not refusals, and every ```python block in them must
parse; exercises must contain a documented function (`ast.parse`), with a body; their asserts (if
any; required with require_tests=True) must pass in the sandbox (`phi_jax.evals.execution`). Exact
duplicates are dropped. Each rejection is counted by reason and logged to OUT/rejected.jsonl.

Output, in out_dir: records.jsonl (kept examples with their prompt metadata), rejected.jsonl,
stats.json, and the TFDS dataset `synthetic_textbooks` / `synthetic_exercises` built from them
under data_dir (default OUT/tfds; see `phi_jax.data.builders.synthetic` for the features).

Resuming: the teacher's on-disk cache (cache_dir) holds every answer received, so re-running an
interrupted call with the same arguments asks the teacher only for the missing ones. A batch on
which the teacher fails for every prompt aborts the run (an outage, not bad prompts); isolated
failures are counted as 'teacher_error'.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import os
import pathlib
import random
import re
from typing import Any, Iterable, Optional, Sequence

from phi_jax.curation import procedural
from phi_jax.curation import teacher as teacher_lib
from phi_jax.data import files

CODE_TOPICS = (
    "variables and assignment", "integer and float arithmetic", "string methods",
    "string formatting with f-strings", "lists and indexing", "list slicing",
    "list comprehensions", "tuples and unpacking", "dictionaries", "sets and membership",
    "if / elif / else", "boolean logic", "for loops", "while loops", "nested loops",
    "functions and return values", "default and keyword arguments", "recursion",
    "scope and closures", "lambda functions", "sorting with key functions", "binary search",
    "linear search", "two pointers", "sliding windows", "prefix sums", "stacks", "queues",
    "hash maps for counting", "matrices as nested lists", "string parsing",
    "exceptions and error handling", "classes and objects", "inheritance", "iterators",
    "generators", "the itertools module", "the collections module", "reading and writing files",
    "dynamic programming", "greedy algorithms", "graph traversal (BFS and DFS)",
    "simple simulations", "random numbers and sampling", "dates and times", "regular expressions",
    "bit manipulation", "big-O complexity", "testing with assert", "debugging strategies",
    "modular arithmetic", "prime numbers", "immutability and copying", "enumerate and zip",
)
GENERAL_TOPICS = (
    "photosynthesis", "the water cycle", "supply and demand", "compound interest",
    "the scientific method", "plate tectonics", "the immune system", "probability",
    "the causes of the seasons", "healthy sleep", "how vaccines work", "the food chain",
    "basic first aid", "budgeting", "how bridges carry loads", "the solar system",
    "volcanoes", "simple machines", "nutrition", "recycling", "electric circuits",
    "weather fronts", "the history of writing", "maps and navigation", "friction",
    "teamwork and communication", "critical thinking", "the human heart", "sound waves",
    "chemical reactions in cooking", "migration of birds", "time zones",
)
AUDIENCES = (
    "a high-school student new to programming", "a first-year university student",
    "a data analyst who knows spreadsheets", "a self-taught web developer",
    "a physics undergraduate", "a retired engineer learning for fun", "a curious 12-year-old",
    "a biology researcher automating lab work", "a bootcamp student preparing for interviews",
    "a teacher preparing a lesson", "a hobbyist game designer", "an economics student",
    "a musician who wants to automate tasks", "a journalist working with data",
)
STYLES = (
    "a step-by-step tutorial", "a Socratic dialogue between a student and a teacher",
    "worked examples followed by practice exercises with solutions",
    "a concise reference section", "a story that introduces each idea as it is needed",
    "a comparison of a naive and an improved approach", "a list of common mistakes and fixes",
    "a chapter section with a summary at the end", "questions and answers",
    "a guided mini-project",
)
DOMAINS = (
    "cooking recipes", "a school library", "weather measurements", "a sports league",
    "a music playlist", "an online shop", "space exploration", "a city bus network",
    "a garden", "a bank account", "a video game inventory", "a hospital queue", "birdwatching",
    "a chess club", "train timetables", "a movie database", "a bakery", "farm animals",
    "a marathon", "social media posts", "a warehouse", "a school timetable", "ocean tides",
    "a bicycle rental service",
)
EXTRAS = (
    "Include one common mistake and show how to fix it.",
    "End with a short exercise and its solution.",
    "Explain why the approach works, not only how.",
    "Mention the time complexity of each solution.",
    "Use small, fully worked numeric examples.",
    "Build the final example up in three small steps.",
    "Contrast two ways of solving the same problem.",
    "Keep every code snippet under 15 lines.",
)
LENGTHS = (300, 500, 800)
EXERCISE_VERBS = (
    "count", "find", "merge", "parse", "normalize", "rank", "split", "encode", "validate",
    "summarize", "filter", "group", "schedule", "compress", "rotate", "match", "convert",
    "estimate", "simulate", "balance", "reorder", "score", "detect", "flatten", "pair",
)
EXERCISE_NOUNS = (
    "intervals", "words", "grades", "tickets", "prices", "temperatures", "matrix", "coordinates",
    "palindromes", "inventory", "timestamps", "votes", "playlist", "recipes", "passwords",
    "sensor_readings", "orders", "routes", "scores", "emails", "brackets", "sentences",
    "transactions", "seats", "ratings",
)
DIFFICULTIES = ("easy", "medium", "hard")
_REFUSALS = ("i'm sorry", "i am sorry", "as an ai", "i cannot", "i can't help")
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.S)


@dataclasses.dataclass(frozen=True)
class SyntheticPrompt:
  """A prompt for the teacher and the choices it was made from (kept with the output)."""

  id: str
  prompt: str
  meta: dict[str, Any]


def _combos(n: int, seed: int, salt: str, axes: Sequence[Sequence[Any]]) -> list[tuple]:
  """n distinct combinations of one item per axis, drawn in a seeded order."""
  space = 1
  for axis in axes:
    space *= len(axis)
  if n > space:
    raise ValueError(f"Asked for {n} distinct {salt} prompts but the axes allow only {space} "
                     "combinations: add topics / audiences / names, or ask for fewer")
  rng = random.Random(f"phi_jax.synthetic:{salt}:{seed}")
  seen, out = set(), []
  while len(out) < n:
    combo = tuple(rng.choice(axis) for axis in axes)
    if combo not in seen:
      seen.add(combo)
      out.append(combo)
  return out


def textbook_prompts(n: int, seed: int = 0, *, subject: str = "code",
                     topics: Optional[Sequence[str]] = None) -> list[SyntheticPrompt]:
  """n distinct textbook prompts: topic x audience x style x domain x extra x length.

  subject 'code' (phi-1's CodeTextbook: prose with runnable Python snippets) or 'general'
  (phi-1.5's common-sense / world-knowledge textbooks, no code required). `topics` replaces the
  built-in list (phi-1.5 seeded its data with 20K topics).
  """
  if subject not in ("code", "general"):
    raise ValueError(f"subject must be 'code' or 'general', got {subject!r}")
  topics = tuple(topics) if topics else (CODE_TOPICS if subject == "code" else GENERAL_TOPICS)
  out = []
  for i, (topic, audience, style, domain, extra, words) in enumerate(
      _combos(n, seed, f"textbook-{subject}", [topics, AUDIENCES, STYLES, DOMAINS, EXTRAS,
                                               LENGTHS])):
    if subject == "code":
      body = ("Interleave clear explanations with short Python code snippets (in ```python "
              "blocks) that run as written and use only the standard library.")
    else:
      body = "Explain with concrete everyday examples and reason through each one carefully."
    prompt = (f"Write an extract from a textbook about {topic} for {audience}, written as "
              f"{style}. Draw the examples from {domain}. {extra} {body} Aim for about {words} "
              "words. Write only the extract: no title page, preface or closing remarks.")
    out.append(SyntheticPrompt(f"textbook-{subject}-{seed}-{i:07d}", prompt, {
        "topic": topic, "audience": audience, "style": style, "domain": domain, "extra": extra,
        "words": words, "subject": subject}))
  return out


def exercise_prompts(n: int, seed: int = 0, *,
                     topics: Optional[Sequence[str]] = None) -> list[SyntheticPrompt]:
  """n distinct exercise prompts: topic x difficulty x a fixed function name (verb_noun)."""
  topics = tuple(topics) if topics else CODE_TOPICS
  out = []
  for i, (topic, difficulty, verb, noun) in enumerate(
      _combos(n, seed, "exercise", [topics, DIFFICULTIES, EXERCISE_VERBS, EXERCISE_NOUNS])):
    name = f"{verb}_{noun}"
    prompt = (f"Write one {difficulty} Python exercise that practises {topic}. It is a single "
              f"function named `{name}` with type hints and a docstring that states the task "
              "precisely and shows one example call with its result, followed by the function's "
              "implementation (standard library only; no input() and no printing). After the "
              "function, write 3 to 5 `assert` statements that test it on different inputs, "
              "including an edge case. Reply with only one ```python code block.")
    out.append(SyntheticPrompt(f"exercise-{seed}-{i:07d}", prompt, {
        "topic": topic, "difficulty": difficulty, "function_name": name}))
  return out


class Rejected(ValueError):
  """A teacher answer that fails validation; `reason` is the short name it is counted under."""

  def __init__(self, reason: str, detail: str = ""):
    super().__init__(f"{reason}: {detail}" if detail else reason)
    self.reason, self.detail = reason, detail


def code_blocks(text: str) -> list[tuple[str, str]]:
  """[(language, code)] of the fenced blocks of a markdown answer."""
  return [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]


def check_textbook(text: str, *, min_chars: int = 400) -> None:
  """Raises Rejected('empty' | 'refusal' | 'too_short' | 'code_syntax_error') or returns."""
  stripped = text.strip()
  if not stripped:
    raise Rejected("empty")
  if stripped[:80].lower().startswith(_REFUSALS):
    raise Rejected("refusal", stripped[:80])
  if len(stripped) < min_chars:
    raise Rejected("too_short", f"{len(stripped)} < {min_chars} characters")
  for lang, code in code_blocks(text):
    if lang not in ("", "python", "py", "python3") or ">>>" in code:
      continue  # Other languages and interactive sessions are not checked.
    try:
      ast.parse(code)
    except SyntaxError as e:
      raise Rejected("code_syntax_error", f"line {e.lineno}: {e.msg}") from None


def parse_exercise(text: str, function_name: Optional[str] = None) -> dict[str, Any]:
  """A teacher's exercise -> {prompt, target, tests, entry_point, name_matches}.

  The code is the first ```python block (or the whole answer if it has none). The exercise is the
  top-level function named `function_name` if there is one, else the first documented one.
  prompt = the code up to the end of its docstring (imports and helpers before it included);
  target = the rest of its body plus any top-level def / class / import after it; tests = the
  top-level asserts. Raises Rejected('empty' | 'no_code' | 'syntax_error' |
  'no_documented_function' | 'empty_solution').
  """
  blocks = [code for lang, code in code_blocks(text) if lang in ("", "python", "py", "python3")]
  code = (blocks[0] if blocks else text).replace("\r\n", "\n").strip("\n") + "\n"
  if not code.strip():
    raise Rejected("empty")
  try:
    tree = ast.parse(code)
  except SyntaxError as e:
    if not blocks:  # Prose without a code block.
      raise Rejected("no_code", code[:80]) from None
    raise Rejected("syntax_error", f"line {e.lineno}: {e.msg}") from None
  documented = [node for node in tree.body if isinstance(node, ast.FunctionDef)
                and ast.get_docstring(node) is not None]
  if not documented:
    raise Rejected("no_documented_function")
  func = next((f for f in documented if f.name == function_name), documented[0])
  body = func.body[1:]
  if not body or all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(
      s.value, ast.Constant) and s.value.value is Ellipsis) for s in body):
    raise Rejected("empty_solution")
  lines = code.splitlines(keepends=True)
  doc_end = func.body[0].end_lineno
  if body[0].lineno <= doc_end:
    raise Rejected("empty_solution", "the body shares a line with the docstring")
  prompt = "".join(lines[:doc_end])
  target = "".join(lines[doc_end:func.end_lineno])
  tests, after = [], []
  for node in tree.body:
    if node.lineno <= func.end_lineno:
      continue
    segment = "".join(lines[node.lineno - 1:node.end_lineno])
    if isinstance(node, ast.Assert):
      tests.append(segment.rstrip("\n"))
    elif isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
      after.append(segment)
  if after:
    target = target + "\n\n" + "\n\n".join(s.rstrip("\n") + "\n" for s in after)
  return {"prompt": prompt, "target": target, "tests": tests, "entry_point": func.name,
          "name_matches": func.name == function_name}


@dataclasses.dataclass
class GenerationStats:
  """What a generation call did; `dataset`, `data_dir` and `builder_kwargs` make a DataConfig."""

  kind: str
  requested: int
  kept: int = 0
  rejected: dict[str, int] = dataclasses.field(default_factory=dict)
  teacher: str = ""
  out_dir: str = ""
  dataset: str = ""
  data_dir: str = ""
  builder_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

  def reject(self, reason: str) -> None:
    self.rejected[reason] = self.rejected.get(reason, 0) + 1

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)



def _write_jsonl(path: pathlib.Path, rows: Iterable[dict[str, Any]]) -> None:
  files.write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _ask(teacher: teacher_lib.Teacher, prompts: Sequence[SyntheticPrompt], *, max_tokens: int,
         temperature: float, batch_size: int) -> Iterable[tuple[SyntheticPrompt, Optional[str],
                                                                 str]]:
  """Yields (prompt, answer or None, error) in order, batch by batch (see the module doc)."""
  for start in range(0, len(prompts), batch_size):
    batch = list(prompts[start:start + batch_size])
    texts = [p.prompt for p in batch]
    try:
      answers: list[Optional[str]] = list(teacher.complete(texts, max_tokens=max_tokens,
                                                           temperature=temperature))
      errors = [""] * len(batch)
    except teacher_lib.TeacherError as e:
      failures = e.failures or {i: str(e) for i in range(len(batch))}
      if len(failures) == len(batch):
        raise teacher_lib.TeacherError(
            f"The teacher failed on every prompt of batch {start // batch_size} ({e}); fix the "
            "endpoint and re-run: answers already received are in the teacher's cache",
            failures) from e
      answers, errors = [], []
      for i, p in enumerate(batch):
        if i in failures:
          answers.append(None)
          errors.append(failures[i])
        elif e.results is not None and e.results[i] is not None:
          answers.append(e.results[i])
          errors.append("")
        else:  # A teacher that does not return partial results: ask again (cached if it caches).
          answers.append(teacher.complete([p.prompt], max_tokens=max_tokens,
                                          temperature=temperature)[0])
          errors.append("")
    logging.info("synthetic: %d / %d teacher answers", start + len(batch), len(prompts))
    yield from zip(batch, answers, errors)


def _finish(stats: GenerationStats, out_dir: pathlib.Path, kept: list[dict[str, Any]],
            rejected: list[dict[str, Any]], dataset: str, data_dir: Optional[str | os.PathLike],
            build: bool) -> GenerationStats:
  out_dir.mkdir(parents=True, exist_ok=True)
  _write_jsonl(out_dir / "records.jsonl", kept)
  _write_jsonl(out_dir / "rejected.jsonl", rejected)
  stats.kept, stats.out_dir, stats.dataset = len(kept), str(out_dir), dataset
  stats.data_dir = os.fspath(data_dir) if data_dir else str(out_dir / "tfds")
  stats.builder_kwargs = {"source_dir": str(out_dir)}
  files.write_text(out_dir / "stats.json", json.dumps(stats.to_dict(), indent=2) + "\n")
  logging.info("synthetic %s: kept %d of %d, rejected %s", stats.kind, stats.kept,
               stats.requested, stats.rejected)
  if build:
    if len(kept) < 2:
      raise ValueError(f"Only {len(kept)} {stats.kind}(s) kept of {stats.requested} (rejected: "
                       f"{stats.rejected}); need >= 2 to build train and validation splits. See "
                       f"{out_dir / 'rejected.jsonl'}")
    from phi_jax.data import builders  # pylint: disable=g-import-not-at-top
    builders.build(dataset, stats.data_dir, **stats.builder_kwargs)
  return stats


def _reject(stats: GenerationStats, rejected: list[dict[str, Any]], item_id: str, r: Rejected,
            answer: Optional[str]) -> None:
  """Counts a rejection and keeps it (with the first 4,000 characters of the answer)."""
  stats.reject(r.reason)
  rejected.append({"id": item_id, "reason": r.reason, "detail": r.detail,
                   "answer": (answer or "")[:4000]})


def generate_textbooks(teacher: teacher_lib.Teacher, n: int, seed: int,
                       out_dir: str | os.PathLike, *, subject: str = "code",
                       topics: Optional[Sequence[str]] = None, max_tokens: int = 1500,
                       temperature: float = 0.8, batch_size: int = 32, min_chars: int = 400,
                       data_dir: Optional[str | os.PathLike] = None,
                       build: bool = True) -> GenerationStats:
  """Asks `teacher` for n textbook passages (`textbook_prompts(n, seed, subject, topics)`),
  keeps the valid ones (`check_textbook`, no exact duplicates), writes out_dir and builds
  `synthetic_textbooks` (see the module doc). Returns the counts."""
  out_dir = pathlib.Path(out_dir)
  stats = GenerationStats("textbook", n, teacher=teacher.name)
  kept, rejected, seen = [], [], set()
  prompts = textbook_prompts(n, seed, subject=subject, topics=topics)
  for p, answer, error in _ask(teacher, prompts, max_tokens=max_tokens, temperature=temperature,
                               batch_size=batch_size):
    try:
      if answer is None:
        raise Rejected("teacher_error", error)
      check_textbook(answer, min_chars=min_chars)
      text = answer.strip() + "\n"
      if text in seen:
        raise Rejected("duplicate")
    except Rejected as r:
      _reject(stats, rejected, p.id, r, answer)
      continue
    seen.add(text)
    kept.append({"id": p.id, "text": text, **p.meta, "teacher": teacher.name,
                 "teacher_prompt": p.prompt})
  return _finish(stats, out_dir, kept, rejected, "synthetic_textbooks", data_dir, build)


def generate_exercises(source: teacher_lib.Teacher, n: int, seed: int,
                       out_dir: str | os.PathLike, *, topics: Optional[Sequence[str]] = None,
                       max_tokens: int = 700, temperature: float = 0.8, batch_size: int = 32,
                       require_tests: bool = False, workers: Optional[int] = None,
                       timeout_s: float = 10.0, cpu_s: Optional[float] = None,
                       data_dir: Optional[str | os.PathLike] = None,
                       build: bool = True) -> GenerationStats:
  """n exercises from a teacher (prompted with `exercise_prompts(n, seed, topics)`, answers
  parsed with `parse_exercise`, asserts run in the sandbox) or, for a `ProceduralTeacher`, drawn
  straight from `phi_jax.curation.procedural` (its split; family kept; re-verified in the sandbox).
  Writes out_dir and builds `synthetic_exercises` (see the module doc). Returns the counts.
  timeout_s / cpu_s: each program's wall-clock / CPU-time limit (see `procedural.run_programs`).
  """
  out_dir = pathlib.Path(out_dir)
  stats = GenerationStats("exercise", n, teacher=source.name)
  candidates: list[tuple[dict[str, Any], str]] = []  # (record, answer)
  rejected: list[dict[str, Any]] = []
  if isinstance(source, teacher_lib.ProceduralTeacher):
    for ex in source.exercises(n, seed):
      candidates.append(({"id": ex.id, "text": ex.text, "prompt": ex.prompt,
                          "target": ex.solution, "tests": list(ex.tests),
                          "entry_point": ex.entry_point, "family": ex.family,
                          "topic": ex.family, "teacher": source.name, "teacher_prompt": "",
                          "split_key": ex.key}, ""))
  else:
    prompts = exercise_prompts(n, seed, topics=topics)
    for p, answer, error in _ask(source, prompts, max_tokens=max_tokens,
                                 temperature=temperature, batch_size=batch_size):
      try:
        if answer is None:
          raise Rejected("teacher_error", error)
        parsed = parse_exercise(answer, p.meta["function_name"])
        if require_tests and not parsed["tests"]:
          raise Rejected("no_tests")
      except Rejected as r:
        _reject(stats, rejected, p.id, r, answer)
        continue
      candidates.append(({"id": p.id, "text": parsed["prompt"] + parsed["target"],
                          "prompt": parsed["prompt"], "target": parsed["target"],
                          "tests": parsed["tests"], "entry_point": parsed["entry_point"],
                          "family": "", **p.meta, "name_matches": parsed["name_matches"],
                          "teacher": source.name, "teacher_prompt": p.prompt}, answer))
  tested = [i for i, (r, _) in enumerate(candidates) if r["tests"]]
  programs = [candidates[i][0]["text"] + "\n\n" + "\n".join(candidates[i][0]["tests"]) + "\n"
              for i in tested]
  runs = (procedural.run_programs(programs, workers=workers, timeout_s=timeout_s, cpu_s=cpu_s)
          if programs else [])
  results = dict(zip(tested, runs))
  kept, seen = [], set()
  for i, (record, answer) in enumerate(candidates):
    reason, detail = "", ""
    if i in results and not results[i].passed:
      reason = {"failed": "tests_failed", "timeout": "tests_timeout"}.get(results[i].status,
                                                                          "sandbox_error")
      detail = results[i].stderr[-1000:] or results[i].reason
    elif record["text"] in seen:
      reason = "duplicate"
    if reason:
      _reject(stats, rejected, record["id"], Rejected(reason, detail), answer or record["text"])
      continue
    seen.add(record["text"])
    kept.append(record)
  return _finish(stats, out_dir, kept, rejected, "synthetic_exercises", data_dir, build)
