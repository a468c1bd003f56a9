"""The phi-1 ablation's new code: the procedural textbook stand-in (phi_jax.curation.procedural_textbook),
the experiment's data and evaluation helpers (experiments/phi1/) and its config."""

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
  spec = importlib.util.spec_from_file_location(f"_phi1_{name}", REPO / "experiments" / "phi1" /
                                                f"{name}.py")
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


def test_prepare_data_mix(tmp_path):
  prep = _load("prepare_data")
  code, books = tmp_path / "code", tmp_path / "books"
  for folder, rows in ((code, [{"id": "a.py", "text": "x = 1\n" * 30}]),
                       (books, [{"id": "t0", "text": "Some prose.\n" * 10, "topic": "loops"}])):
    folder.mkdir()
    (folder / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  info = prep.mix(code, books, tmp_path / "mix")
  rows = [json.loads(line) for line in (tmp_path / "mix" / "records.jsonl").open()]
  assert [r["id"] for r in rows] == ["code:a.py", "textbook:t0"]
  assert rows[1]["topic"] == "loops" and rows[1]["source"] == "procedural_textbook"
  assert info["textbook_byte_fraction"] == pytest.approx(120 / (180 + 120))
  assert json.loads((tmp_path / "mix" / "mix.json").read_text()) == info


def test_evaluation_helpers():
  ev = _load("evaluate")
  completion = "    total = 0\n\n    return total\nprint(f(3))\ndef g():\n    pass\n"
  assert ev.function_body(completion) == "    total = 0\n\n    return total\n"
  assert ev.function_body("") == "\n"
  lo, hi = ev.wilson(0, 200)
  assert lo == 0.0 and 0.0 < hi < 0.03
  lo, hi = ev.wilson(50, 100)
  assert lo < 0.5 < hi and hi - 0.5 == pytest.approx(0.5 - lo)
  # A correct body passes, a wrong one fails: pass@1 through the sandbox.
  ex = procedural.generate(2, seed=0, split="test")
  result = procedural.evaluate_exercises(ex, [ev.function_body(ex[0].solution + "x = 1\n"),
                                              "    return None\n"], k=(1,))
  assert [p["passed"][0] for p in result["problems"]] == [True, False]


def test_config_variants():
  from phi_jax.config_args import parse_arg  # noqa: F401  (the config's dependency)
  from phi_jax.train import loop
  config = _load_config("stage=pretrain")
  cfg = loop.model_config(config, vocab_size=2048)
  assert (cfg.num_layers, cfg.d_model, cfg.vocab_size) == (4, 128, 2048)
  assert config.data.seq_len <= cfg.max_seq_len
  ft = _load_config("stage=finetune,tiny")
  assert ft.data.format == "prompt_completion" and ft.data.dataset == "synthetic_exercises"
  assert ft.model.name == "init"
  with pytest.raises(ValueError, match="stage"):
    _load_config("stage=eval")


def _load_config(arg: str):
  spec = importlib.util.spec_from_file_location("_phi1_ablation_config",
                                                REPO / "configs" / "phi1_ablation.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_decoding_modes_recover_the_body_of_their_encoding(tmp_path):
  """'target' decodes ids encoded like the prompt_completion pipeline's targets, 'joint' ids that
  continue the prompt's encoding: each gives back the reference body exactly."""
  from phi_jax.data import tokenizer as tokenizers
  ev = _load("evaluate")
  exercises = procedural.generate(40, seed=0, split="train")
  tok = tokenizers.train_sentencepiece([e.text for e in exercises], tmp_path / "sp",
                                       vocab_size=400)
  for ex in procedural.generate(5, seed=1, split="validation"):
    prompt = tok.encode(ex.prompt)
    target_ids = tok.encode(ex.solution)
    joint_ids = tok.encode(ex.prompt + ex.solution)
    assert joint_ids[:len(prompt)] == prompt
    assert ev.decode(tok, prompt, target_ids, "target") == ex.solution
    assert ev.decode(tok, prompt, joint_ids[len(prompt):], "joint") == ex.solution
