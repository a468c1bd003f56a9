"""Execution-verified preference pairs (phi_jax.curation.preferences): a pair only from a passing
and a failing reply; decontamination drops a planted evaluation item (a held-out exercise, a
HumanEval solution); the pipeline stage writes a dataset the DPO loader reads; sampling is
reproducible with a seed; the post-training smoke chain runs end to end."""

import functools
import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest

from phi_jax import chat
from phi_jax.config_args import load_config
from phi_jax.convert import checkpoint_io
from phi_jax.curation import preferences, procedural, stages
from phi_jax.data import pipeline
from phi_jax.data import tokenizer as tokenizers
from phi_jax.models import Transformer, presets

REPO = pathlib.Path(__file__).resolve().parents[1]


def _section(**overrides):
  s = dict(preferences.decontam_defaults(), seed=0, include_reference=False,
           instruction=preferences.INSTRUCTION, heldout_n_validation=20, heldout_n_test=10)
  s.update(overrides)
  return s


@pytest.fixture(scope="module")
def exercises():
  return procedural.generate(6, seed=3, split="train")


def test_pair_only_from_a_passing_and_a_failing_reply(exercises):
  ex = exercises[0]
  good, bad, junk = ex.solution, "    return None\n", "    retur (\n"
  rng = random.Random(0)
  assert preferences.pair_of(ex, [good, good], [True, True], rng) is None  # no failing reply
  assert preferences.pair_of(ex, [bad, junk], [False, False], rng) is None  # no passing reply
  chosen, rejected, source = preferences.pair_of(ex, [junk, good, bad], [False, True, False], rng)
  assert (chosen, source) == (good, "sample")
  assert rejected == bad  # a failing reply that parses is preferred over one that does not
  chosen, _, source = preferences.pair_of(ex, [bad], [False], rng, include_reference=True)
  assert (chosen, source) == (ex.solution.rstrip() + "\n", "reference")


def test_several_pairs_per_prompt_are_distinct_and_start_from_the_greedy_reply(exercises):
  ex = exercises[0]
  good = ex.solution
  good2 = good.rstrip() + "  # same\n"
  bad, bad2, junk = "    return None\n", "    return 0\n", "    retur (\n"
  replies, passed = [good, junk, bad, good2, bad2], [True, False, False, True, False]
  pairs = preferences.pairs_of(ex, replies, passed, random.Random(0), k=5, first_rejected=junk)
  assert len(pairs) == 3  # max(2 passing, 3 failing): no pair repeats
  assert len(set(pairs)) == 3
  assert pairs[0][1] == junk  # the greedy reply first, although it does not parse
  assert {p[1] for p in pairs} == {junk, bad, bad2} and {p[0] for p in pairs} == {good, good2}
  assert len(preferences.pairs_of(ex, replies, passed, random.Random(0), k=2)) == 2
  # Without first_rejected the parsing failures come first (as pair_of picks).
  assert all(p[1] != junk for p in preferences.pairs_of(ex, replies, passed, random.Random(0),
                                                         k=2))
  # A greedy reply that passed is not a rejected one.
  assert all(p[1] != good for p in preferences.pairs_of(ex, replies, passed, random.Random(0),
                                                         k=3, first_rejected=good))
  with pytest.raises(ValueError, match="pairs per prompt"):
    preferences.pairs_of(ex, replies, passed, random.Random(0), k=0)


def test_run_replies_uses_the_sandbox(exercises):
  ex = exercises[1]
  passed = preferences.run_replies([ex], [[ex.solution, "    return None\n", ""]])
  assert passed == [[True, False, False]]


def test_build_pairs_counts_and_rows(exercises):
  replies = [[ex.solution, "    return None\n"] for ex in exercises[:3]]
  replies.append(["    return None\n", "    pass\n"])  # no pass: no pair
  passed = preferences.run_replies(exercises[:4], replies)
  rows, counts, _ = preferences.build_pairs(exercises[:4], replies, passed,
                                            _section(benchmarks=()))
  assert [r["id"] for r in rows] == [ex.id for ex in exercises[:3]]
  assert counts["prompts_with_both"] == 3 and counts["pairs"] == 3
  assert counts["sample_pass_rate"] == pytest.approx(3 / 8)
  for r, ex in zip(rows, exercises):
    assert r["chosen"] == ex.solution and r["rejected"] == "    return None\n"
    assert r["messages"] == preferences.exercise_messages(ex)
    assert r["messages"][-1]["role"] == "user"


