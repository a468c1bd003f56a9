"""Dict task families.

Each family is a function `rng -> Task` (see `grammar.Task`)."""

from __future__ import annotations


from phi_jax.curation.procedural.grammar import Task, WORDS, draw_names

def dict_filter(rng):
  k = rng.randint(1, 40)
  c = rng.choice("abcdefgmpst")
  mode = rng.choice(["above", "sum_prefix", "argmax", "invert", "sorted_keys"])
  body, ref, ret, text = {
      "above": (f"    return {{key: v for key, v in $a.items() if v > {k}}}\n",
                lambda d: {key: v for key, v in d.items() if v > k}, "dict[str, int]",
                f"a new dict with only the items of $a whose value is greater than {k}"),
      "sum_prefix": (f"    total = 0\n    for key, v in $a.items():\n"
                     f"        if key.startswith('{c}'):\n"
                     "            total += v\n    return total\n",
                     lambda d: sum(v for key, v in d.items() if key.startswith(c)), "int",
                     f"the sum of the values of $a whose key starts with '{c}'"),
      "argmax": ("    best = None\n    for key, v in $a.items():\n"
                 "        if best is None or v > $a[best]:\n            best = key\n"
                 "    return best\n",
                 lambda d: max(d, key=d.get) if d else None, "str | None",
                 "the key of $a with the largest value (the first such key in order; None if $a "
                 "is empty)"),
      "invert": ("    return {v: key for key, v in $a.items()}\n",
                 lambda d: {v: key for key, v in d.items()}, "dict[int, str]",
                 "$a inverted: a dict mapping each value to its key (values are distinct)"),
      "sorted_keys": ("    return sorted($a, key=lambda key: ($a[key], key))\n",
                      lambda d: sorted(d, key=lambda key: (d[key], key)), "list[str]",
                      "the keys of $a sorted by their value, ties broken alphabetically"),
  }[mode]
  def draw():
    keys = rng.sample(WORDS, rng.randint(1, 5))
    values = rng.sample(range(0, 30), len(keys))
    return dict(zip(keys, values))
  return Task(draw_names(rng,
                         ["filter", "select", "summarise", "query"], [mode, "table", "entries"]),
               [("dict", "dict[str, int]")], ret, f"Return {text}.", body, ref,
               [({},)] + [(draw(),) for _ in range(3)] + [({f"{c}x": 3, "zz": 5, f"{c}y": 4},)],
               (mode, k if mode == "above" else 0, c if mode == "sum_prefix" else ""))


def group_by(rng):
  mode = rng.choice(["first_letter", "length", "count_by_length"])
  body, ref, ret, text = {
      "first_letter": ("    groups = {}\n    for w in $a:\n"
                       "        groups.setdefault(w[0], []).append(w)\n"
                       "    return groups\n", lambda ws: _group(ws, lambda w: w[0]),
                       "dict[str, list[str]]",
                       "a dict mapping each first letter to the words of $a that start with it, "
                       "in order"),
      "length": ("    groups = {}\n    for w in $a:\n"
                 "        groups.setdefault(len(w), []).append(w)\n"
                 "    return groups\n", lambda ws: _group(ws, len), "dict[int, list[str]]",
                 "a dict mapping each word length to the words of $a of that length, in order"),
      "count_by_length": ("    counts = {}\n    for w in $a:\n"
                          "        counts[len(w)] = counts.get(len(w), 0) + 1\n    return counts\n",
                          lambda ws: {n: len(g) for n, g in _group(ws, len).items()},
                          "dict[int, int]", "a dict mapping each word length to how many words "
                          "of $a have it"),
  }[mode]
  return Task(draw_names(rng, ["group", "bucket", "index"], ["words", "by_" + mode.split("_")[-1],
                                                          "names"]),
               [("words", "list[str]")], ret, f"Return {text}.", body, ref,
               [([],)] + [(rng.sample(WORDS, rng.randint(2, 6)),) for _ in range(3)], (mode,))


def _group(items, key):
  out = {}
  for item in items:
    out.setdefault(key(item), []).append(item)
  return out


def word_count(rng):
  k = rng.randint(1, 4)
  mode = rng.choice(["counts", "most_common", "more_than"])
  prelude = ("    counts = {}\n    for w in $a.lower().split():\n"
             "        counts[w] = counts.get(w, 0) + 1\n")
  body, ref, ret, text = {
      "counts": (prelude + "    return counts\n", lambda s: dict(_counts(s)), "dict[str, int]",
                 "a dict mapping each lower-cased word of $a to its number of occurrences"),
      "most_common": (prelude + "    best = ''\n    for w, n in counts.items():\n"
                      "        if best == '' or n > counts[best]:\n            best = w\n"
                      "    return best\n",
                      lambda s: max(_counts(s), key=_counts(s).get) if s.split() else "", "str",
                      "the most frequent lower-cased word of $a (the first to appear on a tie; '' "
                      "if there are no words)"),
      "more_than": (prelude + f"    return [w for w, n in counts.items() if n > {k}]\n",
                    lambda s: [w for w, n in _counts(s).items() if n > k], "list[str]",
                    f"the lower-cased words that occur more than {k} time(s) in $a, in order of "
                    "first appearance"),
  }[mode]
  def draw():
    pool = rng.sample(WORDS, 3)
    return " ".join(rng.choice(pool).capitalize() if rng.random() < 0.2 else rng.choice(pool)
                    for _ in range(rng.randint(2, 8)))
  return Task(draw_names(rng, ["count", "tally", "find"], ["words", mode, "frequent_words"]),
               [("text", "str")], ret, f"Return {text}.", body, ref,
               [("",)] + [(draw(),) for _ in range(4)], (mode, k if mode == "more_than" else 0))


def _counts(s):
  out = {}
  for w in s.lower().split():
    out[w] = out.get(w, 0) + 1
  return out
