"""Multiple-choice benchmarks by log-likelihood (the phi-1.5 suite): WinoGrande, ARC-Easy/Challenge,
BoolQ, SIQA, PIQA, HellaSwag, OpenBookQA, MMLU, and a generic format.

    examples = load('arc_easy', '/data/ARC-Easy-Test.jsonl', limit=500)
    result = evaluate(cfg, params, tokenizer, examples, num_fewshot=0)
    result['acc'], result['acc_norm']

Each example becomes one (context, continuation) pair per choice; the score of a choice is
sum_t log p(continuation token t | context, earlier continuation tokens). `acc` takes the
highest score, `acc_norm` the highest score per character of the continuation string
(lm-evaluation-harness' acc_norm). Files are local JSONL (or a JSON list; MMLU also as its
original header-less CSV: question,A,B,C,D,answer). The generic format is

    {"context": str, "choices": [str, ...], "label": int}   # "context": or a list, one per choice

and the adapters below map each benchmark's published fields onto it with the usual prompts
(those of lm-evaluation-harness, re-implemented here):

  arc_easy, arc_challenge   question, choices{text,label}, answerKey
                            "Question: q\\nAnswer:" + " text"
  hellaswag                 ctx (or ctx_a, ctx_b), activity_label, endings, label
                            "label: ctx" + " ending", WikiHow's [title]/[header] markup removed
  piqa                      goal, sol1, sol2, label      "Question: goal\\nAnswer:" + " sol"
  winogrande                sentence, option1, option2, answer ('1'/'2'): partial scoring, the
                            context is the sentence up to '_' with the option filled in and the
                            SAME continuation (the rest of the sentence) is scored for each option
  boolq                     passage, question, answer (bool)
                            "passage\\nQuestion: q?\\nAnswer:" + " no" / " yes"
  siqa                      context, question, answerA..C, label ('1'..'3')
                            "Question: c q\\nAnswer:" + " answer"
  openbookqa                question_stem, choices{text,label}, answerKey   "stem" + " text"
  mmlu                      question, choices, answer (int or letter), subject (optional)
                            "q\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:" + " A".." D", with the
                            subject line "The following are multiple choice questions (with answers)
                            about <subject>." before the few-shot block

Few-shot: k examples per evaluated example, drawn without replacement by
numpy.default_rng([seed, index]) from a given pool (another split's file), or from the evaluated
file minus the example itself; each shot is its gold context + continuation + "\\n\\n".
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import pathlib
import re
from typing import Any, Callable, Optional, Sequence

import numpy as np

from phi_jax.evals import scoring


@dataclasses.dataclass(frozen=True)
class Example:
  contexts: tuple[str, ...]   # one per choice (usually the same string)
  choices: tuple[str, ...]    # the continuations that are scored
  label: int
  description: str = ""       # put once before the few-shot block (MMLU's subject line)

  def __post_init__(self):
    if len(self.contexts) != len(self.choices) or len(self.choices) < 2:
      raise ValueError(f"an example needs >= 2 choices and one context per choice, got "
                       f"{len(self.contexts)} contexts for {len(self.choices)} choices")
    if not 0 <= self.label < len(self.choices):
      raise ValueError(f"label {self.label} out of range for {len(self.choices)} choices")


def _same(context: str, choices: Sequence[str], label: int, description: str = "") -> Example:
  return Example(tuple([context] * len(choices)), tuple(choices), int(label), description)


def generic(r: dict[str, Any]) -> Example:
  context = r["context"]
  contexts = list(context) if isinstance(context, list) else [context] * len(r["choices"])
  return Example(tuple(contexts), tuple(r["choices"]), int(r["label"]))


def arc(r: dict[str, Any]) -> Example:
  labels = list(r["choices"]["label"])
  return _same(f"Question: {r['question']}\nAnswer:", [" " + t for t in r["choices"]["text"]],
               labels.index(str(r["answerKey"]).strip()))


def _wikihow(text: str) -> str:
  text = text.strip().replace(" [title]", ". ")
  text = re.sub(r"\[.*?\]", "", text)
  return text.replace("  ", " ")


def hellaswag(r: dict[str, Any]) -> Example:
  ctx = r["ctx_a"] + " " + r["ctx_b"].capitalize() if "ctx_a" in r else r["ctx"]
  if r.get("activity_label"):
    ctx = r["activity_label"] + ": " + ctx
  return _same(_wikihow(ctx), [" " + _wikihow(e) for e in r["endings"]], int(r["label"]))


def piqa(r: dict[str, Any]) -> Example:
  return _same(f"Question: {r['goal']}\nAnswer:", [" " + r["sol1"], " " + r["sol2"]],
               int(r["label"]))


def winogrande(r: dict[str, Any]) -> Example:
  sentence = r["sentence"]
  i = sentence.index("_")
  rest = " " + sentence[i + 1:].strip()
  return Example((sentence[:i] + r["option1"], sentence[:i] + r["option2"]), (rest, rest),
                 {"1": 0, "2": 1}[str(r["answer"]).strip()])


def boolq(r: dict[str, Any]) -> Example:
  answer = r["answer"]
  if isinstance(answer, str):
    answer = answer.strip().lower() in ("true", "yes", "1")
  return _same(f"{r['passage']}\nQuestion: {r['question']}?\nAnswer:", [" no", " yes"],
               int(bool(answer)))


def siqa(r: dict[str, Any]) -> Example:
  return _same(f"Question: {r['context']} {r['question']}\nAnswer:",
               [" " + r[k] for k in ("answerA", "answerB", "answerC")], int(r["label"]) - 1)


def openbookqa(r: dict[str, Any]) -> Example:
  labels = list(r["choices"]["label"])
  return _same(r["question_stem"], [" " + t for t in r["choices"]["text"]],
               labels.index(str(r["answerKey"]).strip()))


def mmlu(r: dict[str, Any]) -> Example:
  letters = "ABCDEFGHIJ"[:len(r["choices"])]
  answer = r["answer"]
  label = letters.index(answer.strip()) if isinstance(answer, str) and not answer.isdigit() \
      else int(answer)
  lines = [r["question"].strip()] + [f"{l}. {c}" for l, c in zip(letters, r["choices"])]
  subject = str(r.get("subject") or "").replace("_", " ").strip()
  description = (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
                 if subject else "")
  return _same("\n".join(lines) + "\nAnswer:", [" " + l for l in letters], label, description)


ADAPTERS: dict[str, Callable[[dict[str, Any]], Example]] = {
    "generic": generic, "arc_easy": arc, "arc_challenge": arc, "hellaswag": hellaswag,
    "piqa": piqa, "winogrande": winogrande, "boolq": boolq, "siqa": siqa,
    "openbookqa": openbookqa, "mmlu": mmlu}


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
  """JSONL, a JSON list, or (MMLU) a header-less CSV of question,A,B,C,D,answer."""
  path = pathlib.Path(path)
  if path.suffix == ".csv":
    with open(path, newline="", encoding="utf-8") as f:
      return [{"question": row[0], "choices": row[1:-1], "answer": row[-1]}
              for row in csv.reader(f) if row]
  raw = path.read_text(encoding="utf-8")
  if raw.lstrip().startswith("["):
    return json.loads(raw)
  return [json.loads(line) for line in raw.splitlines() if line.strip()]


def load(name: str, path: str | os.PathLike, limit: Optional[int] = None) -> list[Example]:
  """The first `limit` examples of benchmark `name` (a key of ADAPTERS) from a local file."""
  if name not in ADAPTERS:
    raise ValueError(f"unknown multiple-choice benchmark {name!r}; known: {sorted(ADAPTERS)}")
  records = read_records(path)[:limit]
  examples = []
  for i, r in enumerate(records):
    try:
      examples.append(ADAPTERS[name](r))
    except (KeyError, ValueError, TypeError, IndexError) as e:
      raise ValueError(f"{path}: record {i} does not fit the {name!r} format "
                       f"({type(e).__name__}: {e}); its keys: {sorted(r)}") from e
  if not examples:
    raise ValueError(f"{path} has no examples")
  return examples


def prompts(examples: Sequence[Example], *, num_fewshot: int = 0,
            fewshot_pool: Optional[Sequence[Example]] = None,
            seed: int = 0) -> list[list[tuple[str, str]]]:
  """[(context, continuation) per choice] per example, the few-shot block in each context."""
  same_pool = fewshot_pool is None
  pool = examples if same_pool else fewshot_pool
  if num_fewshot > len(pool) - (1 if same_pool else 0):
    raise ValueError(f"num_fewshot={num_fewshot} but the few-shot pool has only {len(pool)} "
                     "examples")
  out = []
  for i, ex in enumerate(examples):
    shots = ""
    if num_fewshot:
      candidates = [j for j in range(len(pool)) if not (same_pool and j == i)]
      picked = np.random.default_rng([seed, i]).choice(len(candidates), num_fewshot,
                                                       replace=False)
      shots = "".join(pool[candidates[j]].contexts[pool[candidates[j]].label]
                      + pool[candidates[j]].choices[pool[candidates[j]].label] + "\n\n"
                      for j in picked)
    out.append([(ex.description + shots + c, cont) for c, cont in zip(ex.contexts, ex.choices)])
  return out


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
  """(context ids, continuation ids) the lm-evaluation-harness way: trailing spaces of the context
  move to the continuation, the pair is encoded together and split after the context's tokens.
  An empty context becomes [EOS] (or BOS) so the first continuation token has a condition."""
  n = len(context) - len(context.rstrip(" "))
  if n:
    context, continuation = context[:-n], context[-n:] + continuation
  whole = list(tokenizer.encode(context + continuation))
  ctx = list(tokenizer.encode(context)) if context else []
  cont = whole[len(ctx):] or list(tokenizer.encode(continuation))
  if not cont:
    raise ValueError(f"continuation {continuation!r} encodes to no tokens")
  if not ctx:
    start = tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.bos_id
    if start is None:
      raise ValueError("an empty context needs a tokenizer with an EOS or BOS token")
    ctx = [start]
  return ctx, cont


def score_pairs(cfg, params, tokenizer, pairs: Sequence[tuple[str, str]], *,
                batch_size: int = 8) -> np.ndarray:
  """Sum of continuation-token log-probs for each (context, continuation) [N]. A context that
  does not fit max_seq_len keeps its last tokens."""
  sequences, starts = [], []
  for context, continuation in pairs:
    ctx, cont = encode_pair(tokenizer, context, continuation)
    room = cfg.max_seq_len + 1 - len(cont)
    if room < 1:
      raise ValueError(f"a continuation of {len(cont)} tokens does not fit max_seq_len="
                       f"{cfg.max_seq_len}")
    ctx = ctx[-room:]
    sequences.append(ctx + cont)
    starts.append(len(ctx))
  sums, _ = scoring.sequence_logprobs(cfg, params, sequences, starts, batch_size=batch_size)
  return sums


def evaluate(cfg, params, tokenizer, examples: Sequence[Example], *, num_fewshot: int = 0,
             fewshot_pool: Optional[Sequence[Example]] = None, seed: int = 0,
             batch_size: int = 8) -> dict[str, Any]:
  """{'acc', 'acc_norm', 'num_examples', 'num_fewshot', 'examples': [{'label', 'pred',
  'pred_norm', 'logprobs'}]}."""
  per_example = prompts(examples, num_fewshot=num_fewshot, fewshot_pool=fewshot_pool, seed=seed)
  flat = [pair for pairs in per_example for pair in pairs]
  scores = score_pairs(cfg, params, tokenizer, flat, batch_size=batch_size)
  rows, at = [], 0
  for ex in examples:
    s = scores[at:at + len(ex.choices)]
    at += len(ex.choices)
    chars = np.array([max(len(c), 1) for c in ex.choices], np.float64)
    rows.append({"label": ex.label, "pred": int(np.argmax(s)),
                 "pred_norm": int(np.argmax(s / chars)), "logprobs": [float(x) for x in s]})
  return {"acc": float(np.mean([r["pred"] == r["label"] for r in rows])),
          "acc_norm": float(np.mean([r["pred_norm"] == r["label"] for r in rows])),
          "num_examples": len(rows), "num_fewshot": num_fewshot, "examples": rows}


def run(cfg, params, tokenizer, name: str, path: str | os.PathLike, *,
        limit: Optional[int] = None, num_fewshot: int = 0,
        fewshot_path: Optional[str | os.PathLike] = None, seed: int = 0,
        batch_size: int = 8) -> dict[str, Any]:
  """Loads benchmark `name` from `path` (the few-shot pool from `fewshot_path`) and scores it."""
  examples = load(name, path, limit)
  pool = load(name, fewshot_path) if fewshot_path else None
  return {"benchmark": name, **evaluate(cfg, params, tokenizer, examples, num_fewshot=num_fewshot,
                                        fewshot_pool=pool, seed=seed, batch_size=batch_size)}