def test_decontamination_drops_planted_eval_items(exercises):
  s = _section()
  held = preferences.heldout_exercises(s)
  planted = held[0]  # a held-out ('validation') exercise among the held-in prompts
  items = list(exercises[:3]) + [planted]
  texts = [preferences.exercise_messages(ex)[0]["content"] for ex in items]
  kept, report = preferences.decontaminate(texts, [ex.id for ex in items], s, items, held)
  assert kept == [0, 1, 2]
  assert report["heldout"]["ids"] == [planted.id]
  # A chosen reply that is a HumanEval solution is flagged by the benchmark tests.
  from phi_jax.evals import humaneval
  he = humaneval.load_problems()[2]
  texts = [texts[0], texts[1] + "\n" + he["prompt"] + he["canonical_solution"]]
  kept, report = preferences.decontaminate(texts, ["a", "b"], s)
  assert kept == [0] and report["benchmarks"]["num_flagged"] == 1


def _tiny_model_dir(tmp_path, exercises):
  """A random-init phi_jax checkpoint with a SentencePiece tokenizer (loadable by load_model)."""
  texts = [preferences.exercise_messages(ex)[0]["content"] + ex.solution
           for ex in procedural.generate(40, seed=5, split="train")]
  folder = tmp_path / "model"
  tok = tokenizers.train_sentencepiece(texts, tmp_path / "sp" / "sp", vocab_size=400)
  cfg = presets.get("tiny-serial", vocab_size=tok.vocab_size, d_model=32, num_layers=2,
                    num_heads=2, num_kv_heads=2, mlp_dim=64, max_seq_len=256, dtype="float32")
  params = nn.unbox(Transformer(cfg).init(jax.random.key(0), np.zeros((1, 8), np.int32)))
  checkpoint_io.save_model(cfg, params["params"], folder)
  (folder / "tokenizer").mkdir()
  shutil.copyfile(tmp_path / "sp" / "sp.model", folder / "tokenizer" / "sp.model")
  return folder, tokenizers.load(folder / "tokenizer" / "sp.model")


def _prefs_config(model_dir):
  c = load_config(f"{REPO / 'configs/data/preferences.py'}:model={model_dir},tiny")
  c.unlock()
  c.preferences.update(n_prompts=6, samples=3, max_new_tokens=12)
  c.dataset.validation_fraction = 0.34
  c.lock()
  return c


def test_stage_writes_a_dataset_the_dpo_loader_reads(tmp_path, exercises):
  model_dir, tok = _tiny_model_dir(tmp_path, exercises)
  summary = stages.run(_prefs_config(model_dir), tmp_path / "prefs", log=lambda _: None)
  counts = json.loads((tmp_path / "prefs/preferences/counts.json").read_text())
  assert counts["prompts"] == 6 and counts["samples"] == 18
  rows = stages.read_records(tmp_path / "prefs/dataset/records.jsonl")
  assert len(rows) == counts["pairs"] >= 2
  assert all(r["chosen"] != r["rejected"] for r in rows)
  train = summary["train_config"]
  data_config = pipeline.DataConfig(
      name="preferences", data_dir=train["data.data_dir"], split="train", seq_len=256,
      batch_size=2, format="preference", shuffle=False, num_epochs=1, read_threads=0,
      prefetch_buffer_size=1, drop_remainder=False,
      builder_kwargs={"source_dir": train["data.source_dir"],
                      "validation_fraction": train["data.validation_fraction"]})
  encode = functools.partial(chat.encode_with_assistant_mask, template="phi-3", tokenizer=tok)
  batch = next(iter(pipeline.make_iterator(data_config, tok, encode_chat=encode)))
  segments = batch["segment_ids"][0]
  assert set(np.unique(segments)) >= {1, 2}  # a chosen and a rejected sequence
  assert batch["loss_mask"][0][segments == 1].sum() > 0
  assert batch["loss_mask"][0][segments == 2].sum() > 0
  # Rerunning with the same settings and model skips the stage.
  log = []
  stages.run(_prefs_config(model_dir), tmp_path / "prefs", log=log.append)
  assert any("[preferences] finished before" in line for line in log)


