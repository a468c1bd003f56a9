"""The phi-1 ablation: the procedural textbook stand-in (phi_jax.curation.procedural_textbook), the
experiment's config (configs/phi1_ablation.py: stages, arms, sweeps), its data helpers
(experiments/phi1/prepare_data.py), the held-out exercise loss's tokenization (evaluate.py) and
the across-seed aggregation (report.py)."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

from phi_jax.data import builders
from phi_jax.curation import procedural, synthetic
from phi_jax.curation import procedural_textbook as pt

REPO = pathlib.Path(__file__).resolve().parents[1]


def _load(name: str):
  path = (REPO / "configs" / "phi1_ablation.py" if name == "config" else
          REPO / "experiments" / "phi1" / f"{name}.py")
  spec = importlib.util.spec_from_file_location(f"_phi1_{name}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _answers(seed: int, prompts):
  return pt.ProceduralTextbookTeacher(seed=seed).complete([p.prompt for p in prompts],
                                                          max_tokens=100, temperature=0.0)


def test_tables_cover_the_synthetic_axes_and_only_train_families():
  assert set(synthetic.CODE_TOPICS) <= set(pt.CONCEPTS)
  assert set(pt.TOPIC_FAMILIES) <= set(synthetic.CODE_TOPICS)
  for families in pt.TOPIC_FAMILIES.values():
    assert families and not set(families) & set(procedural.HELDOUT_FAMILIES)
    procedural.check_split("train", families)  # raises for a family outside the train split
  assert all(pt.layout_for(style) in pt.LAYOUTS for style in synthetic.STYLES)


def test_parse_prompt_round_trips_textbook_prompts():
  for p in synthetic.textbook_prompts(60, seed=5):
    parsed = pt.parse_prompt(p.prompt)
    assert parsed == {k: p.meta[k] for k in ("topic", "audience", "style", "domain", "extra",
                                             "words")}
  assert pt.parse_prompt("Tell me about sorting.") == {}


def test_deterministic_and_seeded():
  prompts = synthetic.textbook_prompts(6, seed=1)
  a, b = _answers(0, prompts), _answers(0, prompts)
  assert a == b
  assert _answers(1, prompts) != a  # another teacher seed draws other worked examples
  assert _answers(0, prompts[:3]) == a[:3]  # each answer depends on its own prompt only


def test_diverse_readable_and_valid():
  prompts = synthetic.textbook_prompts(40, seed=0)
  texts = _answers(0, prompts)
  assert len(set(texts)) == len(texts)
  layouts = set()
  for p, text in zip(prompts, texts):
    synthetic.check_textbook(text)  # long enough, every ```python block parses
    assert p.meta["audience"] in text and p.meta["domain"] in text
    assert "```python\ndef " in text
    layouts.add(pt.layout_for(p.meta["style"]))
    if pt.layout_for(p.meta["style"]) == "dialogue":
      assert "Student:" in text and "Teacher:" in text
    if "complexity" in p.meta["extra"]:
      assert "O(" in text
  assert layouts == set(pt.LAYOUTS)
  # Length follows the requested words: 800-word prompts carry more worked examples.
  longs = [t for p, t in zip(prompts, texts) if p.meta["words"] == 800]
  shorts = [t for p, t in zip(prompts, texts) if p.meta["words"] == 300]
  assert longs and shorts
  assert min(t.count("```python\ndef ") for t in longs) > max(
      t.count("```python\ndef ") for t in shorts if "exercise" not in t.lower())


def test_worked_examples_come_from_the_train_split_only():
  held_out_names = set()
  for ex in procedural.generate(150, seed=0, split="test"):
    held_out_names.add(ex.entry_point)
  for i, p in enumerate(synthetic.textbook_prompts(80, seed=2)):
    text, exercises = pt.write_textbook(pt.parse_prompt(p.prompt), seed=i)
    assert exercises
    for ex in exercises:
      assert ex.family not in procedural.HELDOUT_FAMILIES
      assert ex.split == "train"  # not a validation variant
      assert ex.prompt + ex.solution in text
      assert ex.family in pt.TOPIC_FAMILIES.get(p.meta["topic"], pt.TRAIN_FAMILIES)


def test_any_prompt_gets_a_textbook_and_stop_strings_cut():
  teacher = pt.ProceduralTextbookTeacher(seed=3)
  text = teacher.complete(["Write about anything."], max_tokens=10, temperature=0.0)[0]
  synthetic.check_textbook(text)
  cut = teacher.complete(["Write about anything."], max_tokens=10, temperature=0.0,
                         stop=["```"])[0]
  assert cut == text[:text.index("```")]
  with pytest.raises(TypeError):
    teacher.complete("a string", max_tokens=10, temperature=0.0)
  with pytest.raises(ValueError):
    teacher.complete(["x"], max_tokens=0, temperature=0.0)


def test_generate_textbooks_builds_a_readable_dataset(tmp_path):
  teacher = pt.ProceduralTextbookTeacher(seed=0)
  stats = synthetic.generate_textbooks(teacher, 12, seed=0, out_dir=tmp_path / "tb")
  assert stats.kept == 12 and not stats.rejected and stats.teacher == "procedural_textbook:train"
  builder = builders.build(stats.dataset, stats.data_dir, **stats.builder_kwargs)
  rows = [r for split in ("train", "validation") for r in builder.as_data_source(split)]
  assert len(rows) == 12
  for row in rows:
    assert row["text"].decode("utf-8").count("```python") >= 1
    assert row["topic"].decode("utf-8") in synthetic.CODE_TOPICS
    assert row["teacher"] == b"procedural_textbook:train"



# ---- the experiment ------------------------------------------------------------------------------

def test_config_stages_arms_and_sweeps(tmp_path):
  """pretrain: a study of the three arms (one model, tokenizer and token budget; only the data
  differs); finetune: a plain run from a base model on the exercises; the sweeps cover every
  arm x seed, each fine-tune starting from its own seed's base model."""
  from phi_jax.config_args import load_config
  from phi_jax.study import arms
  cfg = _load("config")
  spec = f"{REPO / 'configs' / 'phi1_ablation.py'}:stage={{}},root={tmp_path}"
  pre, fine = load_config(spec.format("pretrain")), load_config(spec.format("finetune"))
  p = cfg.paths(str(tmp_path))
  assert sorted(arms.check(pre)) == sorted(cfg.ARMS)
  built = {name: arms.arm_config(pre, name, p["tokenizer"], {}) for name in cfg.ARMS}
  for c in built.values():  # same model, steps, rows and tokenizer in every arm
    assert c.model == built["unfiltered"].model and c.total_steps == pre.total_steps
    assert (c.data.seq_len, c.data.batch_size) == (256, 16)
    assert c.data.tokenizer == p["tokenizer"] and c.data.format == "lm"
  assert built["unfiltered"].data.dataset == "code_corpus"
  assert built["unfiltered"].data.validation_fraction == cfg.CODE_VALIDATION_FRACTION
  assert built["filtered"].data.source_dir == p["filtered_dataset"]
  assert built["textbook"].data.source_dir == p["code_textbook"]
  assert (pre.model.d_model, pre.model.num_layers, pre.model.tie_embeddings) == (96, 4, True)
  assert fine.model.name == "init" and fine.data.format == "prompt_completion"
  assert fine.data.source_dir == p["exercises_dataset"] and fine.data.tokenizer == p["tokenizer"]
  assert fine.study == pre.study and pre.study.humaneval_limit == 0
  assert load_config(spec.format("embedder")).data.tokenizer == ""  # before the shared one
  assert cfg.sweep(f"stage=pretrain,root={tmp_path}") == [{"seed": s} for s in (0, 1, 2)]
  runs = cfg.sweep(f"stage=finetune,root={tmp_path}")
  assert len(runs) == 9 and len({r["init_from"] for r in runs}) == 9
  for r in runs:
    base = pathlib.Path(r["init_from"])
    assert base.parent == pathlib.Path(p["pretrain"]) / f"seed={r['seed']}"
    assert base.name in cfg.ARMS
  assert len(cfg.sweep(f"stage=finetune,root={tmp_path},tiny")) == 3 * len(cfg.TINY_SEEDS)
  models = _load("evaluate").models(str(tmp_path), tiny=True)  # what evaluate/report measure
  cells = {(m["stage"], m["arm"], m["seed"]) for m in models}
  assert cells == {(s, a, seed) for s in ("pretrain", "finetune") for a in cfg.ARMS
                   for seed in cfg.TINY_SEEDS}
  for m in models:
    if m["stage"] == "finetune":
      assert m["init_from"] == f"{p['pretrain']}/seed={m['seed']}/{m['arm']}"
      assert pathlib.Path(m["workdir"]).parent == pathlib.Path(p["finetune"])
  with pytest.raises(ValueError, match="stage"):
    cfg.get_config("stage=eval")


