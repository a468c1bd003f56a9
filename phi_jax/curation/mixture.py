"""The tiny coder's textbook-quality mixture: phi-1's CodeTextbook + CodeExercises at laptop scale.

phi-1 trains on filtered code plus GPT-3.5 textbooks, then fine-tunes on "docstring -> solution"
exercises. No language model runs offline here, so the mixture is made by phi_jax's own
generators, all from the TRAIN split of `phi_jax.curation.procedural` (never a held-out family,
never a 'validation' parameterisation):

  exercise   a function: signature, docstring (one of several styles), worked solution body
  drill      a binding drill (`procedural.drills`): a one-line body that is the docstring's
             expression, so it can only be predicted by copying names and constants
  textbook   a `procedural_textbook` section: the topic explained, one to three worked examples
             (the function, a sentence binding the task's names and numbers to the code, a
             line-by-line walk-through, a traced call, the asserts)

    records, stats = make(n_exercises=20_000, n_textbooks=500, n_drills=5_000, seed=0)
    records[0]  # {'id', 'text', 'prompt', 'target', 'kind': 'exercise' | 'drill' |
                #  'textbook', 'family', 'split_key'}

Every record has a `prompt` and a `target` (text = prompt + target), so it trains either as a
document (data.format='lm') or as conditional generation (data.format='prompt_completion': loss
on the target only, whole records packed, none split): an exercise's prompt is its signature and
docstring and its target the body; a textbook section is cut at paragraphs (never inside a code
block) into pieces of at most `max_chars`, each piece's first line its prompt and the rest its
target.

Every exercise's solution, and every textbook's worked example, is checked against its asserts in
the sandbox before it is kept (`verify`: the exercises in batches of `batch` per sandboxed
program, a failing batch re-run one by one, so a broken template is caught and dropped without
spending one interpreter per exercise). Exact duplicates are dropped. Decontamination against the
evaluation sets is the pipeline's `decontam` stage that follows (`phi_jax.curation.stages`).
"""

from __future__ import annotations

import json
import random
from typing import Any, Optional, Sequence

import ml_collections

from phi_jax.curation import procedural
from phi_jax.curation import procedural_textbook as textbook_lib

VERSION = 1


def _check_program(exercises: Sequence[procedural.Exercise]) -> str:
  """One program running every exercise's solution + asserts in its own namespace; it prints
  the indices that fail (and nothing else)."""
  cases = json.dumps([ex.program() for ex in exercises])
  return ("import json\n"
          f"_cases = json.loads({cases!r})\n"
          "for _i, _src in enumerate(_cases):\n"
          "    try:\n"
          "        exec(compile(_src, f'<exercise {_i}>', 'exec'), {'__name__': '__check__'})\n"
          "    except BaseException:\n"
          "        print('FAILED', _i)\n")


def verify(exercises: Sequence[procedural.Exercise], *, batch: int = 200,
           workers: Optional[int] = None, timeout_s: float = 60.0) -> list[bool]:
  """Whether each exercise's reference solution passes its asserts, run in the sandbox."""
  chunks = [list(exercises[i:i + batch]) for i in range(0, len(exercises), batch)]
  results = procedural.run_programs([_check_program(c) for c in chunks], workers=workers,
                                    timeout_s=timeout_s)
  ok: list[bool] = []
  for chunk, result in zip(chunks, results):
    if result.passed and "FAILED" not in (result.stdout or ""):
      ok.extend([True] * len(chunk))
    else:  # find the culprits one by one (a hang or a crash takes its whole batch with it)
      ok.extend(bool(r.passed) for r in procedural.verify(chunk, workers=workers))
  return ok


def textbook_pieces(text: str, max_chars: int = 700) -> list[tuple[str, str]]:
  """(prompt, target) pieces of a section: consecutive paragraphs up to `max_chars` (a longer
  paragraph or code block stays whole), never cut inside a ``` block; the first line of a piece
  is its prompt."""
  blocks, current, fence = [], [], False
  for para in text.split("\n\n"):
    current.append(para)
    fence ^= para.count("```") % 2 == 1
    if not fence:
      blocks.append("\n\n".join(current))
      current = []
  if current:
    blocks.append("\n\n".join(current))
  pieces, group = [], []
  for block in blocks:
    if group and len("\n\n".join(group + [block])) > max_chars:
      pieces.append(group)
      group = []
    group.append(block)
  if group:
    pieces.append(group)
  out: list[tuple[str, str]] = []
  for group in pieces:
    text_of = "\n\n".join(group)
    head, _, rest = text_of.partition("\n")
    if not rest.strip() and out:  # a one-line piece joins the previous one's target
      out[-1] = (out[-1][0], out[-1][1] + "\n\n" + text_of)
    elif rest.strip():
      out.append((head + "\n", rest))
  return out


