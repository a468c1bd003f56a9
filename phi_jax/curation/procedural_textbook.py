"""Textbook sections without a language model: an offline STAND-IN for phi-1's GPT-3.5 textbooks.

phi-1's CodeTextbook adds <1B tokens of GPT-3.5-written textbook text to the filtered code. No
language model runs offline here, so `ProceduralTextbookTeacher` answers the prompts of
`phi_jax.curation.synthetic.textbook_prompts` (topic x audience x style x domain x extra x length)
with TEMPLATED text: a short explanation of the topic, addressed to the audience, laid out in the
style, with one to three worked examples. Each worked example is a `phi_jax.curation.procedural`
exercise of the TRAIN split (never a held-out 'test' family, never a 'validation'
parameterisation): its task in prose, the function in a ```python block, a line-by-line
walk-through, the example call traced, and its asserts. It is a procedural stand-in, not LLM
text: the prose comes from a few hundred hand-written sentence templates, so it is far less
varied and less informative than what the paper used; say so wherever it is used.

    teacher = ProceduralTextbookTeacher(seed=0)
    stats = synthetic.generate_textbooks(teacher, 500, seed=0, out_dir='/data/textbooks')
    # -> records.jsonl + the `synthetic_textbooks` TFDS dataset, like any teacher's textbooks

    text, exercises = write_textbook(meta, seed=7)   # one section and the exercises it used

Deterministic: the same (teacher seed, prompt) gives the same text. A prompt that is not in
`textbook_prompts`' format (or whose topic / style is unknown) still gets a code textbook: the
missing choices are drawn from a hash of the prompt.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any, Optional, Sequence

from phi_jax.curation import procedural, synthetic
from phi_jax.curation import teacher as teacher_lib

VERSION = 2  # 2: procedural VERSION 2 exercises; the binding sentence
TRAIN_FAMILIES = tuple(f for f in procedural.FAMILIES if f not in procedural.HELDOUT_FAMILIES)

# The train-split families whose worked examples fit each topic of synthetic.CODE_TOPICS (a topic
# missing here draws from every train family).
TOPIC_FAMILIES: dict[str, tuple[str, ...]] = {
    "variables and assignment": ("arith_linear", "arith_poly", "piecewise"),
    "integer and float arithmetic": ("arith_linear", "arith_poly", "digits", "gcd_lcm"),
    "string methods": ("string_transform", "count_chars", "word_stats", "palindrome"),
    "string formatting with f-strings": ("fizzbuzz", "string_transform"),
    "lists and indexing": ("kth", "running", "pairwise", "windows"),
    "list slicing": ("windows", "kth", "palindrome"),
    "list comprehensions": ("filter_map_reduce", "dedupe", "matrix"),
    "tuples and unpacking": ("gcd_lcm", "pairwise", "merge"),
    "dictionaries": ("dict_filter", "word_count", "char_frequency"),
    "sets and membership": ("dedupe", "count_chars"),
    "if / elif / else": ("piecewise", "clamp", "fizzbuzz"),
    "boolean logic": ("divisible", "palindrome", "clamp"),
    "for loops": ("range_sum", "running", "filter_map_reduce", "count_chars"),
    "while loops": ("loop_until", "digits", "gcd_lcm"),
    "nested loops": ("matrix", "pairwise"),
    "functions and return values": ("arith_linear", "clamp", "divisible"),
    "default and keyword arguments": ("clamp", "arith_linear"),
    "recursion": ("gcd_lcm", "digits"),
    "lambda functions": ("filter_map_reduce", "kth"),
    "sorting with key functions": ("kth", "merge", "word_count"),
    "linear search": ("kth", "filter_map_reduce", "count_chars"),
    "two pointers": ("merge", "palindrome"),
    "sliding windows": ("windows", "running"),
    "prefix sums": ("running", "range_sum"),
    "hash maps for counting": ("word_count", "char_frequency", "dedupe"),
    "matrices as nested lists": ("matrix",),
    "string parsing": ("word_stats", "word_count", "caesar"),
    "iterators": ("running", "pairwise"),
    "generators": ("running", "range_sum"),
    "dynamic programming": ("running", "range_sum"),
    "simple simulations": ("loop_until", "fizzbuzz"),
    "bit manipulation": ("divisible", "digits"),
    "big-O complexity": ("pairwise", "dedupe", "range_sum"),
    "testing with assert": ("clamp", "divisible", "palindrome"),
    "modular arithmetic": ("divisible", "fizzbuzz", "caesar", "gcd_lcm"),
    "prime numbers": ("gcd_lcm", "divisible"),
    "enumerate and zip": ("pairwise", "running", "windows"),
}

# One or two sentences of explanation per topic.
CONCEPTS: dict[str, str] = {
    "variables and assignment": "A variable is a name bound to a value; `x = 5` binds the name "
    "x, and a later assignment rebinds it. Reading a name gives the value it is bound to now.",
    "integer and float arithmetic": "Python integers have no size limit; `//` divides and rounds "
    "down, `%` gives the remainder, and `/` always returns a float.",
    "string methods": "Strings are immutable sequences of characters; methods such as `lower()`, "
    "`split()` and `replace()` return new strings and leave the original unchanged.",
    "string formatting with f-strings": "An f-string such as `f'{name}: {score}'` evaluates the "
    "expressions in braces and inserts their text; `str(x)` does the same for one value.",
    "lists and indexing": "A list holds values in order; `xs[0]` is the first element, `xs[-1]` "
    "the last, and `len(xs)` counts them.",
    "list slicing": "A slice `xs[i:j]` copies the elements from index i up to, but not including, "
    "j; `xs[::-1]` is the list reversed.",
    "list comprehensions": "A comprehension `[f(x) for x in xs if p(x)]` builds a new list in "
    "one expression: filter with `if`, transform with the leading expression.",
    "tuples and unpacking": "A tuple is a fixed sequence; `a, b = b, a` builds the tuple on the "
    "right and unpacks it into the names on the left in one step.",
    "dictionaries": "A dictionary maps keys to values; `d[key]` looks a value up, `d.get(key, "
    "default)` avoids a KeyError, and `d.items()` gives the pairs.",
    "sets and membership": "A set keeps each value once; `x in s` is a fast membership test, "
    "which makes sets the tool for remembering what has been seen.",
    "if / elif / else": "An `if` statement runs the first branch whose condition is true; `elif` "
    "adds more conditions and `else` catches everything left.",
    "boolean logic": "Conditions combine with `and`, `or` and `not`; `and` is true only when both "
    "sides are, `or` when at least one is.",
    "for loops": "A `for` loop runs its body once per element of a sequence, binding the loop "
    "variable to each element in turn.",
    "while loops": "A `while` loop repeats as long as its condition holds, so the body must "
    "change something that eventually makes the condition false.",
    "nested loops": "A loop inside a loop runs the inner body once for every pair of outer and "
    "inner values: n times m steps in total.",
    "functions and return values": "A function packages a computation behind a name; `return` "
    "hands its result back to the caller and ends the call.",
    "default and keyword arguments": "Parameters can have defaults, and callers can name "
    "arguments (`f(x=3)`), which makes calls easier to read.",
    "recursion": "A recursive function calls itself on a smaller input and stops at a base case; "
    "the same work can always be written as a loop.",
    "lambda functions": "A lambda is a small anonymous function, `lambda x: x * 2`, handy as the "
    "key or predicate passed to another function.",
    "sorting with key functions": "`sorted(xs)` returns a new sorted list; `key=` says what to "
    "compare and `reverse=True` flips the order.",
    "linear search": "A linear search looks at each element in turn until it finds what it "
    "needs, so it takes time proportional to the length of the input.",
    "two pointers": "Two indices that move towards each other (or side by side) let one pass "
    "compare or merge sequences without nested loops.",
    "sliding windows": "A window of k consecutive elements slides one step at a time; each "
    "window is `xs[i:i + k]` for i from 0 to len(xs) - k.",
    "prefix sums": "A running total keeps the sum of everything seen so far, so the total of any "
    "prefix is available after one pass.",
    "hash maps for counting": "A dictionary from item to count, updated with `counts[x] = "
    "counts.get(x, 0) + 1`, counts everything in one pass.",
    "matrices as nested lists": "A matrix can be a list of rows, each a list; `grid[r][c]` is "
    "the element in row r and column c.",
    "string parsing": "Parsing turns text into structure: split it into words or fields, clean "
    "each piece, then compute with the pieces.",
    "iterators": "An iterator produces values one at a time; a `for` loop asks it for the next "
    "value until it is exhausted.",
    "generators": "A generator function uses `yield` to produce a sequence lazily, one value per "
    "request, without building the whole list.",
    "dynamic programming": "Dynamic programming solves a problem from the answers to smaller "
    "ones, keeping those answers (often a running value) instead of recomputing them.",
    "simple simulations": "A simulation repeats a simple update rule and counts or records what "
    "happens at each step.",
    "bit manipulation": "Integers are stored in binary; `%` and `//` by 2 read the lowest bit and "
    "shift it away, just like `& 1` and `>> 1`.",
    "big-O complexity": "Big-O notation describes how running time grows with the input: one "
    "loop over n elements is O(n), a loop inside a loop O(n^2).",
    "testing with assert": "`assert condition` stops the program with an AssertionError when the "
    "condition is false; a few asserts on chosen inputs make a quick test.",
    "modular arithmetic": "`a % m` is the remainder of a divided by m; a number is divisible by "
    "m exactly when that remainder is 0.",
    "prime numbers": "A prime has exactly two divisors, 1 and itself; two numbers are coprime "
    "when their greatest common divisor is 1.",
    "enumerate and zip": "`enumerate(xs)` pairs each element with its index and `zip(xs, ys)` "
    "pairs elements of two sequences position by position.",
    "scope and closures": "A name assigned inside a function is local to it; an inner function "
    "that uses a name of the enclosing function keeps it alive as a closure.",
    "binary search": "Binary search halves a sorted range at every step, comparing with the "
    "middle element, so it needs only about log2(n) comparisons.",
    "stacks": "A stack adds and removes at the same end: `append` pushes and `pop` takes the most "
    "recent item back, last in, first out.",
    "queues": "A queue adds at one end and removes at the other, first in, first out; "
    "`collections.deque` does both in constant time.",
    "exceptions and error handling": "`try` runs code that may fail and `except` handles a named "
    "error; raising `ValueError` with a clear message tells the caller what went wrong.",
    "classes and objects": "A class bundles data with the functions that use it; each object "
    "made from it keeps its own attributes.",
    "inheritance": "A subclass reuses the methods of its base class and overrides only those "
    "that must behave differently.",
    "the itertools module": "`itertools` builds iterators: `accumulate` for running values, "
    "`combinations` for pairs, `groupby` for runs of equal keys.",
    "the collections module": "`collections` adds `Counter` for counting, `defaultdict` for "
    "grouping and `deque` for queues to the built-in containers.",
    "reading and writing files": "`with open(path) as f:` opens a file and closes it afterwards; "
    "iterating over `f` yields its lines one by one.",
    "greedy algorithms": "A greedy algorithm makes the best local choice at each step and never "
    "revisits it, which is right whenever local choices cannot spoil later ones.",
    "graph traversal (BFS and DFS)": "Breadth-first search explores a graph level by level with "
    "a queue; depth-first search follows one path as far as it goes with a stack.",
    "random numbers and sampling": "The `random` module draws numbers and samples; seeding it "
    "with `random.seed(0)` makes a run repeatable.",
    "dates and times": "The `datetime` module represents dates, times and differences between "
    "them, and formats them as text.",
    "regular expressions": "A regular expression describes a pattern of text; `re.findall` "
    "returns every match and `re.sub` replaces them.",
    "debugging strategies": "To debug, reproduce the failure with the smallest input, state "
    "what each line should do, and check those claims one at a time.",
    "immutability and copying": "Strings and tuples cannot change; lists and dictionaries can, "
    "so copy them (`xs[:]`, `dict(d)`) before changing data a caller still uses.",
}

_GENERIC_CONCEPT = ("{topic} is one of the ideas every Python programmer uses daily; the clearest "
                    "way to learn it is to read small, complete functions and check them.")

# Style families: each entry of synthetic.STYLES maps onto one of these layouts.
LAYOUTS = ("tutorial", "dialogue", "qa", "reference", "story")
_STYLE_LAYOUT = (("step-by-step", "tutorial"), ("Socratic", "dialogue"), ("dialogue", "dialogue"),
                 ("questions and answers", "qa"), ("reference", "reference"),
                 ("chapter section", "reference"), ("story", "story"), ("mini-project", "story"),
                 ("worked examples", "tutorial"), ("comparison", "tutorial"),
                 ("common mistakes", "qa"))

_OPENERS = (
    "This section is written for {audience}.",
    "If you are {audience}, this section is for you.",
    "We write this for {audience}, so we assume little and check everything.",
    "Imagine you are {audience} meeting this idea for the first time.",
)
_DOMAIN_LINES = (
    "Picture the numbers and words below as data from {domain}.",
    "Think of the inputs as records from {domain}.",
    "The same functions would serve anyone keeping track of {domain}.",
    "Small tasks like these come up all the time when working with {domain}.",
)
_MOTIVATION = (
    "Each example states a task, solves it with a short function, and then checks the solution.",
    "We learn it best by example: read the function, predict its output, then verify it.",
    "The examples grow from a task statement to a tested function.",
)
_CLOSINGS = (
    "In short: {concept_short}",
    "To summarise, {topic} comes down to this: {concept_short}",
    "Keep this in mind: {concept_short}",
)

_PROMPT_RE = re.compile(
    r"textbook about (?P<topic>.+?) for (?P<audience>.+?), written as (?P<style>.+?)\. "
    r"Draw the examples from (?P<domain>.+?)\. (?P<extra>[^.]+\.) .*?"
    r"Aim for about (?P<words>\d+) words", re.S)


def layout_for(style: str) -> Optional[str]:
  """The layout ('tutorial' | 'dialogue' | 'qa' | 'reference' | 'story') of a style, or None."""
  for key, layout in _STYLE_LAYOUT:
    if key.lower() in style.lower():
      return layout
  return None


def parse_prompt(prompt: str) -> dict[str, Any]:
  """The choices of a `synthetic.textbook_prompts` prompt ({} for any other text)."""
  m = _PROMPT_RE.search(prompt)
  if not m:
    return {}
  out: dict[str, Any] = m.groupdict()
  out["words"] = int(out["words"])
  # "about hash maps for counting for a musician...": a known topic wins over the shortest match.
  for topic in sorted(synthetic.CODE_TOPICS + synthetic.GENERAL_TOPICS, key=len, reverse=True):
    head = f"textbook about {topic} for "
    if head in prompt:
      rest = prompt[prompt.index(head) + len(head):]
      if ", written as " in rest:
        out["topic"], out["audience"] = topic, rest[:rest.index(", written as ")]
      break
  return out


def _hash_int(*parts: Any) -> int:
  text = "\x00".join(str(p) for p in parts)
  return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _fill_meta(meta: dict[str, Any], rng: random.Random) -> dict[str, Any]:
  """meta with every choice present (missing ones drawn from the synthetic module's axes)."""
  out = dict(meta)
  out.setdefault("topic", rng.choice(synthetic.CODE_TOPICS))
  out.setdefault("audience", rng.choice(synthetic.AUDIENCES))
  out.setdefault("style", rng.choice(synthetic.STYLES))
  out.setdefault("domain", rng.choice(synthetic.DOMAINS))
  out.setdefault("extra", rng.choice(synthetic.EXTRAS))
  out.setdefault("words", rng.choice(synthetic.LENGTHS))
  return out


def _first_sentence(exercise: procedural.Exercise) -> str:
  """The task statement of the docstring, unwrapped."""
  return exercise.summary


def _example_call(exercise: procedural.Exercise) -> tuple[str, str]:
  """(call, result) of the docstring's example (or, where the docstring shows none, the tests')."""
  return exercise.example


def _describe_line(line: str) -> Optional[str]:
  """A sentence about one line of a solution body (None for lines not worth a sentence)."""
  code = line.strip()
  if not code or code.startswith("#"):
    return None
  if code.startswith("for "):
    return f"`{code}` visits each value in turn."
  if code.startswith("while "):
    return f"`{code}` repeats the indented block until the condition fails."
  if code.startswith(("if ", "elif ")):
    return f"`{code}` checks a condition; the block below it runs only when it holds."
  if code == "else:":
    return "`else:` handles every case the conditions above did not."
  if code.startswith("return "):
    return f"`{code}` hands the answer back to the caller."
  if "+=" in code or "-=" in code or "*=" in code or "//=" in code:
    return f"`{code}` updates a running value."
  if re.match(r"^[A-Za-z_][\w, ]*=[^=]", code):
    return f"`{code}` sets up a name used below."
  return f"`{code}` does one step of the work."


def _complexity(exercise: procedural.Exercise) -> str:
  body = exercise.solution
  loops = [len(l) - len(l.lstrip()) for l in body.splitlines()
           if l.strip().startswith(("for ", "while "))]
  nested = len(set(loops)) > 1
  if nested:
    return "Two nested loops make it quadratic, O(n^2), in the size of the input."
  if loops:
    return "It makes a single pass, so its running time is linear, O(n), in the size of the input."
  return "It does a fixed amount of work, O(1), whatever the input."


def _mistake(exercise: procedural.Exercise, rng: random.Random) -> str:
  tests = [t for t in exercise.tests if "([]" in t or "('')" in t or '("")' in t]
  if tests:
    return (f"A common mistake is to forget the empty input. The check `{tests[0][7:]}` "
            "catches it: a solution that assumes at least one element fails there.")
  return rng.choice((
      "A common mistake is an off-by-one error at a boundary: test the smallest inputs, as the "
      "asserts below do, and such errors show up at once.",
      "A common mistake is to change the input while reading it; the solution only reads it.",
      "A common mistake is to return inside the loop too early; return after the loop has seen "
      "every value."))


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?![\w.])")


