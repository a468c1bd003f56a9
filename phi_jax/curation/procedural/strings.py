"""String task families.

Each family is a function `rng -> Task` (see `grammar.Task`)."""

from __future__ import annotations

import string

from phi_jax.curation.procedural.grammar import Task, WORDS, draw_names, draw_text

def count_chars(rng):
  c = rng.choice("aeiourstn")
  mode = rng.choice(["vowels", "consonants", "upper", "spaces", "char", "set"])
  chars = "".join(sorted(rng.sample(string.ascii_lowercase, 3)))
  cond, ref, text = {
      "vowels": ("ch.lower() in 'aeiou'", lambda ch: ch.lower() in "aeiou",
                 "vowels (a, e, i, o, u, either case)"),
      "consonants": ("ch.isalpha() and ch.lower() not in 'aeiou'",
                     lambda ch: ch.isalpha() and ch.lower() not in "aeiou", "consonant letters"),
      "upper": ("ch.isupper()", str.isupper, "uppercase letters"),
      "spaces": ("ch == ' '", lambda ch: ch == " ", "spaces"),
      "char": (f"ch == '{c}'", lambda ch: ch == c, f"occurrences of the letter '{c}'"),
      "set": (f"ch in '{chars}'", lambda ch: ch in chars, f"characters that are one of '{chars}'"),
  }[mode]
  body = (f"    count = 0\n    for ch in $a:\n        if {cond}:\n            count += 1\n"
          "    return count\n") if rng.random() < 0.5 else (
              f"    return sum(1 for ch in $a if {cond})\n")
  return Task(draw_names(rng, ["count", "tally", "num", "how_many"],
                      [mode if mode not in ("char", "set") else "letters", "chars", "symbols"]),
               [("text", "str")], "int", f"Return the number of {text} in $a.", body,
               lambda s: sum(1 for ch in s if ref(ch)),
               [("",)] + [(draw_text(rng, caps=True),) for _ in range(4)],
               (mode, c if mode == "char" else "", chars if mode == "set" else ""))


def string_transform(rng):
  c1, c2 = rng.sample("aeioustr", 2)
  mode = rng.choice(["reverse", "upper", "swapcase", "replace", "remove", "double", "even_idx",
                     "capitalize"])
  body, ref, text = {
      "reverse": ("    return $a[::-1]\n", lambda s: s[::-1], "$a reversed"),
      "upper": ("    return $a.upper()\n", str.upper, "$a in upper case"),
      "swapcase": ("    return ''.join(ch.lower() if ch.isupper() else ch.upper() for ch in $a)\n",
                   lambda s: "".join(ch.lower() if ch.isupper() else ch.upper() for ch in s),
                   "$a with the case of every letter swapped"),
      "replace": (f"    return $a.replace('{c1}', '{c2}')\n", lambda s: s.replace(c1, c2),
                  f"$a with every '{c1}' replaced by '{c2}'"),
      "remove": (f"    return ''.join(ch for ch in $a if ch != '{c1}')\n",
                 lambda s: s.replace(c1, ""), f"$a with every '{c1}' removed"),
      "double": ("    result = ''\n    for ch in $a:\n        result += ch * 2\n"
                 "    return result\n",
                 lambda s: "".join(ch * 2 for ch in s), "$a with every character doubled"),
      "even_idx": ("    return $a[::2]\n", lambda s: s[::2],
                   "the characters of $a at even positions (0, 2, 4, ...)"),
      "capitalize": ("    return ' '.join(w[:1].upper() + w[1:] for w in $a.split(' '))\n",
                     lambda s: " ".join(w[:1].upper() + w[1:] for w in s.split(" ")),
                     "$a with the first letter of every space-separated word in upper case"),
  }[mode]
  return Task(draw_names(rng, ["transform", "convert", "make", "rewrite"],
                      ["text", "string", "word", mode]), [("text", "str")], "str",
               f"Return {text}.", body, ref,
               [("",)] + [(draw_text(rng, caps=True),) for _ in range(4)],
               (mode, c1 if mode in ("replace", "remove") else "",
                c2 if mode == "replace" else ""))


