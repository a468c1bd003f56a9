"""Post-training data from the procedural exercises: chat conversations for SFT, and
execution-verified preference pairs for DPO, both decontaminated against the evaluation sets.

    rows, info, report = make_conversations(config.conversations)     # SFT: task -> solution
    rows, info, report = make_preferences(config.preferences)         # DPO: passing vs failing

A conversation (`exercise_messages`, `conversation`) is one user turn, the exercise's task (the
instruction `INSTRUCTION` and the function's signature and docstring: what it must do, in words,
with an example) and one assistant turn, the worked solution: the function's body, as the
pretraining data continues a docstring. Written as JSONL rows of the `conversations` dataset:
{"id", "messages": [user, assistant], "text", "family"}.

A preference pair (phi-3's DPO stage, on "Phi-3 Technical Report" section 3's chat format; the
pairs here are ranked by running the code, not by a judge): for each held-in ('train' split)
exercise, `samples` replies are drawn from a model (temperature sampling, `phi_jax.decoding.
generate`, prompted with the chat template), cut where the function body ends, and run with the
exercise's asserts in the sandbox (`evals.functions.run_programs`). An exercise with at least one
passing and one failing reply gives one pair (or up to `pairs_per_prompt` distinct ones,
`pairs_of`): a passing reply (chosen) and a failing one (rejected; one that parses when there is
one), drawn with a seeded RNG. With `greedy_rejected` each prompt is also decoded greedily (the
reply the evaluation makes) and a failing greedy reply is the first rejected one. JSONL rows of
the `preferences` dataset: {"id", "split_key", "messages": [user], "chosen", "rejected", "text",
"family", "pass_rate", "chosen_source", "rejected_source"}. `include_reference` (off by default; on in the smoke configs,
whose random-init models never pass) pairs the reference solution with a failing reply when no
sample passes; those rows have chosen_source='reference' and are counted apart.

Decontamination (`decontaminate`), the prompts before sampling and each pair's prompt + chosen
reply after:
  - `benchmarks` (HumanEval, MBPP with a path, the hand-written problems): the 13-gram and AST
    tests of `curation.decontam`;
  - the held-out exercises (the 'validation' and 'test' sets the experiments evaluate on:
    `heldout_n_validation` / `heldout_n_test` exercises of seed `heldout_seed`): an exercise of
    another split than 'train', or with the parameterisation key or the prompt of a held-out
    exercise, is dropped. Not the n-gram / AST tests: the exercises are templated, so those flag
    template structure, not leaks (measured: of 400 train exercises against 300 validation + 100
    test ones, the AST test flags 155, the 13-gram test alone 44, all sharing boilerplate such
    as "if it is larger and limit itself otherwise args limit int returns int").
Sampling is seeded: the same model, exercises and settings give the same pairs.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import random
from typing import Any, Mapping, Optional, Sequence

import ml_collections

from phi_jax.curation import decontam as decontam_lib
from phi_jax.curation import procedural

INSTRUCTION = "Complete this Python function."
# Where a reply ends: the template's end of turn (it may be text, not one id, when the tokenizer
# lacks the chat tokens), a new turn, or the end of the function body (evals.functions.STOP).
CHAT_STOP = ("<|end|>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>")

Messages = list[dict[str, str]]


def decontam_defaults() -> dict[str, Any]:
  """The decontamination fields of a `conversations` / `preferences` config section."""
  return dict(benchmarks=("humaneval", "handwritten"), ngram=13, min_ngram_matches=1,
              max_item_share=2, embed_threshold=0.5, ast_threshold=0.85, min_ast_nodes=20,
              heldout_n_validation=300, heldout_n_test=100, heldout_seed=2024)


# ---- the chat format ---------------------------------------------------------------------------

def exercise_messages(exercise: Any, instruction: str = INSTRUCTION) -> Messages:
  """[the user turn]: the instruction, a blank line, the signature and docstring."""
  return [{"role": "user", "content": f"{instruction}\n\n{exercise.prompt}"}]


def conversation(exercise: Any, instruction: str = INSTRUCTION) -> Messages:
  """[user, assistant]: the task and its worked solution (the reference body)."""
  return exercise_messages(exercise, instruction) + [
      {"role": "assistant", "content": exercise.solution.rstrip() + "\n"}]


def reply_body(text: str) -> str:
  """The function body a reply holds: cut at the end of the turn and where the body ends
  (`evals.functions.STOP`, the first line at column 0)."""
  from phi_jax.evals import codegen, functions  # pylint: disable=g-import-not-at-top
  return functions.function_body(codegen.truncate(text, CHAT_STOP + functions.STOP))


def complete_chat(cfg: Any, params: Any, tokenizer: Any, conversations: Sequence[Messages], *,
                  template: Any = "phi-3", num_samples: int = 1, temperature: float = 0.0,
                  top_p: Optional[float] = None, max_new_tokens: int = 128,
                  batch_size: int = 32, seed: int = 0) -> list[list[str]]:
  """`num_samples` replies per conversation (each ending with a user turn), as function bodies.

  Prompts are `chat.encode_prompt` ids (the template's generation prompt at the end; a prompt
  longer than max_seq_len - max_new_tokens keeps its last tokens), sorted by length and decoded
  in batches of `batch_size` rows; batch b samples with fold_in(key(seed), b), so the replies are
  a function of (params, conversations, settings, seed). Returns [len(conversations)][num_samples].
  `params` may be `decoding.DecodeWeights`, made once by a caller that calls this several times.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from phi_jax import chat  # pylint: disable=g-import-not-at-top
  from phi_jax.decoding import ensure_weights, generate  # pylint: disable=g-import-not-at-top
  from phi_jax.evals import codegen  # pylint: disable=g-import-not-at-top
  if temperature == 0 and num_samples != 1:
    raise ValueError(f"greedy decoding gives identical samples: num_samples={num_samples} needs "
                     "a temperature > 0 (or num_samples=1)")
  if num_samples < 1 or batch_size < 1:
    raise ValueError("num_samples and batch_size must be >= 1")
  max_new_tokens = min(max_new_tokens, cfg.max_seq_len - 1)
  room = cfg.max_seq_len - max_new_tokens
  ids = [chat.encode_prompt(m, template, tokenizer)[-room:] for m in conversations]
  stops = chat.end_ids(None, tokenizer, template) or [cfg.eos_id]
  work = sorted(((i, s) for i in range(len(ids)) for s in range(num_samples)),
                key=lambda item: (len(ids[item[0]]), item))
  out: list[list[str]] = [[""] * num_samples for _ in ids]
  # The decode layout once for every batch (loaded params are numpy, which generate's own cache
  # of the last params' layout does not keep).
  weights = ensure_weights(cfg, params)
  for b in range(0, len(work), batch_size):
    batch = work[b:b + batch_size]
    new = generate(cfg, weights, [ids[i] for i, _ in batch], max_new_tokens=max_new_tokens,
                   temperature=temperature, top_p=top_p, eos_id=stops,
                   rng=jax.random.fold_in(jax.random.key(seed), b // batch_size))
    for (i, s), tokens in zip(batch, new):
      end = next((t for t, tok in enumerate(tokens) if tok in stops), len(tokens))
      text = codegen.decode_continuation(tokenizer, ids[i], tokens[:end], None)
      out[i][s] = reply_body(text)
  return out


def evaluate_chat(cfg: Any, params: Any, tokenizer: Any, exercises: Sequence[Any], *,
                  template: Any = "phi-3", instruction: str = INSTRUCTION,
                  max_new_tokens: int = 128, batch_size: int = 32,
                  workers: Optional[int] = None) -> dict[str, Any]:
  """pass@1 of greedy chat-prompted replies: `evals.functions.evaluate` (pass@1, Wilson ci95,
  parse_rate, per_family, problems) of the exercises with each reply as the body."""
  from phi_jax.evals import functions  # pylint: disable=g-import-not-at-top
  replies = complete_chat(cfg, params, tokenizer,
                          [exercise_messages(ex, instruction) for ex in exercises],
                          template=template, max_new_tokens=max_new_tokens, batch_size=batch_size)
  return functions.evaluate(exercises, [r[0] for r in replies], workers=workers)


# ---- decontamination ---------------------------------------------------------------------------

def heldout_exercises(s: Mapping[str, Any]) -> list[Any]:
  """The evaluation exercises a section guards against: 'validation' + 'test' sets."""
  out = []
  if s["heldout_n_validation"]:
    out += procedural.generate(s["heldout_n_validation"], seed=s["heldout_seed"],
                               split="validation")
  if s["heldout_n_test"]:
    out += procedural.generate(s["heldout_n_test"], seed=s["heldout_seed"], split="test")
  return out


def decontaminate(texts: Sequence[str], ids: Sequence[str], s: Mapping[str, Any],
                  exercises: Optional[Sequence[Any]] = None,
                  heldout: Optional[Sequence[Any]] = None) -> tuple[list[int], dict[str, Any]]:
  """(indices kept, report): `texts` checked against s['benchmarks'] (n-gram and AST tests) and,
  with `exercises` (one per text), against the held-out exercises (split, key, prompt; see the
  module doc). report: {'benchmarks': the decontam report, 'heldout': {'checked', 'flagged',
  'ids'}, 'flagged': count of texts dropped by either}."""
  config = decontam_lib.DecontamConfig.from_settings(s)
  kept, report = (decontam_lib.decontaminate(texts, list(s["benchmarks"]), config, ids=list(ids))
                  if s["benchmarks"] and texts else (list(range(len(texts))), {"num_flagged": 0}))
  dropped = set(range(len(texts))) - set(kept)
  held: dict[str, Any] = {"checked": 0, "flagged": 0, "ids": []}
  if exercises is not None:
    heldout = heldout_exercises(s) if heldout is None else heldout
    keys = {(h.family, h.key) for h in heldout}
    prompts = {h.prompt for h in heldout}
    held["checked"] = len(heldout)
    for i, ex in enumerate(exercises):
      if ex.split != "train" or (ex.family, ex.key) in keys or ex.prompt in prompts:
        held["flagged"] += 1
        held["ids"].append(ids[i])
        dropped.add(i)
  return ([i for i in range(len(texts)) if i not in dropped],
          {"benchmarks": report, "heldout": held, "flagged": len(dropped)})


# ---- SFT conversations -------------------------------------------------------------------------

def make_conversations(s: ml_collections.ConfigDict
                       ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
  """`s.n` held-in exercises of seed `s.seed` as decontaminated conversations: (rows, info,
  decontam report)."""
  if s.split != "train":
    raise ValueError(f"conversations.split={s.split!r}: SFT data must come from the held-in "
                     "'train' split (the others are what the experiments evaluate on)")
  exercises = procedural.generate(s.n, seed=s.seed, split=s.split)
  convs = [conversation(ex, s.instruction) for ex in exercises]
  texts = [c[0]["content"] + "\n" + c[1]["content"] for c in convs]
  kept, report = decontaminate(texts, [ex.id for ex in exercises], s, exercises)
  rows = [{"id": exercises[i].id, "messages": convs[i], "text": texts[i],
           "family": exercises[i].family} for i in kept]
  info = {"requested": s.n, "kept": len(rows), "flagged_benchmarks":
          report["benchmarks"]["num_flagged"], "flagged_heldout": report["heldout"]["flagged"]}
  return rows, info, report


# ---- preference pairs --------------------------------------------------------------------------

def pairs_of(exercise: Any, replies: Sequence[str], passed: Sequence[bool], rng: random.Random,
             include_reference: bool = False, k: int = 1,
             first_rejected: Optional[str] = None) -> list[tuple[str, str, str]]:
  """Up to `k` distinct (chosen, rejected, chosen_source) pairs from one exercise's replies and
  their sandbox results; [] when there is no passing and failing reply (with include_reference,
  when there is no failing one).

  Rejected replies in order: `first_rejected` (e.g. the greedy reply, when it failed and is among
  the failing replies), then the failing replies that parse, then the others, each group
  shuffled by `rng`; chosen: the distinct passing replies, shuffled. Pair i is (chosen[i mod C],
  rejected[i mod R]) for i < min(k, max(C, R)), so no pair repeats."""
  from phi_jax.evals import functions  # pylint: disable=g-import-not-at-top
  if k < 1:
    raise ValueError(f"pairs per prompt must be >= 1, got {k}")
  passing = sorted({r for r, ok in zip(replies, passed) if ok})
  failing = sorted({r for r, ok in zip(replies, passed) if not ok})
  if not failing:
    return []
  rest = [r for r in failing if r != first_rejected]
  parsing = [r for r in rest if functions.parses(exercise.prompt, r)]
  others = [r for r in rest if r not in parsing]
  rng.shuffle(parsing)
  rng.shuffle(others)
  rejected = ([first_rejected] if first_rejected in failing else []) + parsing + others
  if passing:
    rng.shuffle(passing)
    chosen, source = passing, "sample"
  elif include_reference:
    chosen, source = [exercise.solution.rstrip() + "\n"], "reference"
  else:
    return []
  n = min(k, max(len(chosen), len(rejected)))
  return [(chosen[i % len(chosen)], rejected[i % len(rejected)], source) for i in range(n)]


def pair_of(exercise: Any, replies: Sequence[str], passed: Sequence[bool], rng: random.Random,
            include_reference: bool = False) -> Optional[tuple[str, str, str]]:
  """The first of `pairs_of` (one pair per prompt), or None."""
  pairs = pairs_of(exercise, replies, passed, rng, include_reference)
  return pairs[0] if pairs else None


def run_replies(exercises: Sequence[Any], replies: Sequence[Sequence[str]], *,
                workers: Optional[int] = None, timeout_s: float = 10.0,
                cpu_s: Optional[float] = 5.0) -> list[list[bool]]:
  """Whether each reply passes its exercise's asserts in the sandbox (each distinct (exercise,
  reply) run once; an empty reply fails without running)."""
  from phi_jax.evals import functions  # pylint: disable=g-import-not-at-top
  todo = sorted({(i, r) for i, rs in enumerate(replies) for r in rs if r.strip()})
  results = functions.run_programs([exercises[i].program(r) for i, r in todo], workers=workers,
                                   timeout_s=timeout_s, cpu_s=cpu_s) if todo else []
  ok = {key: bool(res.passed) for key, res in zip(todo, results)}
  return [[ok.get((i, r), False) for r in rs] for i, rs in enumerate(replies)]


def build_pairs(exercises: Sequence[Any], replies: Sequence[Sequence[str]],
                passed: Sequence[Sequence[bool]], s: Mapping[str, Any],
                heldout: Optional[Sequence[Any]] = None,
                greedy: Optional[Sequence[str]] = None
                ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
  """Pairs (module doc) from sampled replies and their results, each pair's prompt + chosen
  reply decontaminated: (rows, counts, decontam report of the chosen replies).

  `s['pairs_per_prompt']` (default 1) pairs per prompt (`pairs_of`); rows of one prompt share its
  `split_key` (the exercise id), so the dataset's validation split never splits a prompt, and
  have ids `<exercise id>`, `<exercise id>#1`, ... `greedy`: each prompt's greedy reply, already
  one of its `replies` (with its result in `passed`); a failing one is the first rejected reply
  (rows say rejected_source='greedy')."""
  k = int(s.get("pairs_per_prompt", 1))
  rows = []
  for n, (ex, rs, ok) in enumerate(zip(exercises, replies, passed)):
    rng = random.Random(f"phi_jax.preferences:{s['seed']}:{ex.id}")
    first = greedy[n] if greedy is not None else None
    messages = exercise_messages(ex, s["instruction"])
    for j, pair in enumerate(pairs_of(ex, rs, ok, rng, bool(s["include_reference"]), k, first)):
      rows.append({"id": ex.id if j == 0 else f"{ex.id}#{j}", "split_key": ex.id,
                   "messages": messages, "chosen": pair[0], "rejected": pair[1],
                   "text": messages[0]["content"] + "\n" + pair[0], "family": ex.family,
                   "pass_rate": sum(ok) / max(len(ok), 1), "chosen_source": pair[2],
                   "rejected_source": "greedy" if first is not None and pair[1] == first
                   else "sample"})
  by_id = {ex.id: ex for ex in exercises}
  kept, report = decontaminate([r["text"] for r in rows], [r["id"] for r in rows], s,
                               [by_id[r["split_key"]] for r in rows], heldout)
  flat = [p for ok in passed for p in ok]
  counts = {"prompts": len(exercises), "samples": len(flat),
            "sample_pass_rate": sum(flat) / max(len(flat), 1),
            "prompts_with_pass": sum(any(ok) for ok in passed),
            "prompts_with_fail": sum(not all(ok) for ok in passed),
            "prompts_with_both": sum(any(ok) and not all(ok) for ok in passed),
            "pairs_before_decontam": len(rows), "pairs_flagged": report["flagged"],
            "pairs": len(kept),
            "pairs_reference_chosen": sum(rows[i]["chosen_source"] == "reference" for i in kept),
            "pairs_greedy_rejected": sum(rows[i]["rejected_source"] == "greedy" for i in kept)}
  if greedy is not None:  # each prompt's greedy reply is its first one
    counts["greedy_pass_rate"] = sum(ok[0] for ok in passed) / max(len(passed), 1)
  return [rows[i] for i in kept], counts, report


def model_fingerprint(path: str | os.PathLike) -> str:
  """What a model folder holds, cheaply: its files' names, sizes and modification times
  (a training workdir: its checkpoints and model config only)."""
  root = pathlib.Path(path)
  if not root.is_dir():
    raise ValueError(f"preferences.model={str(path)!r} is not a folder: give a training workdir, "
                     "a phi_jax checkpoint or a Hugging Face folder")
  top = [root / "checkpoints"] if (root / "checkpoints").is_dir() else [root]
  h = hashlib.sha256(str(root.absolute()).encode())
  for base in top + [root / "model_config.json"]:
    files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
    for p in files:
      st = p.stat()
      h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}".encode())
  return h.hexdigest()[:16]


def make_preferences(s: ml_collections.ConfigDict, progress: bool = False
                     ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
  """Execution-verified pairs from the model at s.model on `s.n_prompts` held-in exercises of
  seed `s.prompt_seed`: (rows, info (counts + settings), decontam reports)."""
  from phi_jax.convert.load import load_model  # pylint: disable=g-import-not-at-top
  if not s.model:
    raise ValueError("preferences.model is empty: give the SFT model's folder, e.g. "
                     "--config=configs/data/preferences.py:model=workdirs/sft")
  if s.samples < 2:
    raise ValueError(f"preferences.samples={s.samples}: a pair needs >= 2 replies per prompt")
  exercises = procedural.generate(s.n_prompts, seed=s.prompt_seed, split="train")
  heldout = heldout_exercises(s)
  prompts = [exercise_messages(ex, s.instruction)[0]["content"] for ex in exercises]
  kept, prompt_report = decontaminate(prompts, [ex.id for ex in exercises], s, exercises,
                                      heldout)
  exercises = [exercises[i] for i in kept]
  model = load_model(s.model, require_tokenizer=True)
  if progress:
    print(f"[preferences] sampling {s.samples} replies for each of {len(exercises)} prompts from "
          f"{s.model} (step {model.step})", flush=True)
  from phi_jax.decoding import ensure_weights  # pylint: disable=g-import-not-at-top
  convs = [exercise_messages(ex, s.instruction) for ex in exercises]
  # The decode layout once, for the sampled and (with greedy_rejected) the greedy replies.
  complete = functools.partial(complete_chat, model.cfg, ensure_weights(model.cfg, model.params),
                               model.tokenizer, convs, template=s.chat_template,
                               max_new_tokens=s.max_new_tokens, batch_size=s.batch_size)
  replies = complete(num_samples=s.samples, temperature=s.temperature, top_p=s.top_p or None,
                     seed=s.seed)
  greedy = None
  if s.get("greedy_rejected", False):
    # The reply the evaluation makes (greedy): where it fails, it is the pair's rejected reply.
    greedy = [r[0] for r in complete()]
    replies = [[g] + rs for g, rs in zip(greedy, replies)]
  passed = run_replies(exercises, replies, workers=s.workers or None, timeout_s=s.timeout_s,
                       cpu_s=s.cpu_s or None)
  rows, counts, pair_report = build_pairs(exercises, replies, passed, s, heldout, greedy)
  info = {**counts, "prompts_requested": s.n_prompts,
          "prompts_flagged": prompt_report["flagged"],
          "prompts_flagged_heldout": prompt_report["heldout"]["flagged"],
          "model": str(s.model), "model_step": model.step, "temperature": s.temperature,
          "samples_per_prompt": s.samples, "pairs_per_prompt": int(s.get("pairs_per_prompt", 1)),
          "greedy_rejected": bool(s.get("greedy_rejected", False))}
  return rows, info, {"prompts": prompt_report, "pairs": pair_report}


__all__ = ["CHAT_STOP", "INSTRUCTION", "build_pairs", "complete_chat", "conversation",
           "decontam_defaults", "decontaminate", "evaluate_chat", "exercise_messages",
           "heldout_exercises", "make_conversations", "make_preferences", "model_fingerprint",
           "pair_of", "pairs_of", "reply_body", "run_replies"]