def _binding(ex: procedural.Exercise) -> str:
  """A sentence tying the task's words to the code: the argument names, and each number of the
  task statement with the line that uses it (what a reader must copy from the docstring)."""
  args = re.findall(r"(\w+):", ex.prompt.split("(", 1)[1].split(")")[0])
  parts = []
  if args:
    names = ", ".join(f"`{a}`" for a in args)
    parts.append(f"the code reads {names}, the name{'s' if len(args) > 1 else ''} the signature "
                 "gives")
  seen = set()
  for num in _NUMBER.findall(ex.summary):
    if num in seen:
      continue
    seen.add(num)
    for line in ex.solution.splitlines():
      if re.search(rf"(?<![\w.]){re.escape(num)}(?![\w.])", line):
        parts.append(f"the task says {num}, so `{line.strip()}` uses {num}")
        break
  return ("Reading the task: " + "; ".join(parts) + ".") if parts else ""


def _worked_example(ex: procedural.Exercise, layout: str, k: int, meta: dict[str, Any],
                    rng: random.Random) -> str:
  """One worked example in the layout's voice."""
  task = _first_sentence(ex)
  call, result = _example_call(ex)
  code = "```python\n" + ex.prompt + ex.solution + "```"
  walk = [s for s in (_describe_line(l) for l in ex.solution.splitlines()) if s]
  walk_text = " ".join([_binding(ex)] + walk[:6]).strip()
  asserts = "```python\n" + "\n".join(ex.tests[:4]) + "\n```"
  extra = meta["extra"]
  notes = []
  if "complexity" in extra:
    notes.append(_complexity(ex))
  if "mistake" in extra:
    notes.append(_mistake(ex, rng))
  if "why" in extra.lower():
    notes.append("It works because every input value is handled by exactly one path through "
                 "the code, and each path computes what the task asks for.")
  note_text = (" " + " ".join(notes)) if notes else ""
  if layout == "dialogue":
    return (f"Student: Here is task {k}. {task} How do I start?\n\n"
            f"Teacher: Write the signature first, then say what each line must do. "
            f"Here is one solution:\n\n{code}\n\n"
            f"Student: What does it do, line by line?\n\n"
            f"Teacher: {walk_text}{note_text}\n\n"
            f"Student: And `{call}`?\n\n"
            f"Teacher: It returns `{result}`. Let us check more inputs:\n\n{asserts}\n")
  if layout == "qa":
    return (f"Q{k}: {task} How can we write this?\n\n"
            f"A{k}: Like this:\n\n{code}\n\n"
            f"Q: How does it work?\n\nA: {walk_text}{note_text}\n\n"
            f"Q: What is `{call}`?\n\nA: `{result}`. These asserts pass:\n\n{asserts}\n")
  if layout == "reference":
    return (f"Example {k}. Task: {task}\n\n{code}\n\n"
            f"How it works: {walk_text}{note_text}\n\n"
            f"Example call: `{call}` returns `{result}`.\n\nTests:\n\n{asserts}\n")
  if layout == "story":
    return (f"The next job sounds simple. {task}\n\n"
            f"After a little thought, the function takes shape:\n\n{code}\n\n"
            f"Reading it again: {walk_text}{note_text}\n\n"
            f"A first try, `{call}`, gives `{result}`, as expected. "
            f"To be sure, a few more checks:\n\n{asserts}\n")
  # tutorial
  return (f"Step {k}: the task. {task}\n\n"
          f"Step {k}, the solution:\n\n{code}\n\n"
          f"What each line does: {walk_text}{note_text}\n\n"
          f"Trace: `{call}` returns `{result}`. Check it, and more cases, with asserts:\n\n"
          f"{asserts}\n")