def palindrome(rng):
  mode = rng.choice(["exact", "nocase", "letters"])
  prep, ref_prep, text = {
      "exact": ("    t = $a\n", lambda s: s, "reads the same forwards and backwards"),
      "nocase": ("    t = $a.lower()\n", str.lower,
                 "reads the same forwards and backwards, ignoring case"),
      "letters": ("    t = ''.join(ch.lower() for ch in $a if ch.isalpha())\n",
                  lambda s: "".join(ch.lower() for ch in s if ch.isalpha()),
                  "reads the same forwards and backwards when only its letters are kept, "
                  "ignoring case"),
  }[mode]
  return Task(draw_names(rng, ["is", "check"], ["palindrome", "mirrored", "symmetric"]),
               [("text", "str")], "bool", f"Return True if $a {text}.", prep +
               "    return t == t[::-1]\n", lambda s: ref_prep(s) == ref_prep(s)[::-1],
               [("Level",), ("noon",), ("Never odd or even",), (draw_text(rng, (1, 2)),), ("",)],
               (mode,))


def word_stats(rng):
  k = rng.randint(2, 8)
  c = rng.choice("abcdefmprst")
  mode = rng.choice(["longest", "shortest", "longer_than", "initials", "starting", "count"])
  body, ref, ret, text = {
      "longest": ("    best = ''\n    for w in $a.split():\n        if len(w) > len(best):\n"
                  "            best = w\n    return best\n",
                  lambda s: max(s.split(), key=len, default=""), "str",
                  "the longest word in $a (the first one on a tie; '' if there is none)"),
      "shortest": ("    words = $a.split()\n    if not words:\n        return ''\n"
                   "    return min(words, key=len)\n",
                   lambda s: min(s.split(), key=len, default=""), "str",
                   "the shortest word in $a (the first one on a tie; '' if there is none)"),
      "longer_than": (f"    return len([w for w in $a.split() if len(w) > {k}])\n",
                      lambda s: sum(len(w) > k for w in s.split()), "int",
                      f"how many words of $a have more than {k} letters"),
      "initials": ("    return ''.join(w[0] for w in $a.split())\n",
                   lambda s: "".join(w[0] for w in s.split()), "str",
                   "the first letters of the words of $a, joined together"),
      "starting": (f"    return [w for w in $a.split() if w.startswith('{c}')]\n",
                   lambda s: [w for w in s.split() if w.startswith(c)], "list[str]",
                   f"the words of $a that start with '{c}', in order"),
      "count": ("    return len($a.split())\n", lambda s: len(s.split()), "int",
                "the number of whitespace-separated words in $a"),
  }[mode]
  return Task(draw_names(rng, ["find", "get", "word"], ["word", "words", mode, "stats"]),
               [("text", "str")], ret, f"Return {text}.", body, ref,
               [("",)] + [(draw_text(rng, (3, 7)),) for _ in range(4)],
               (mode, k if mode == "longer_than" else 0, c if mode == "starting" else ""))


def caesar(rng):
  k = rng.randint(1, 25)
  decode = rng.random() < 0.5
  shift = -k if decode else k
  body = ("    result = []\n    for ch in $a:\n        if 'a' <= ch <= 'z':\n"
          f"            result.append(chr((ord(ch) - ord('a') + {shift}) % 26 + ord('a')))\n"
          "        else:\n            result.append(ch)\n    return ''.join(result)\n")
  ref = lambda s: "".join(chr((ord(ch) - 97 + shift) % 26 + 97) if "a" <= ch <= "z" else ch
                          for ch in s)
  return Task(draw_names(rng, ["decode" if decode else "encode", "shift", "rotate"],
                      ["caesar", "message", "cipher", "letters"]), [("text", "str")], "str",
               f"Shift every lowercase letter of $a {'back' if decode else 'forward'} by {k} "
               "places in the alphabet, wrapping around; leave other characters unchanged.",
               body, ref, [("",)] + [(draw_text(rng),) for _ in range(3)] + [("xyz abc!",)],
               (decode, k))