def test_textbook_sections_are_mixed_back_whole(tmp_path):
  """The mixture stores a section cut into prompt/target pieces (shuffled); the textbook arm
  trains on each section whole, pieces in order."""
  import random
  from phi_jax.curation import mixture
  prep = _load("prepare_data")
  sections = [pt.write_textbook({}, seed=k)[0] for k in range(3)]
  pieces = [{"id": f"textbook-{k}-{j}", "text": a + b, "prompt": a, "target": b,
             "kind": "textbook", "split_key": f"textbook-{k}"}
            for k, text in enumerate(sections)
            for j, (a, b) in enumerate(mixture.textbook_pieces(text))]
  assert len(pieces) > 3  # the sections were cut
  random.Random(0).shuffle(pieces)
  whole = prep.whole_sections(pieces)
  assert [w["id"] for w in whole] == ["textbook-0", "textbook-1", "textbook-2"]
  assert [w["text"].rstrip("\n") for w in whole] == [t.rstrip("\n") for t in sections]
  with pytest.raises(ValueError, match="not a textbook piece"):
    prep.whole_sections([dict(pieces[0], kind="exercise")])
  code, books = tmp_path / "code", tmp_path / "books"
  for folder, rows in ((code, [{"id": "a.py", "text": "x = 1\n" * 30}]), (books, pieces)):
    folder.mkdir()
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  info = prep.mix(code, books, tmp_path / "mix")
  rows = [json.loads(line) for line in (tmp_path / "mix" / "records.jsonl").open()]
  assert [r["id"] for r in rows] == ["code:a.py"] + [f"textbook:textbook-{k}" for k in range(3)]
  assert rows[1]["source"] == "procedural_textbook" and info["textbook_documents"] == 3
  assert info["textbook_byte_fraction"] == pytest.approx(
      info["textbook_bytes"] / (180 + info["textbook_bytes"]))


