"""phi-1.5's ablation at CPU scale: word problems scored by running Python, the three arms' data,
and the config's arms and sweep."""

import importlib.util
import json
import pathlib

import pytest

from phi_jax import sweep
from phi_jax.curation import phi15_corpus
from phi_jax.evals import functions, word_problems

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def _phi1_5():
  spec = importlib.util.spec_from_file_location("phi1_5_config", CONFIGS / "phi1_5.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_word_problems_are_held_out_by_template_and_their_solutions_pass():
  test = word_problems.make(12, split="test", seed=0)
  train = word_problems.make(16, split="train", seed=0)
  assert {p.family for p in test} == set(word_problems.TEMPLATES["test"])
  assert not {p.family for p in test} & {p.family for p in train}
  assert word_problems.make(12, split="test", seed=0) == test  # deterministic
  assert word_problems.make(12, split="test", seed=1) != test
  assert len({p.question for p in train}) == 16
  problems = test + train
  worked = functions.evaluate(problems, [p.solution for p in problems])
  assert worked["pass@1"] == 1.0, [r for r in worked["problems"] if not r["passed"]]
  wrong = functions.evaluate(problems[:4], ["    return -1\n"] * 4)
  assert wrong["pass@1"] == 0.0 and wrong["parse_rate"] == 1.0
  assert test[0].prompt.startswith('def solution():\n    """') and "?" in test[0].question
  with pytest.raises(ValueError, match="split='dev'"):
    word_problems.make(3, split="dev")


def test_arms_mix_their_sources_and_hold_out_web_files(tmp_path):
  web = tmp_path / "web"
  for i in range(30):
    (web / f"f{i}.rst.txt").parent.mkdir(parents=True, exist_ok=True)
    (web / f"f{i}.rst.txt").write_text(
        "\n\n".join(f"This paragraph {i}.{k} explains how the module reads its input files and "
                    f"what it returns to the caller." for k in range(12))
        + "\n\n.. versionadded:: 3.2\n   :option:`-X`\n")
  assert phi15_corpus.prose_score("A sentence that reads like prose here.\n" * 20) > 0.9
  assert phi15_corpus.prose_score(".. versionadded:: 3.2\n   The ``-X`` option.\n" * 5) == 0.0
  summary = phi15_corpus.build(tmp_path / "corpus", arm_bytes=12_000, n_word_problems=80,
                               n_textbooks=0, web_dir=web, code_max_files=30)
  for arm, shares in phi15_corpus.ARMS.items():
    got = summary["arms"][arm]
    assert set(got) == set(shares)
    for source, share in shares.items():  # whole documents: at least the share, not far over
      assert share * 12_000 <= got[source] < share * 12_000 + 25_000, (arm, source, got)
  records = {arm: [json.loads(line) for line in
                   (tmp_path / "corpus" / arm / "records.jsonl").read_text().splitlines()]
             for arm in phi15_corpus.ARMS}
  assert not any(r["source"] == "web" for r in records["phi-1.5"])
  assert not any(r["source"] == "synthetic" for r in records["phi-1.5-web-only"])
  held = [json.loads(line) for line in
          (tmp_path / "corpus" / "heldout_web.jsonl").read_text().splitlines()]
  held_files = {r["id"].split(":")[1] for r in held}
  assert held_files  # some files held out whole, and no arm trains on them
  assert not any(r["id"].split(":")[1] in held_files for arm in records.values() for r in arm
                 if r["source"] == "web")
  # word problems in training are train templates only
  families = {r["id"].split("/")[1] for arm in records.values() for r in arm
              if r["id"].startswith("wp:")}
  assert families and families <= set(word_problems.TEMPLATES["train"])
  # too few synthetic documents for the share: the error names the source and the knob
  with pytest.raises(ValueError, match=r"the synthetic source has .* raise n_word_problems"):
    phi15_corpus.build(tmp_path / "short", arm_bytes=12_000, n_word_problems=5, n_textbooks=0,
                       web_dir=web, code_max_files=30)


def test_phi1_5_config_has_the_three_arms_as_variants_and_a_sweep(tmp_path):
  from phi_jax.train import loop, optim  # pylint: disable=g-import-not-at-top
  module = _phi1_5()
  for arg in ("ablation=phi-1.5-web-only", "ablation,smoke"):  # builds, locks, schedules
    c = module.get_config(arg)
    optim.make_optimizer(c.optimizer, c.total_steps)
    loop.intervals(c)
    assert loop.model_config(c, vocab_size=1024).name == "phi-1.5"
  c = module.get_config("ablation=phi-1.5-web")
  assert c.data.dataset == "filtered_corpus" and c.model.d_model == 96
  assert c.total_steps * c.data.batch_size * c.data.seq_len == module.ABLATION_TOKENS
  assert module.get_config("ablation").data.source_dir.endswith("/phi-1.5")
  assert set(module.ARMS) == set(phi15_corpus.ARMS)
  with pytest.raises(ValueError, match="ablation='web'"):
    module.get_config("ablation=web")
  runs = sweep.plan_sweep(f"{CONFIGS / 'phi1_5.py'}:ablation", tmp_path)
  assert len(runs) == 9 and {r.tags["seed"] for r in runs} == {0, 1, 2}
  web_only = [r for r in runs if r.tags["arm"] == "phi-1.5-web-only"]
  assert web_only[0].config.data.source_dir == str(tmp_path / "corpus" / "phi-1.5-web-only")
  assert all(r.config.data.tokenizer == str(tmp_path / "tokenizer" / "sp.model") for r in runs)
  assert module.get_config("").data.dataset == "text_corpus"  # the paper config is unchanged


def test_evaluate_aggregates_seeds_with_rates_clipped_to_their_range():
  path = CONFIGS.parent / "experiments" / "phi1_5" / "evaluate.py"
  spec = importlib.util.spec_from_file_location("phi1_5_evaluate", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  runs = {f"arm=phi-1.5,seed={s}": {"test_pass@1": p, "train_templates_pass@1": 0.5,
                                   "prose_loss": loss, "prose_bits_per_byte": 1.0}
          for s, p, loss in ((0, 0.0, 5.0), (1, 0.0, 5.2), (2, 0.03, 5.4))}
  runs["arm=phi-1.5-web,seed=0"] = dict(runs["arm=phi-1.5,seed=0"])
  out = module.aggregate(runs)
  assert set(out) == {"phi-1.5", "phi-1.5-web"} and out["phi-1.5"]["seeds"] == 3
  rate = out["phi-1.5"]["test_pass@1"]
  assert rate["mean"] == pytest.approx(0.01) and rate["values"] == [0.0, 0.0, 0.03]
  assert rate["ci95_seeds"][0] == 0.0  # the unclipped t-interval starts at -0.033
  loss = out["phi-1.5"]["prose_loss"]  # losses are not clipped: 5.2 -/+ 4.303 * 0.2 / sqrt(3)
  assert loss["ci95_seeds"] == pytest.approx([5.2 - 0.4968, 5.2 + 0.4968], abs=1e-3)
  assert "| phi-1.5 | 3 | 1.0% [0.0%," in module.table(out)
