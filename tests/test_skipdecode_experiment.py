"""The SkipDecode experiment on the tiny coder (experiments/skipdecode/: evaluate.py, measures.py,
make_data.py, report.py; configs/skipdecode.py:coder): ROUGE-L and the interval statistics on
hand-computed cases, the measurements on a tiny random model, and the report on a result made by
the evaluation's own aggregation."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

from phi_jax.decoding import early_exit, generate
from phi_jax.decoding.early_exit import EarlyExit
from phi_jax.decoding.skipdecode import SkipSchedule
from phi_jax.models import Transformer
from phi_jax.config_args import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "experiments" / "skipdecode"


def _load(name: str):
  spec = importlib.util.spec_from_file_location(f"skipdecode_{name}", EXPERIMENT / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


ev = _load("evaluate")
make_data = _load("make_data")


# ---- ROUGE-L -------------------------------------------------------------------------------------


def test_code_tokens_split_words_and_punctuation_and_drop_whitespace():
  assert ev.code_tokens("    return x+1  # ok\n") == ["return", "x", "+", "1", "#", "ok"]
  assert ev.code_tokens("self.a_b[0] == 'é'") == ["self", ".", "a_b", "[", "0", "]", "=", "=",
                                                 "'", "é", "'"]
  assert ev.code_tokens(" \n\t") == []


def test_lcs_length_hand_cases():
  assert ev.lcs_length("ABCBDAB", "BDCABA") == 4  # e.g. BCBA (CLRS 15.4)
  assert ev.lcs_length("BDCABA", "ABCBDAB") == 4
  assert ev.lcs_length("abc", "abc") == 3
  assert ev.lcs_length("abc", "") == 0
  assert ev.lcs_length("abc", "xyz") == 0
  assert ev.lcs_length(["if", "x", ":"], ["x", "if", ":"]) == 2


def test_rouge_l_hand_computed():
  # candidate [a, b, c, d], reference [a, c, e]: LCS 2, P = 2/4, R = 2/3, F1 = 4/7
  assert ev.rouge_l("a b c d", "a c e") == pytest.approx(4 / 7)
  # candidate [x, =, 1], reference [x, =, 2, ;, y]: LCS 2, P = 2/3, R = 2/5, F1 = 1/2
  assert ev.rouge_l("x=1", "x = 2; y") == pytest.approx(0.5)
  assert ev.rouge_l("x = 1", "    x=1\n") == 1.0  # whitespace / indentation do not count
  assert ev.rouge_l("foo", "bar") == 0.0
  assert ev.rouge_l("", "return 1") == 0.0
  assert ev.rouge_l("", "  ") == 1.0
  assert ev.rouge_l("b a", "a b") == pytest.approx(0.5)  # order matters: LCS 1 of 2


# ---- CALM's confidence --------------------------------------------------------------------------


def test_argmax_confidence_equals_the_library_confidence():
  logits = 3 * jax.random.normal(jax.random.key(0), (4, 5, 37))
  logits = logits.at[0, 0, 3].set(9.0).at[0, 0, 7].set(9.0)  # a tie: confidence 0
  got = ev.argmax_confidence(logits)
  assert np.allclose(got, early_exit.confidence(logits), atol=1e-7)
  assert float(got[0, 0]) == 0.0
  with ev.calm_confidence("argmax"):
    assert early_exit.confidence is ev.argmax_confidence
  assert early_exit.confidence is not ev.argmax_confidence
  with pytest.raises(ValueError, match="argmax"):
    with ev.calm_confidence("sorted"):
      pass


# ---- the evaluation functions on a tiny random model ---------------------------------------------


class CharTokenizer:
  """Bytes as ids 4..259; eos 3."""
  eos_id = 3

  def encode(self, text: str) -> list[int]:
    return [b + 4 for b in text.encode()]

  def decode(self, ids) -> str:
    return bytes(i - 4 for i in ids if 4 <= i < 260).decode(errors="replace")


EXAMPLES = [{"prompt": "def f(x):\n  'doc'\n", "target": "  return x\n", "name": "f", "path": "a"},
            {"prompt": "def g():\n  'a longer docstring here'\n", "target": "  pass\n",
             "name": "g", "path": "b"},
            {"prompt": "def h(a, b):\n  'sum'\n", "target": "  c = a + b\n  return c\n",
             "name": "h", "path": "c"}]


@pytest.fixture(scope="module")
def model():
  return tiny("tiny-serial", num_layers=4, vocab_size=263)


def test_encode_keeps_the_tail_of_long_prompts_and_marks_targets():
  prompts, rows = ev.encode(CharTokenizer(), EXAMPLES, seq_len=40)
  assert prompts[0] == CharTokenizer().encode(EXAMPLES[0]["prompt"])
  assert prompts[1] == CharTokenizer().encode(EXAMPLES[1]["prompt"])[-20:]
  row = rows[0]
  start = len(prompts[0])
  assert row[start, 3] == 0 and row[start - 1, 3] == -1  # target_index: 0 at the first body token
  assert row[:, 2].sum() == len(EXAMPLES[0]["target"]) + 1  # every body byte + the EOS
  roomy, _ = ev.encode(CharTokenizer(), EXAMPLES, seq_len=40, prompt_room=100)
  assert roomy[1] == CharTokenizer().encode(EXAMPLES[1]["prompt"])  # whole: it fits the room


def _direct_loss(cfg, params, rows, schedule):
  """Per example, unpadded: -log p(target) summed over the loss mask / its size."""

  @jax.jit
  def nll(row):
    mask = None if schedule is None else schedule.layer_mask(row[None, :, 3])
    logits = Transformer(cfg).apply({"params": params}, row[None, :, 0], layer_mask=mask)
    logp = jax.nn.log_softmax(logits[0], -1)
    return -jnp.sum(jnp.take_along_axis(logp, row[:, 1, None], -1)[:, 0] * row[:, 2])

  return sum(float(nll(row)) for row in rows) / sum(float(row[:, 2].sum()) for row in rows)


def test_heldout_loss_is_the_masked_teacher_forced_loss(model):
  cfg, params = model
  _, rows = ev.encode(CharTokenizer(), EXAMPLES, seq_len=64)
  schedule = SkipSchedule(4, max_layers=3, min_layers=2, warmup_layers=1, decay_len=6)
  full = ev.heldout_loss(cfg, params, rows, None, batch_size=2)
  skipped = ev.heldout_loss(cfg, params, rows, schedule, batch_size=2)
  assert full["tokens"] == sum(int(r[:, 2].sum()) for r in rows)
  assert full["loss"] == pytest.approx(_direct_loss(cfg, params, rows, None), rel=1e-5)
  assert skipped["loss"] == pytest.approx(_direct_loss(cfg, params, rows, schedule), rel=1e-5)
  assert skipped["loss"] != pytest.approx(full["loss"], rel=1e-4)  # the mask is applied
  assert ev.heldout_loss(cfg, params, rows, SkipSchedule.no_skip(4), batch_size=4)["loss"] == \
      pytest.approx(full["loss"], rel=1e-5)


def test_generate_all_matches_generate_and_counts_layers(model):
  cfg, params = model
  examples = EXAMPLES + EXAMPLES[:1]  # two batches of two: one compiled program
  prompts, _ = ev.encode(CharTokenizer(), examples, seq_len=64)
  schedule = SkipSchedule(4, max_layers=3, min_layers=2, warmup_layers=1, decay_len=6)
  outputs, layers = ev.generate_all(cfg, params, prompts, max_new_tokens=10, eos_id=3,
                                    batch_size=2, skip=schedule)
  expected = []
  for start in (0, 2):
    out, stats = generate(cfg, params, prompts[start:start + 2], max_new_tokens=10, eos_id=3,
                          skip=schedule, return_stats=True)
    expected.append((out, stats["layers_per_token"]))
  assert outputs == [o[:-1] if o[-1:] == [3] else o for out, _ in expected for o in out]
  assert layers == pytest.approx(np.mean([n for _, per_token in expected for n in per_token]))
  assert 2 <= layers < 4


def test_function_bodies_cut_where_the_function_ends():
  tok = CharTokenizer()
  prompts = [tok.encode("def f(x):\n  'doc'\n")] * 4
  outputs = [tok.encode("    return x\n\ndef g():\n    pass\n"),   # a new def: cut
             tok.encode("    y = x\n    return y\nprint(f(1))\n"),  # column-0 code: cut
             tok.encode("    return 1\n") + [3] + tok.encode("junk"),  # EOS: cut
             tok.encode("  return x + 1")]                           # runs out: kept
  assert ev.function_bodies(tok, prompts, outputs, eos_id=3) == [
      "    return x\n", "    y = x\n    return y\n", "    return 1\n", "  return x + 1\n"]
  with pytest.raises(ValueError, match="3 generations for 4 prompts"):
    ev.function_bodies(tok, prompts, outputs[:3], eos_id=3)


def test_decode_times_reports_every_setting_and_the_layers_run(model):
  cfg, params = model
  rng = np.random.default_rng(0)
  prompts = [rng.integers(4, 263, n).tolist() for n in (5, 9)]
  schedule = SkipSchedule(4, max_layers=3, min_layers=2, warmup_layers=1, decay_len=4)
  with ev.calm_confidence("argmax"):
    times = ev.decode_times(cfg, {"skip": (params, schedule, None),
                                  "calm": (params, None, EarlyExit(0.0))},
                            prompts, new_tokens=6, out_len=16, reps=2, reference="skip")
  assert set(times) == {"skip", "calm"}
  assert times["skip"]["decode_layers"] == pytest.approx(np.mean(schedule.counts(5)))
  assert times["calm"]["decode_layers"] == 1.0  # threshold 0: every token exits after layer 0
  assert times["skip"]["speedup"] == 1.0  # the reference
  calm = times["calm"]
  assert calm["rounds"] + calm["dropped"] == 2
  if calm["rounds"]:
    assert calm["step_ms"] > 0 and calm["speedup_q25"] <= calm["speedup"] <= calm["speedup_q75"]
  with pytest.raises(ValueError, match="new_tokens"):
    ev.decode_times(cfg, {"skip": (params, schedule, None)}, prompts, new_tokens=1, out_len=16,
                    reps=1, reference="skip")
  with pytest.raises(ValueError, match="reference"):
    ev.decode_times(cfg, {"skip": (params, schedule, None)}, prompts, new_tokens=4, out_len=16,
                    reps=1, reference="full")


def test_decode_times_drops_rounds_that_measured_nothing(model, monkeypatch):
  import sys
  import time
  cfg, params = model
  schedule = SkipSchedule(4, max_layers=3, min_layers=2, warmup_layers=1, decay_len=4)

  given = []

  def fake_run(cfg_, params_, prompts, max_new, out_len, skip, early_exit, layout):
    given.append(params_)
    # 10 ms per token; CALM's one-token call stalls for longer than its whole call takes
    stall = early_exit is not None and max_new == 1
    time.sleep(0.3 if stall else 0.01 * max_new)
    return np.full(out_len, 4 if skip is None else 3)

  monkeypatch.setattr(sys.modules["measures"], "_run", fake_run)
  times = ev.decode_times(cfg, {"full": (params, None, None), "skip": (params, schedule, None),
                                "calm": (params, None, EarlyExit(0.0))},
                          [[5, 6]], new_tokens=6, out_len=8, reps=3, reference="full")
  assert times["calm"]["rounds"] == 0 and times["calm"]["dropped"] == 3
  assert np.isnan(times["calm"]["speedup"])
  assert times["skip"]["rounds"] == 3 and times["skip"]["dropped"] == 0
  assert np.isfinite(times["skip"]["speedup"]) and times["skip"]["step_ms"] > 0
  # every call decodes from weights made before the timing, one copy per setting (a shared
  # one-entry cache would re-make them inside timed calls when settings alternate)
  from phi_jax.decoding import DecodeWeights
  assert all(isinstance(w, DecodeWeights) for w in given)
  assert len({id(w) for w in given}) == 3


def test_sem():
  assert ev.sem([1.0, 2.0, 3.0, 4.0]) == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
  assert ev.sem([0.5]) == 0.0


def test_closest_matches_speed_by_ratio():
  entries = [{"name": "a", "measured_speedup": 1.5}, {"name": "b", "measured_speedup": 2.6},
             {"name": "c", "measured_speedup": 4.0}]
  assert ev.closest(entries, 2.0)["name"] == "b"  # 2.6 / 2 = 1.30 is closer than 2 / 1.5 = 1.33
  assert ev.closest(entries, 5.0)["name"] == "c"
  assert ev.closest([], 2.0) is None
  assert ev.closest([{"name": "nan", "measured_speedup": float("nan")}], 2.0) is None


# ---- statistics over problems and seeds -----------------------------------------------------


def test_paired_interval_hand_computed():
  # differences [1, 0, 0, -1, 1]: mean 0.2, sample sd sqrt(0.7), s.e. sqrt(0.7 / 5)
  mean, lo, hi = ev.paired_interval([1, 1, 0, 0, 1], [0, 1, 0, 1, 0])
  half = 1.96 * np.sqrt(0.7 / 5)
  assert (mean, lo, hi) == pytest.approx((0.2, 0.2 - half, 0.2 + half))
  assert ev.paired_interval([1, 0], [1, 0]) == (0.0, 0.0, 0.0)  # identical: no spread
  with pytest.raises(ValueError, match="equally long"):
    ev.paired_interval([1, 0], [1])


def _seed(passes, loss=None):
  return {"passes": passes, "loss": loss, "parse_rate": 0.5, "rouge_l": 0.25}


def test_aggregate_means_over_seeds_and_pairs_with_the_same_seed():
  ref = {0: _seed([1, 1, 0, 0], 1.0), 1: _seed([1, 0, 0, 0], 1.2)}
  setting = {0: _seed([1, 0, 0, 0], 1.5), 1: _seed([1, 0, 0, 0], 1.4)}
  out = ev.aggregate(setting, ref)
  assert out["seeds"] == [0, 1]
  assert out["pass@1_per_seed"] == [0.25, 0.25] and out["pass@1"] == 0.25
  assert out["seed_ci95"] == pytest.approx([0.25, 0.25])  # no spread across seeds
  assert out["pooled"] == [2, 8]
  assert out["pooled_ci95"] == pytest.approx(list(ev.functions.wilson(2, 8)))
  assert out["diff_per_seed"] == pytest.approx([-0.25, 0.0])
  assert out["diff_vs_1x"] == pytest.approx(-0.125)
  t = 12.7062047  # t(0.975, 1 degree of freedom)
  assert out["diff_seed_ci95"] == pytest.approx([-0.125 - t * 0.125, -0.125 + t * 0.125])
  # pooled pairs: one 1 -> 0 change in 8 problems
  assert out["diff_pooled"] == pytest.approx(-1 / 8)
  assert out["diff_pooled_ci95"] == pytest.approx(list(ev.paired_interval(
      [1, 0, 0, 0, 1, 0, 0, 0], [1, 1, 0, 0, 1, 0, 0, 0])[1:]))
  assert out["loss"] == pytest.approx(1.45)
  assert out["loss_diff_vs_1x"] == pytest.approx(0.35)  # (0.5 + 0.2) / 2
  calm = ev.aggregate({0: _seed([0, 0, 0, 0]), 1: _seed([1, 1, 1, 1])}, ref)
  assert calm["loss"] is None and calm["loss_diff_vs_1x"] is None
  assert calm["diff_per_seed"] == pytest.approx([-0.5, 0.75])
  with pytest.raises(ValueError, match="seeds"):
    ev.aggregate({0: _seed([1])}, ref)


# ---- one model under one setting ----------------------------------------------------------------


class _Problem:
  """A procedural-exercise-like problem (prompt, solution, program)."""

  def __init__(self, i, solution):
    self.id, self.family, self.solution = f"p{i}", "fam", solution
    self.prompt = f"def f{i}(x):\n  'doc'\n"

  def program(self, completion=None):
    body = self.solution if completion is None else completion
    return self.prompt + body + f"\nassert f{self.id[1:]}(2) == 3\n"


def test_score_setting_runs_bodies_against_their_asserts(model, monkeypatch):
  cfg, params = model
  tok = CharTokenizer()
  problems = {"validation": [_Problem(0, "  return x + 1\n"), _Problem(1, "  return x + 1\n")],
              "test": [_Problem(2, "  return x + 1\n")]}
  sets = {}
  for name, ps in problems.items():
    prompts, rows = ev.encode(tok, [{"prompt": p.prompt, "target": p.solution} for p in ps], 64)
    sets[name] = {"problems": ps, "prompts": prompts, "rows": rows}
  answers = ["  return x + 1\n", "  return x\n", "  return 3\n\ndef junk():\n"]
  calls = []

  def fake_generate_all(cfg_, params_, prompts, **kwargs):
    calls.append((len(prompts), kwargs["skip"], kwargs["early_exit"]))
    return [tok.encode(a) for a in answers], 3.5

  monkeypatch.setattr(ev, "generate_all", fake_generate_all)
  schedule = SkipSchedule(4, max_layers=3, min_layers=2, warmup_layers=1, decay_len=6)
  out = ev.score_setting(cfg, params, tok, sets, skip=schedule, early=None, max_new_tokens=8,
                         batch_size=2, workers=1)
  assert calls == [(3, schedule, None)]  # one pass over every set, in order
  assert out["mean_layers"] == 3.5
  v, t = out["sets"]["validation"], out["sets"]["test"]
  assert v["passes"] == [1, 0] and (v["passed"], v["n"]) == (1, 2)
  assert t["passes"] == [1] and t["bodies"] == ["  return 3\n"]  # cut at the new def
  assert v["rouge_l"] == pytest.approx((1.0 + ev.rouge_l("return x", "return x + 1")) / 2)
  assert v["loss"] == pytest.approx(
      ev.heldout_loss(cfg, params, sets["validation"]["rows"], schedule, batch_size=2)["loss"])
  calm = ev.score_setting(cfg, params, tok, sets, skip=None, early=EarlyExit(0.1),
                          max_new_tokens=8, batch_size=2, workers=1)
  assert calm["sets"]["validation"]["loss"] is None  # no teacher-forced loss for CALM
  assert calm["sets"]["validation"]["passes"] == [1, 0]


# ---- the data and the config ----------------------------------------------------------------


def test_median_target_tokens_counts_the_target_and_its_eos():
  tok = CharTokenizer()
  pairs = [("def f():\n", "  return 1\n"), ("def g():\n", "  pass\n"),
           ("def h():\n", "  return 12345\n")]
  assert make_data.median_target_tokens(tok, pairs) == len("  return 1\n") + 1
  with pytest.raises(ValueError, match="no .prompt, target. pairs"):
    make_data.median_target_tokens(tok, [])
  assert make_data.flags({"data.b": 2, "data.a": "x"}) == "--config.data.a=x --config.data.b=2"


def test_coder_variants():
  from phi_jax.decoding import skipdecode
  config = REPO / "configs" / "skipdecode.py"
  base = load_config(f"{config}:pretrain,coder")
  assert (base.model.name, base.model.num_layers, base.model.d_model) == ("phi-1", 12, 96)
  assert base.data.dataset == "synthetic_exercises" and base.data.format == "prompt_completion"
  assert base.total_steps * base.data.batch_size * base.data.seq_len == 2_867_200
  # the tiny coder's step forms; a fine-tune inherits the attention from the base's config
  assert (base.model.attention_impl, base.model.attention_block) == ("auto", 64)
  ft = load_config(f"{config}:finetune,coder,speedup=5,decay_len=37")
  assert ft.model.name == "init" and ft.data.format == "prompt_completion"
  assert base.loss_chunk_len == ft.loss_chunk_len == 64
  schedule = skipdecode.from_config(ft.skip, base.model.num_layers)
  assert schedule.decay_len == 37 and schedule.warmup_layers == 1
  assert schedule.nominal_speedup(37) == pytest.approx(5, rel=0.1)  # 5x is reachable at 12
  assert skipdecode.from_config(load_config(f"{config}:finetune,coder").skip, 12) is None
  with pytest.raises(ValueError, match="decay_len=N"):
    load_config(f"{config}:finetune,coder,speedup=2")
  with pytest.raises(ValueError, match="whole number"):
    load_config(f"{config}:finetune,coder,speedup=2,decay_len=4.5")
  tiny_base = load_config(f"{config}:pretrain,coder,tiny")
  assert tiny_base.model.num_layers == 12 and tiny_base.model.d_model <= 32
  # the previous (stdlib, docstring_code) variants are unchanged
  assert load_config(f"{config}:finetune,speedup=2").skip.decay_len == 64


# ---- report --------------------------------------------------------------------------------------


def _entry(name, kind, target, threshold, measured, layers, per_seed, ref):
  sets = {"validation": ev.aggregate(per_seed, ref), "test": ev.aggregate(per_seed, ref)}
  return {"name": name, "kind": kind, "target_speedup": target, "threshold": threshold,
          "nominal_speedup": 12 / layers, "measured_speedup": measured,
          "measured_speedup_iqr": [measured - 0.1, measured + 0.1], "mean_layers": layers,
          "sets": sets}


def test_report_table_and_plot(tmp_path):
  report = _load("report")
  ref = {0: _seed([1, 1, 0, 0], 1.0), 1: _seed([1, 0, 1, 0], 1.1)}
  skip2 = {0: _seed([1, 0, 0, 0], 1.2), 1: _seed([1, 0, 1, 0], 1.3)}
  calm = {0: _seed([0, 0, 0, 0]), 1: _seed([1, 0, 0, 0])}
  settings = [_entry("skipdecode 1x", "skipdecode", 1.0, None, 1.0, 12.0, ref, ref),
              _entry("skipdecode 2x", "skipdecode", 2.0, None, 1.8, 6.0, skip2, ref),
              _entry("schedule-only 2x", "schedule_only", 2.0, None, 1.8, 6.0, skip2, ref),
              _entry("calm 0.1", "calm", None, 0.1, 1.7, 7.0, calm, ref)]
  base = {"loss": 0.9, "pass@1": 0.5, "ci95": [0.2, 0.8], "passed": 2, "n": 4,
          "parse_rate": 1.0}
  result = {"task": "tinycoder", "settings": settings,
            "calm_at_matched_speed": {"2x": "calm 0.1"},
            "sets": {"validation": {"n": 4}, "test": {"n": 4}},
            "base": {"sets": {"validation": base, "test": base}},
            "model": {"num_layers": 12, "d_model": 96}, "args": {"batch_size": 16},
            "machine": {"device": "cpu: cpu"}}
  lines = report.table(result, "validation").splitlines()
  assert len(lines) == 2 + len(settings) + 1  # + the base row
  row = next(line for line in lines if line.startswith("| skipdecode 2x |"))
  # loss 1.25 (+0.200 over seeds: both seeds +0.2); pass@1 25% and 50%; pooled 3/8; paired
  # pooled difference -1/8 = -12.5 points
  assert "| 2.00x | 1.80x [1.70, 1.90] | 6.00 | 1.250 (+0.200 [+0.200, +0.200]) |" in row
  assert "37.5% [" in row and "(25.0, 50.0); 3/8 |" in row and "| -12.5 [" in row
  calm_row = next(line for line in lines if line.startswith("| calm 0.1 (closest to 2x) |"))
  assert "| n/a |" in calm_row and "(0.0, 25.0); 1/8 |" in calm_row
  assert "| (reference) |" in lines[2]
  assert lines[-1].startswith("| base (no fine-tune, one model) |") and "2/4" in lines[-1]
  assert [e["name"] for e in report.series(result, "schedule_only")] == ["skipdecode 1x",
                                                                         "schedule-only 2x"]
  path = tmp_path / "results.json"
  path.write_text(json.dumps(result))
  report.main(["report.py", str(path)])
  assert (tmp_path / "quality_vs_speed.png").stat().st_size > 1000
  old = tmp_path / "old" / "results.json"
  old.parent.mkdir()
  old.write_text(json.dumps({"settings": []}))
  with pytest.raises(SystemExit, match="not a tiny-coder results.json"):
    report.main(["report.py", str(old)])