def make(n_exercises: int, n_textbooks: int, n_drills: int = 0, *, seed: int = 0,
         batch: int = 200, workers: Optional[int] = None
         ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """`n_exercises` exercises, `n_textbooks` textbook sections (a section is ~10x an exercise's
  bytes) and `n_drills` binding drills, verified and shuffled; see the module doc. Returns
  (records, stats)."""
  if min(n_exercises, n_textbooks, n_drills) < 0 or n_exercises + n_textbooks + n_drills < 1:
    raise ValueError(f"need n_exercises, n_textbooks, n_drills >= 0 and at least one document, "
                     f"got {n_exercises}, {n_textbooks}, {n_drills}")
  rng = random.Random(f"phi_jax.mixture:{VERSION}:{seed}")
  exercises = procedural.generate(n_exercises, seed=rng.getrandbits(63), split="train")
  drill_start = len(exercises)
  exercises += procedural.generate_drills(n_drills, seed=rng.getrandbits(63))
  sections = [textbook_lib.write_textbook({}, seed=rng.getrandbits(63))
              for _ in range(n_textbooks)]
  worked = [ex for _, used in sections for ex in used]
  ok = verify(exercises + worked, batch=batch, workers=workers)
  ok_ex, ok_worked = ok[:len(exercises)], iter(ok[len(exercises):])
  records, seen, dropped = [], set(), {"failed_asserts": 0, "duplicate": 0}
  for i, (ex, good) in enumerate(zip(exercises, ok_ex)):
    if not good:
      dropped["failed_asserts"] += 1
    elif ex.text in seen:
      dropped["duplicate"] += 1
    else:
      seen.add(ex.text)
      records.append({"id": ex.id, "text": ex.text, "prompt": ex.prompt, "target": ex.solution,
                      "kind": "drill" if i >= drill_start else "exercise", "family": ex.family,
                      "split_key": ex.key})
  for k, (text, used) in enumerate(sections):
    good = all([next(ok_worked) for _ in used])
    if not good:
      dropped["failed_asserts"] += 1
    elif text in seen:
      dropped["duplicate"] += 1
    else:
      seen.add(text)
      for j, (prompt, target) in enumerate(textbook_pieces(text)):
        records.append({"id": f"textbook-{k}-{j}", "text": prompt + target, "prompt": prompt,
                        "target": target, "kind": "textbook",
                        "family": ",".join(ex.family for ex in used),
                        "split_key": f"textbook-{k}"})
  rng.shuffle(records)
  kinds = {kind: sum(r["kind"] == kind for r in records)  # textbook: pieces of sections
           for kind in ("exercise", "drill", "textbook")}
  stats = {"requested": {"exercise": n_exercises, "drill": n_drills, "textbook": n_textbooks},
           "kept": len(records), "dropped": dropped, "kinds": kinds,
           "bytes": {kind: sum(len(r["text"].encode()) for r in records if r["kind"] == kind)
                     for kind in kinds},
           "procedural_version": procedural.VERSION, "textbook_version": textbook_lib.VERSION}
  return records, stats


def pipeline_config(n_exercises: int, n_textbooks: int, n_drills: int = 0, *, seed: int = 0,
                    benchmarks: Sequence[str] = ("humaneval", "handwritten"),
                    validation_fraction: float = 0.02) -> ml_collections.ConfigDict:
  """The `python -m phi_jax.curation` pipeline that makes the mixture: synthetic (kind
  'mixture') -> decontam (13-grams and AST matches against `benchmarks`) -> dataset
  (`synthetic_exercises`: 'text', and 'prompt' / 'target' for data.format='prompt_completion')."""
  c = ml_collections.ConfigDict()
  c.stages = ("synthetic", "decontam", "dataset")
  c.tokenizer = ""
  c.progress = False
  c.synthetic = ml_collections.ConfigDict(dict(kind="mixture", n=n_exercises,
                                               n_textbooks=n_textbooks, n_drills=n_drills,
                                               seed=seed, workers=0))
  c.decontam = ml_collections.ConfigDict(dict(
      benchmarks=tuple(benchmarks), ngram=13, min_ngram_matches=1, max_item_share=2,
      embed_threshold=0.5, ast_threshold=0.85, min_ast_nodes=20))
  c.dataset = ml_collections.ConfigDict(dict(builder="synthetic_exercises",
                                             validation_fraction=validation_fraction))
  return c