def test_split_checks_find_heldout_exercises_in_training_data(tmp_path):
  prep = _load("prepare_data")
  p = {"heldout": str(tmp_path)}
  held = {split: procedural.generate(4, seed=2024, split=split) for split in ("validation", "test")}
  for split, items in held.items():
    (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(
        {"id": ex.id, "text": ex.text, "prompt": ex.prompt, "family": ex.family,
         "key": ex.key}) + "\n" for ex in items))
  train = procedural.generate(20, seed=0, split="train")
  clean = {"code": ["x = 1\n"], "exercises": [ex.text for ex in train]}
  rows = [{"family": ex.family, "split_key": ex.key} for ex in train]
  out = prep.split_checks(p, clean, rows)
  assert out["heldout_exercises"] == 8 and out["prompts_found_verbatim"] == {"code": 0,
                                                                            "exercises": 0}
  assert out["exercise_records_with_heldout_key"] == 0
  assert out["exercise_records_of_heldout_families"] == 0
  leaked = held["validation"][0]
  dirty = {"code": ["# a file\n" + leaked.text], "exercises": clean["exercises"]}
  rows += [{"family": leaked.family, "split_key": leaked.key},
           {"family": held["test"][0].family, "split_key": "x"}]
  out = prep.split_checks(p, dirty, rows)
  assert out["prompts_found_verbatim"] == {"code": 1, "exercises": 0}
  assert out["exercise_records_with_heldout_key"] == 1
  assert out["exercise_records_of_heldout_families"] == 1