def test_stage_with_two_pairs_per_prompt_and_the_greedy_reply(tmp_path, exercises):
  model_dir, _ = _tiny_model_dir(tmp_path, exercises)
  config = _prefs_config(model_dir)
  config.unlock()
  config.preferences.update(pairs_per_prompt=2, greedy_rejected=True)
  config.lock()
  stages.run(config, tmp_path / "prefs", log=lambda _: None)
  counts = json.loads((tmp_path / "prefs/preferences/counts.json").read_text())
  assert counts["samples"] == 6 * (3 + 1)  # the greedy reply is one more per prompt
  assert counts["greedy_pass_rate"] == 0.0  # a random-init model
  rows = stages.read_records(tmp_path / "prefs/dataset/records.jsonl")
  assert len({r["id"] for r in rows}) == len(rows) == counts["pairs"] > counts["prompts_with_fail"]
  by_prompt = {}
  for r in rows:
    by_prompt.setdefault(r["split_key"], []).append(r)
  assert max(len(v) for v in by_prompt.values()) == 2
  assert counts["pairs_greedy_rejected"] == len(by_prompt)  # each prompt's first pair
  for group in by_prompt.values():
    assert group[0]["rejected_source"] == "greedy" and group[0]["id"] == group[0]["split_key"]
    assert len({(r["chosen"], r["rejected"]) for r in group}) == len(group)
  # Every pair of one prompt lands in the same split of the dataset.
  from phi_jax.data.builders import jsonl
  splits = jsonl.split_records(rows, 0.34)
  for name, part in splits.items():
    other = splits["validation" if name == "train" else "train"]
    assert not {r["split_key"] for r in part} & {r["split_key"] for r in other}


def test_sampling_is_reproducible_with_a_seed(tmp_path, exercises):
  from phi_jax.convert.load import load_model
  model_dir, _ = _tiny_model_dir(tmp_path, exercises)
  m = load_model(model_dir, require_tokenizer=True)
  convs = [preferences.exercise_messages(ex) for ex in exercises[:3]]
  sample = functools.partial(preferences.complete_chat, m.cfg, m.params, m.tokenizer, convs,
                             num_samples=3, temperature=1.0, max_new_tokens=10, batch_size=4)
  a, b, c = sample(seed=7), sample(seed=7), sample(seed=8)
  assert a == b
  assert a != c
  assert len(a) == 3 and all(len(r) == 3 for r in a)


def test_conversations_are_held_in_and_decontaminated():
  s = ml_collections.ConfigDict(dict(_section(), n=30, seed=0, split="train"))
  rows, info, report = preferences.make_conversations(s)
  assert info["kept"] == len(rows) == 30 - report["flagged"]
  assert all(r["messages"][1]["role"] == "assistant" for r in rows)
  s.split = "validation"
  with pytest.raises(ValueError, match="held-in"):
    preferences.make_conversations(s)


@pytest.mark.slow
def test_smoke_chain_runs_end_to_end(tmp_path):
  """run.sh with SMOKE=1: base (random init, 6 steps) -> SFT -> preferences -> DPO -> report."""
  out = tmp_path / "out"
  env = dict(os.environ, SMOKE="1", SEEDS="0", ROOT=str(tmp_path / "root"), OUT=str(out),
             PYTHON=sys.executable)
  # One CPU device, as a user runs it (not the suite's 8 simulated ones).
  env["XLA_FLAGS"] = re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                            env.get("XLA_FLAGS", ""))
  proc = subprocess.run(["bash", str(REPO / "experiments/phi3_posttrain/run.sh")], env=env,
                        cwd=REPO, capture_output=True, text=True, timeout=1800)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  results = json.loads((out / "results.json").read_text())
  assert set(results["stages"]) == {"base/native", "base/chat", "sft/chat", "dpo/chat"}
  assert results["preferences"]["0"]["pairs"] >= 2
  assert results["dpo_curves"]["0"]["reward_margin"]
  assert (out / "curves.png").exists()
