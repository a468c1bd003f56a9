"""List task families, including the filter -> map -> reduce composition.

Each family is a function `rng -> Task` (see `grammar.Task`)."""

from __future__ import annotations

import math

from phi_jax.curation.procedural.grammar import Task, draw_ints, list_inputs, draw_names

_PREDICATES = [
    ("x > {k}", lambda k, m: lambda x: x > k, "greater than {k}"),
    ("x < {k}", lambda k, m: lambda x: x < k, "less than {k}"),
    ("x % {m} == 0", lambda k, m: lambda x: x % m == 0, "divisible by {m}"),
    ("x % 2 == 1", lambda k, m: lambda x: x % 2 == 1, "odd"),
    ("x != {k}", lambda k, m: lambda x: x != k, "not equal to {k}"),
    ("{lo} <= x <= {k}", lambda k, m: lambda x: k - 6 <= x <= k, "between {lo} and {k} inclusive"),
]
_TRANSFORMS = [
    ("x", lambda a: lambda x: x, "{noun}"),
    ("x * {a}", lambda a: lambda x: x * a, "{noun} multiplied by {a}"),
    ("x + {a}", lambda a: lambda x: x + a, "{noun} plus {a}"),
    ("x * x", lambda a: lambda x: x * x, "squares of the {noun}"),
    ("abs(x)", lambda a: lambda x: abs(x), "absolute values of the {noun}"),
]


def filter_map_reduce(rng):
  k, m, a = rng.randint(-3, 12), rng.randint(2, 5), rng.randint(2, 6)
  pi, ti = rng.randrange(len(_PREDICATES)), rng.randrange(len(_TRANSFORMS))
  agg = rng.choice(["sum", "count", "max", "list", "product"])
  if agg == "count":
    ti = 0
  p_code, p_make, p_text = _PREDICATES[pi]
  t_code, t_make, t_text = _TRANSFORMS[ti]
  fmt = {"k": k, "m": m, "a": a, "lo": k - 6}
  p_code, p_text, t_code = p_code.format(**fmt), p_text.format(**fmt), t_code.format(**fmt)
  pred, fn = p_make(k, m), t_make(a)
  noun = t_text.format(noun="elements", a=a)
  sel = f"the elements of $a that are {p_text}"
  text = {"sum": f"Return the sum of the {noun} over {sel}.",
          "count": f"Return how many elements of $a are {p_text}.",
          "max": f"Return the largest of the {noun} over {sel}, or None if there are none.",
          "list": f"Return a list of the {noun} over {sel}, in order.",
          "product": f"Return the product of the {noun} over {sel} (1 if there are none)."}[agg]
  text = text.replace("the elements over", "").replace("of the elements over ", "of ")
  if rng.random() < 0.5 and agg != "product":
    expr = {"sum": f"sum({t_code} for x in $a if {p_code})",
            "count": f"sum(1 for x in $a if {p_code})",
            "max": f"max(({t_code} for x in $a if {p_code}), default=None)",
            "list": f"[{t_code} for x in $a if {p_code}]"}[agg]
    body = f"    return {expr}\n"
  else:
    init, update = {"sum": ("0", f"result += {t_code}"), "count": ("0", "result += 1"),
                    "max": ("None", f"y = {t_code}\n            if result is None or y > result:\n"
                            "                result = y"),
                    "list": ("[]", f"result.append({t_code})"),
                    "product": ("1", f"result *= {t_code}")}[agg]
    body = (f"    result = {init}\n    for x in $a:\n        if {p_code}:\n"
            f"            {update}\n    return result\n")
  def ref(xs):
    ys = [fn(x) for x in xs if pred(x)]
    return {"sum": sum(ys), "count": len(ys), "max": max(ys, default=None), "list": ys,
            "product": math.prod(ys)}[agg]
  ret = {"sum": "int", "count": "int", "max": "int | None", "list": "list[int]",
         "product": "int"}[agg]
  return Task(draw_names(rng, [agg, "select", "filter", "process", "collect"],
                      ["values", "matches", "selected", "numbers", "items"]),
               [("ints", "list[int]")], ret, text, body, ref, list_inputs(rng, lo=-8, hi=15),
               (pi, ti, agg, k if "{k}" in _PREDICATES[pi][0] else 0,
                m if "{m}" in _PREDICATES[pi][0] else 0, a if "{a}" in _TRANSFORMS[ti][0] else 0))