def write_textbook(meta: dict[str, Any], seed: int) -> tuple[str, list[procedural.Exercise]]:
  """(text, the worked examples' exercises) of one section for the choices `meta` (topic,
  audience, style, domain, extra, words; missing ones drawn from `seed`). Deterministic."""
  rng = random.Random(f"phi_jax.procedural_textbook:{VERSION}:{seed}")
  meta = _fill_meta(meta, rng)
  topic = meta["topic"]
  layout = layout_for(meta["style"]) or LAYOUTS[_hash_int(meta["style"]) % len(LAYOUTS)]
  families = TOPIC_FAMILIES.get(topic, TRAIN_FAMILIES)
  n_examples = 1 if meta["words"] <= 300 else 2 if meta["words"] <= 500 else 3
  final_exercise = "exercise" in meta["extra"].lower()
  exercises = procedural.generate(n_examples + int(final_exercise), seed=rng.getrandbits(63),
                                  split="train", families=families)
  concept = CONCEPTS.get(topic, _GENERIC_CONCEPT.format(topic=topic.capitalize()))
  parts = [
      rng.choice(_OPENERS).format(audience=meta["audience"]) + " " + concept,
      rng.choice(_DOMAIN_LINES).format(domain=meta["domain"]) + " " + rng.choice(_MOTIVATION),
  ]
  if "Contrast" in meta["extra"] or "comparison" in meta["style"]:
    parts.append("Often the same task can be solved in two ways: a direct loop that spells out "
                 "every step, or a shorter expression built from Python's built-ins. The "
                 "examples use the direct form, which is the easier one to check by hand.")
  for k, ex in enumerate(exercises[:n_examples], 1):
    parts.append(_worked_example(ex, layout, k, meta, rng))
  if final_exercise:
    ex = exercises[-1]
    parts.append(f"Exercise. {_first_sentence(ex)} Write the function, then compare with the "
                 f"solution below.\n\nSolution:\n\n```python\n{ex.prompt}{ex.solution}```\n")
  short = concept.split("; ")[0].split(". ")[0].rstrip(".") + "."
  if short[0].isupper() and not short.startswith(("Python", "Big-O")):
    short = short[0].lower() + short[1:]
  parts.append(rng.choice(_CLOSINGS).format(topic=topic, concept_short=short))
  return "\n\n".join(p.strip() for p in parts) + "\n", exercises


class ProceduralTextbookTeacher:
  """A `phi_jax.curation.teacher.Teacher` that writes textbook sections procedurally (module doc).

  `complete` answers each prompt with `write_textbook(parse_prompt(prompt), seed)`, the seed made
  from (seed, prompt). max_tokens and temperature do not apply; stop strings still cut the text.
  """

  def __init__(self, seed: int = 0):
    self.seed = int(seed)
    self.name = "procedural_textbook:train"
    self.fingerprint = json.dumps({"kind": "procedural_textbook", "version": VERSION,
                                   "procedural_version": procedural.VERSION, "seed": self.seed})

  def complete(self, prompts: Sequence[str], *, max_tokens: int, temperature: float,
               stop: Optional[Sequence[str]] = None) -> list[str]:
    stop = teacher_lib.check_request(prompts, max_tokens, temperature, stop)
    out = []
    for prompt in prompts:
      text, _ = write_textbook(parse_prompt(prompt), _hash_int(self.seed, prompt))
      for s in stop or ():
        if s and s in text:
          text = text[:text.index(s)]
      out.append(text)
    return out