def test_exercise_loss_scores_what_the_finetune_trains_on(tmp_path, monkeypatch):
  """The held-out exercise loss scores exactly the tokens the prompt_completion pipeline trains
  the body on (the body's ids from the joint encoding, then EOS)."""
  import numpy as np
  from phi_jax.data import pipeline
  from phi_jax.data import tokenizer as tokenizers
  from phi_jax.evals import scoring
  ev = _load("evaluate")
  tok = tokenizers.train_sentencepiece([e.text for e in procedural.generate(40, seed=0)],
                                       tmp_path / "sp", vocab_size=400)
  items = procedural.generate(5, seed=1, split="validation")
  seen = {}

  def fake(cfg, params, seqs, starts, batch_size=8):
    seen["seqs"], seen["starts"] = seqs, starts
    counts = [len(s) - st for s, st in zip(seqs, starts)]
    return -np.ones(len(seqs)) * np.array(counts), np.array(counts)

  monkeypatch.setattr(scoring, "sequence_logprobs", fake)
  assert ev.exercise_loss(None, None, tok, items) == pytest.approx(1.0)
  tokenize = pipeline.TokenizeExample(tok, seq_len=512)
  for ex, seq, start in zip(items, seen["seqs"], seen["starts"]):
    tokens = tokenize.map({"prompt": ex.prompt, "target": ex.solution})["tokens"]
    assert list(tokens[:, 0]) == seq  # the same ids ...
    scored = [i for i in range(1, len(seq)) if i >= start]
    trained = [i + 1 for i in np.flatnonzero(tokens[:, 2])]  # loss_mask: predicting ids[i + 1]
    assert scored == trained  # ... and the same targets


def _rows(pass_rates: dict, losses: dict) -> list:
  rows = []
  for (stage, arm), rates in pass_rates.items():
    for seed, rate in enumerate(rates):
      passed = round(rate * 100)
      rows.append({"stage": stage, "arm": arm, "seed": seed, "num_params": 1000,
                   "sets": {"validation": {"pass@1": passed / 100, "passed": passed, "n": 100,
                                           "parse_rate": 0.9},
                            "test": {"pass@1": 0.0, "passed": 0, "n": 100, "parse_rate": 0.5}},
                   "losses": {"stdlib": losses[(stage, arm)][seed],
                              "exercise_validation": 1.0, "exercise_test": 2.0,
                              "own_eval_loss": 3.0}})
  return rows


def test_report_aggregates_seeds_and_tests_the_ordering(tmp_path):
  rep = _load("report")
  from phi_jax.evals.functions import seed_interval, wilson
  rates = {("pretrain", "unfiltered"): [0.0, 0.0, 0.0], ("pretrain", "filtered"): [0.0, 0.01, 0.0],
           ("pretrain", "textbook"): [0.02, 0.05, 0.03],
           ("finetune", "unfiltered"): [0.10, 0.12, 0.08],
           ("finetune", "filtered"): [0.11, 0.08, 0.12],    # not beyond the noise
           ("finetune", "textbook"): [0.30, 0.33, 0.31]}    # holds
  losses = {k: [4.0, 4.1, 4.05] for k in rates}
  losses[("pretrain", "filtered")] = [3.5, 3.6, 3.55]        # lower: holds for a loss
  agg = rep.aggregate(_rows(rates, losses))
  cell = agg["cells"]["finetune"]["textbook"]["validation"]
  mean, lo, hi = seed_interval([0.30, 0.33, 0.31])
  assert cell["mean"] == pytest.approx(mean) and cell["seed_ci95"] == pytest.approx([lo, hi])
  assert (cell["passed"], cell["n"]) == (94, 300)
  assert cell["pooled_wilson95"] == pytest.approx(list(wilson(94, 300)))
  d = agg["differences"]["finetune"]["validation"]
  assert d["textbook-filtered"]["holds"] and d["textbook-unfiltered"]["holds"]
  assert not d["filtered-unfiltered"]["holds"] and not d["filtered-unfiltered"]["reversed"]
  assert d["filtered-unfiltered"]["per_seed"] == pytest.approx([0.01, -0.04, 0.04])
  assert d["filtered-unfiltered"]["seeds_in_direction"] == 2
  zero = agg["differences"]["pretrain"]["test"]["textbook-filtered"]  # 0 everywhere: no claim
  assert not zero["holds"] and not zero["reversed"]
  loss = agg["differences"]["pretrain"]["stdlib"]
  assert loss["filtered-unfiltered"]["holds"] and loss["textbook-filtered"]["reversed"]
  assert "own_eval_loss" not in agg["differences"]["pretrain"]  # not comparable across arms
  assert agg["finetune_gains"]["textbook"]["validation"]["holds"]
  results = {"aggregate": agg, "num_params": 1000,
             "tokens": {"pretrain_per_arm": 10, "finetune_per_arm": 5}}
  text = rep.markdown(results)
  assert "**holds**" in text and "**reversed**" in text and "not beyond noise" in text
  assert "pooled 94/300" in text
  rep.figure(results, tmp_path / "fig.png")
  assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  with pytest.raises(SystemExit, match="missing"):
    rep.aggregate(_rows(rates, losses)[1:])