def running(rng):
  mode = rng.choice(["sum", "max", "min", "product"])
  op = {"sum": "acc + x", "max": "max(acc, x)", "min": "min(acc, x)", "product": "acc * x"}[mode]
  body = (f"    out = []\n    for i, x in enumerate($a):\n        acc = x if i == 0 else {op}\n"
          "        out.append(acc)\n    return out\n")
  def ref(xs):
    out = []
    for i, x in enumerate(xs):
      out.append(x if i == 0 else {"sum": out[-1] + x, "max": max(out[-1], x),
                                   "min": min(out[-1], x), "product": out[-1] * x}[mode])
    return out
  word = {"sum": "sum", "max": "maximum", "min": "minimum", "product": "product"}[mode]
  return Task(draw_names(rng, ["running", "prefix", "cumulative"], [mode, "totals", "values"]),
               [("ints", "list[int]")], "list[int]",
               f"Return the running {word} of $a: element i is the {word} of $a[0..i].", body,
               ref, list_inputs(rng, lo=-5, hi=9), (mode,))


def pairwise(rng):
  mode = rng.choice(["diffs", "increases", "decreases", "max_jump", "increasing"])
  body, ref, ret, text = {
      "diffs": ("    return [$a[i + 1] - $a[i] for i in range(len($a) - 1)]\n",
                lambda xs: [b - a for a, b in zip(xs, xs[1:])], "list[int]",
                "the differences between consecutive elements of $a"),
      "increases": ("    count = 0\n    for i in range(1, len($a)):\n"
                    "        if $a[i] > $a[i - 1]:\n"
                    "            count += 1\n    return count\n",
                    lambda xs: sum(b > a for a, b in zip(xs, xs[1:])), "int",
                    "how many elements of $a are larger than the element before them"),
      "decreases": ("    return sum(1 for i in range(1, len($a)) if $a[i] < $a[i - 1])\n",
                    lambda xs: sum(b < a for a, b in zip(xs, xs[1:])), "int",
                    "how many elements of $a are smaller than the element before them"),
      "max_jump": ("    best = 0\n    for i in range(1, len($a)):\n"
                   "        best = max(best, abs($a[i] - $a[i - 1]))\n    return best\n",
                   lambda xs: max((abs(b - a) for a, b in zip(xs, xs[1:])), default=0), "int",
                   "the largest absolute difference between consecutive elements of $a (0 if "
                   "there are fewer than two)"),
      "increasing": ("    return all($a[i] < $a[i + 1] for i in range(len($a) - 1))\n",
                     lambda xs: all(a < b for a, b in zip(xs, xs[1:])), "bool",
                     "True if $a is strictly increasing"),
  }[mode]
  inputs = list_inputs(rng) + [([1, 3, 7, 12],)]
  return Task(draw_names(rng, ["consecutive", "pairwise", "step"], [mode, "changes", "gaps"]),
               [("ints", "list[int]")], ret, f"Return {text}.", body, ref, inputs, (mode,))


def windows(rng):
  k = rng.randint(2, 6)
  mode = rng.choice(["window_sums", "max_window", "chunks"])
  body, ref, ret, text = {
      "window_sums": (f"    return [sum($a[i:i + {k}]) for i in range(len($a) - {k} + 1)]\n",
                      lambda xs: [sum(xs[i:i + k]) for i in range(len(xs) - k + 1)], "list[int]",
                      f"the sums of every window of {k} consecutive elements of $a, in order"),
      "max_window": (f"    best = None\n    for i in range(len($a) - {k} + 1):\n"
                     f"        total = sum($a[i:i + {k}])\n"
                     "        if best is None or total > best:\n            best = total\n"
                     "    return best\n",
                     lambda xs: max((sum(xs[i:i + k]) for i in range(len(xs) - k + 1)),
                                    default=None), "int | None",
                     f"the largest sum of {k} consecutive elements of $a (None if $a is shorter "
                     f"than {k})"),
      "chunks": (f"    return [$a[i:i + {k}] for i in range(0, len($a), {k})]\n",
                 lambda xs: [xs[i:i + k] for i in range(0, len(xs), k)], "list[list[int]]",
                 f"$a split into consecutive chunks of {k} elements (the last may be shorter)"),
  }[mode]
  return Task(draw_names(rng, ["window", "sliding", "chunk", "group"], [mode, "sums", "blocks"]),
               [("ints", "list[int]")], ret, f"Return {text}.", body, ref,
               list_inputs(rng, n=(1, 9)), (mode, k))