def run_length(rng):
  mode = rng.choice(["char_count", "count_char", "pairs"])
  emit, ret, text = {
      "char_count": ("out += prev + str(n)", "str", "each run written as the character followed "
                     "by its length, e.g. 'aaab' -> 'a3b1'"),
      "count_char": ("out += str(n) + prev", "str", "each run written as its length followed by "
                     "the character, e.g. 'aaab' -> '3a1b'"),
      "pairs": ("out.append((prev, n))", "list[tuple[str, int]]",
                "a list of (character, run length) pairs, e.g. 'aaab' -> [('a', 3), ('b', 1)]"),
  }[mode]
  init = "[]" if mode == "pairs" else "''"
  body = (f"    out = {init}\n    i = 0\n    while i < len($a):\n        prev, n = $a[i], 0\n"
          f"        while i < len($a) and $a[i] == prev:\n            i += 1\n            n += 1\n"
          f"        {emit}\n    return out\n")
  def ref(s):
    runs, i = [], 0
    while i < len(s):
      j = i
      while j < len(s) and s[j] == s[i]:
        j += 1
      runs.append((s[i], j - i))
      i = j
    if mode == "pairs":
      return runs
    return "".join(f"{ch}{n}" if mode == "char_count" else f"{n}{ch}" for ch, n in runs)
  def sample():
    return "".join(rng.choice("abc") * rng.randint(1, 4) for _ in range(rng.randint(1, 5)))
  return Task(draw_names(rng, ["encode", "compress", "run_length"], ["runs", "string", "rle"]),
               [("text", "str")], ret, f"Compress $a by run-length encoding: return {text}.",
               body, ref, [("",), (sample(),), (sample(),), ("abc",)], (mode,))


def char_frequency(rng):
  mode = rng.choice(["all", "letters", "first_repeat"])
  if mode == "first_repeat":
    return Task(draw_names(rng, ["first", "find"], ["repeat", "repeated_char", "duplicate"]),
                 [("text", "str")], "str",
                 "Return the first character of $a that has already appeared earlier in it, or '' "
                 "if no character repeats.",
                 "    seen = set()\n    for ch in $a:\n        if ch in seen:\n"
                 "            return ch\n"
                 "        seen.add(ch)\n    return ''\n",
                 lambda s: next((ch for i, ch in enumerate(s) if ch in s[:i]), ""),
                 [("",), ("abc",)] + [(draw_text(rng, (1, 3)),) for _ in range(3)], (mode,))
  cond = "ch.isalpha()" if mode == "letters" else "True"
  key = "ch.lower()" if mode == "letters" else "ch"
  body = (f"    counts = {{}}\n    for ch in $a:\n        if {cond}:\n"
          f"            counts[{key}] = counts.get({key}, 0) + 1\n    return counts\n"
          ).replace("        if True:\n    ", "")
  def ref(s):
    out = {}
    for ch in s:
      if mode == "all" or ch.isalpha():
        k = ch.lower() if mode == "letters" else ch
        out[k] = out.get(k, 0) + 1
    return out
  return Task(draw_names(rng, ["count", "char", "letter"], ["frequency", "counts", "histogram"]),
               [("text", "str")], "dict[str, int]",
               "Return a dict mapping each " + ("letter of $a, lower-cased," if mode == "letters"
                                                else "character of $a") +
               " to the number of times it occurs.", body, ref,
               [("",)] + [(draw_text(rng, (1, 3), caps=True),) for _ in range(3)], (mode,))


def string_case(rng):
  mode = rng.choice(["snake_to_camel", "camel_to_snake", "acronym", "title"])
  body, ref, text, sample = {
      "snake_to_camel": ("    parts = $a.split('_')\n"
                         "    return parts[0] + ''.join(p.capitalize() for p in parts[1:])\n",
                         lambda s: s.split("_")[0] + "".join(p.capitalize()
                                                             for p in s.split("_")[1:]),
                         "the snake_case identifier $a in camelCase", "_"),
      "camel_to_snake": ("    out = ''\n    for ch in $a:\n        if ch.isupper():\n"
                         "            out += '_' + ch.lower()\n        else:\n"
                         "            out += ch\n"
                         "    return out\n",
                         lambda s: "".join("_" + ch.lower() if ch.isupper() else ch for ch in s),
                         "the camelCase identifier $a in snake_case", "camel"),
      "acronym": ("    return ''.join(w[0].upper() for w in $a.split())\n",
                  lambda s: "".join(w[0].upper() for w in s.split()),
                  "the acronym of $a: the first letter of each word, in upper case", " "),
      "title": ("    return ' '.join(w.capitalize() for w in $a.split())\n",
                lambda s: " ".join(w.capitalize() for w in s.split()),
                "$a with each word capitalised and single spaces between words", " "),
  }[mode]
  def draw():
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 4))]
    if sample == "camel":
      return words[0] + "".join(w.capitalize() for w in words[1:])
    return sample.join(words)
  return Task(draw_names(rng, ["to", "make", "convert"], [mode, "case", "identifier", "name"]),
               [("text", "str")], "str", f"Return {text}.", body, ref,
               [(draw(),) for _ in range(4)], (mode,))
