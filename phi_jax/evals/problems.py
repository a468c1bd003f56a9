"""Hand-written function problems phrased the way `phi_jax.curation.procedural` never phrases one.

The procedural generator writes docstrings that open with "Return ..." (or its few VERSION 2
variants) followed by an example call; these problems say what to compute in other words (a
question, a noun phrase, an imperative), mostly without an example, with names no family draws.
They test whether a tiny coder reads a task rather than matches a template. They are never
trained on: `decontam` knows them as the benchmark 'handwritten', and the tiny-coder study checks
its mixture against them.

    for p in HANDWRITTEN:
      p.prompt, p.program(body), p.tests
"""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Problem:
  """A function to write: `prompt` (signature + docstring + newline), a reference body, asserts."""

  id: str
  prompt: str
  solution: str
  tests: tuple[str, ...]
  entry_point: str
  family: str = "handwritten"

  def program(self, completion: Optional[str] = None) -> str:
    """prompt + completion (default: the reference solution) + the asserts."""
    body = self.solution if completion is None else completion
    return self.prompt + body + "\n\n" + "\n".join(self.tests) + "\n"

  @property
  def text(self) -> str:
    return self.prompt + self.solution


def _p(name: str, signature: str, doc: str, solution: str, *tests: str) -> Problem:
  prompt = f"def {name}({signature}:\n    \"\"\"{doc}\"\"\"\n"
  return Problem(f"handwritten/{name}", prompt, solution, tuple(tests), name)


HANDWRITTEN: tuple[Problem, ...] = (
    _p("add_seven", "n: int) -> int", "Give back n increased by 7.",
       "    return n + 7\n", "assert add_seven(0) == 7", "assert add_seven(-7) == 0",
       "assert add_seven(35) == 42"),
    _p("triple", "x: int) -> int", "x multiplied by three.",
       "    return x * 3\n", "assert triple(0) == 0", "assert triple(4) == 12",
       "assert triple(-5) == -15"),
    _p("is_multiple_of_five", "n: int) -> bool", "Tell whether n can be divided evenly by 5.",
       "    return n % 5 == 0\n", "assert is_multiple_of_five(25)",
       "assert not is_multiple_of_five(7)", "assert is_multiple_of_five(0)"),
    _p("how_many_a", "text: str) -> int", "How many times does the letter 'a' occur in text?",
       "    return text.count('a')\n", "assert how_many_a('banana') == 3",
       "assert how_many_a('') == 0", "assert how_many_a('xyz') == 0"),
    _p("add_them_all", "values: list[int]) -> int", "Add up every number in values.",
       "    return sum(values)\n", "assert add_them_all([1, 2, 3]) == 6",
       "assert add_them_all([]) == 0", "assert add_them_all([-4, 4, 10]) == 10"),
    _p("biggest", "values: list[int]) -> int", "The largest number in the non-empty list values.",
       "    return max(values)\n", "assert biggest([3, 9, 2]) == 9", "assert biggest([-5]) == -5",
       "assert biggest([-3, -1, -2]) == -1"),
    _p("shout", "text: str) -> str", "text, written in capital letters.",
       "    return text.upper()\n", "assert shout('hi there') == 'HI THERE'",
       "assert shout('') == ''", "assert shout('Ok') == 'OK'"),
    _p("backwards", "text: str) -> str", "Spell text from its last character to its first.",
       "    return text[::-1]\n", "assert backwards('abc') == 'cba'", "assert backwards('') == ''",
       "assert backwards('level') == 'level'"),
    _p("keep_positive", "values: list[int]) -> list[int]",
       "Only the numbers in values that are above zero, in their original order.",
       "    return [v for v in values if v > 0]\n",
       "assert keep_positive([3, -1, 0, 5]) == [3, 5]", "assert keep_positive([]) == []",
       "assert keep_positive([-2, -9]) == []"),
    _p("square_minus_one", "n: int) -> int", "Square n, then take away one.",
       "    return n * n - 1\n", "assert square_minus_one(3) == 8",
       "assert square_minus_one(0) == -1", "assert square_minus_one(-4) == 15"),
    _p("at_most_ten", "n: int) -> int", "n, except that anything above 10 becomes 10.",
       "    return min(n, 10)\n", "assert at_most_ten(4) == 4", "assert at_most_ten(10) == 10",
       "assert at_most_ten(99) == 10"),
    _p("number_of_words", "sentence: str) -> int",
       "Count the words of sentence, where words are separated by whitespace.",
       "    return len(sentence.split())\n", "assert number_of_words('a bb ccc') == 3",
       "assert number_of_words('') == 0", "assert number_of_words('one') == 1"),
    _p("evens_only", "values: list[int]) -> list[int]",
       "Drop the odd numbers from values and keep the rest in order.",
       "    return [v for v in values if v % 2 == 0]\n",
       "assert evens_only([1, 2, 3, 4]) == [2, 4]", "assert evens_only([]) == []",
       "assert evens_only([7, 9]) == []"),
    _p("halve_down", "n: int) -> int", "Half of n, rounded down to a whole number.",
       "    return n // 2\n", "assert halve_down(9) == 4", "assert halve_down(10) == 5",
       "assert halve_down(0) == 0"),
    _p("first_letter", "word: str) -> str", "The opening character of word ('' when word is empty).",
       "    return word[:1]\n", "assert first_letter('apple') == 'a'",
       "assert first_letter('') == ''", "assert first_letter('Z') == 'Z'"),
    _p("distance_to_hundred", "n: int) -> int", "How far n is from 100, as a non-negative number.",
       "    return abs(100 - n)\n", "assert distance_to_hundred(90) == 10",
       "assert distance_to_hundred(130) == 30", "assert distance_to_hundred(100) == 0"),
)