def kth(rng):
  k = rng.randint(1, 5)
  mode = rng.choice(["kth_largest", "kth_smallest", "argmax", "argmin"])
  if mode.startswith("kth"):
    rev = mode == "kth_largest"
    body = (f"    distinct = sorted(set($a){', reverse=True' if rev else ''})\n"
            f"    if len(distinct) < {k}:\n        return None\n    return distinct[{k - 1}]\n")
    ref = lambda xs: (sorted(set(xs), reverse=rev)[k - 1] if len(set(xs)) >= k else None)
    rank = ["", "", "second ", "third ", "fourth ", "fifth "][k] + ("largest" if rev else "smallest")
    text = f"the {rank} distinct value in $a, or None if it has fewer distinct values"
    ret = "int | None"
  else:
    cmp = ">" if mode == "argmax" else "<"
    body = (f"    best = 0\n    for i in range(1, len($a)):\n        if $a[i] {cmp} $a[best]:\n"
            "            best = i\n    return best if $a else -1\n")
    ref = lambda xs: (xs.index(max(xs) if mode == "argmax" else min(xs)) if xs else -1)
    text = (f"the index of the first {'largest' if mode == 'argmax' else 'smallest'} element of "
            "$a, or -1 if $a is empty")
    ret, k = "int", 0
  return Task(draw_names(rng, ["find", "get", "pick"], [mode, "rank", "position", "element"]),
               [("ints", "list[int]")], ret, f"Return {text}.", body, ref,
               list_inputs(rng, lo=0, hi=9), (mode, k))


def rotate(rng):
  k = rng.randint(1, 4)
  left = rng.random() < 0.5
  body = (f"    if not $a:\n        return []\n    k = {k} % len($a)\n"
          + ("    return $a[k:] + $a[:k]\n" if left else "    return $a[-k:] + $a[:-k]\n"))
  ref = lambda xs: (xs[k % len(xs):] + xs[:k % len(xs)] if left
                    else xs[-(k % len(xs)):] + xs[:-(k % len(xs))]) if xs else []
  return Task(draw_names(rng, ["rotate", "shift", "cycle"], ["left" if left else "right", "list",
                                                          "items"]),
               [("ints", "list[int]")], "list[int]",
               f"Return a new list with the elements of $a rotated {k} place(s) to the "
               f"{'left' if left else 'right'} (an empty list stays empty).", body, ref,
               list_inputs(rng, n=(1, 7)), (left, k))


def merge(rng):
  mode = rng.choice(["interleave", "merge_sorted", "add", "max", "dot"])
  body, ref, ret, text = {
      "interleave": ("    out = []\n    for i in range(max(len($a), len($b))):\n"
                     "        if i < len($a):\n            out.append($a[i])\n"
                     "        if i < len($b):\n            out.append($b[i])\n    return out\n",
                     lambda xs, ys: [v for i in range(max(len(xs), len(ys)))
                                     for v in (xs[i:i + 1] + ys[i:i + 1])], "list[int]",
                     "the elements of $a and $b alternately, starting with $a; the rest of the "
                     "longer list comes at the end"),
      "merge_sorted": ("    out, i, j = [], 0, 0\n    while i < len($a) and j < len($b):\n"
                       "        if $a[i] <= $b[j]:\n            out.append($a[i])\n"
                       "            i += 1\n"
                       "        else:\n            out.append($b[j])\n            j += 1\n"
                       "    return out + $a[i:] + $b[j:]\n",
                       lambda xs, ys: sorted(xs + ys), "list[int]",
                       "one sorted list with all elements of the sorted lists $a and $b"),
      "add": ("    return [x + y for x, y in zip($a, $b)]\n",
              lambda xs, ys: [x + y for x, y in zip(xs, ys)], "list[int]",
              "the element-wise sums of $a and $b (as long as the shorter list)"),
      "max": ("    return [max(x, y) for x, y in zip($a, $b)]\n",
              lambda xs, ys: [max(x, y) for x, y in zip(xs, ys)], "list[int]",
              "the element-wise maxima of $a and $b (as long as the shorter list)"),
      "dot": ("    total = 0\n    for x, y in zip($a, $b):\n        total += x * y\n"
              "    return total\n",
              lambda xs, ys: sum(x * y for x, y in zip(xs, ys)), "int",
              "the dot product of $a and $b (pairs beyond the shorter list are ignored)"),
  }[mode]
  draw = (lambda: sorted(draw_ints(rng))) if mode == "merge_sorted" else (lambda: draw_ints(rng))
  return Task(draw_names(rng, ["merge", "combine", "join", "zip"], [mode, "lists", "pairs"]),
               [("ints", "list[int]"), ("ints", "list[int]")], ret, f"Return {text}.", body,
               ref, [([], draw())] + [(draw(), draw()) for _ in range(3)], (mode,))


def dedupe(rng):
  mode = rng.choice(["unique", "once", "repeated", "distinct"])
  body, ref, ret, text = {
      "unique": ("    seen = set()\n    out = []\n    for x in $a:\n        if x not in seen:\n"
                 "            seen.add(x)\n            out.append(x)\n    return out\n",
                 lambda xs: list(dict.fromkeys(xs)), "list[int]",
                 "$a without duplicates, keeping the first occurrence of each value in order"),
      "once": ("    return [x for x in $a if $a.count(x) == 1]\n",
               lambda xs: [x for x in xs if xs.count(x) == 1], "list[int]",
               "the elements of $a that occur exactly once, in order"),
      "repeated": ("    out = []\n    for x in $a:\n        if $a.count(x) > 1 and x not in out:\n"
                   "            out.append(x)\n    return out\n",
                   lambda xs: [x for x in dict.fromkeys(xs) if xs.count(x) > 1], "list[int]",
                   "the values that occur more than once in $a, each once, in order of first "
                   "appearance"),
      "distinct": ("    return len(set($a))\n", lambda xs: len(set(xs)), "int",
                   "the number of distinct values in $a"),
  }[mode]
  verbs, objects = {"unique": (["remove", "drop", "strip"], ["duplicates", "repeats"]),
                    "once": (["find", "get", "keep"], ["singletons", "unique_values", "loners"]),
                    "repeated": (["find", "get", "list"], ["repeated", "duplicates", "repeats"]),
                    "distinct": (["count", "num"], ["distinct", "unique_values"])}[mode]
  return Task(draw_names(rng, verbs, objects),
               [("ints", "list[int]")], ret, f"Return {text}.", body, ref,
               list_inputs(rng, lo=0, hi=6, n=(3, 9)), (mode,))


def pair_count(rng):
  k = rng.randint(1, 5)
  mode = rng.choice(["sum_to", "diff_k", "even_product"])
  cond, ref_cond, text = {
      "sum_to": (f"$a[i] + $a[j] == {3 * k}", lambda x, y: x + y == 3 * k,
                 f"$a[i] + $a[j] == {3 * k}"),
      "diff_k": (f"abs($a[i] - $a[j]) == {k}", lambda x, y: abs(x - y) == k,
                 f"the two values differ by exactly {k}"),
      "even_product": ("$a[i] * $a[j] % 2 == 0", lambda x, y: x * y % 2 == 0,
                       "$a[i] * $a[j] is even"),
  }[mode]
  body = (f"    count = 0\n    for i in range(len($a)):\n        for j in range(i + 1, len($a)):\n"
          f"            if {cond}:\n                count += 1\n    return count\n")
  return Task(draw_names(rng, ["count", "num", "find"], ["pairs", "matching_pairs", "couples"]),
               [("ints", "list[int]")], "int",
               f"Return the number of index pairs i < j such that {text}.", body,
               lambda xs: sum(ref_cond(xs[i], xs[j]) for i in range(len(xs))
                              for j in range(i + 1, len(xs))),
               list_inputs(rng, lo=0, hi=3 * k, n=(2, 8)),
               (mode, k if mode != "even_product" else 0))
