"""The SkipDecode experiment's evaluation (experiments/skipdecode/evaluate.py, report.py): ROUGE-L
on hand-computed cases, and the evaluation functions on a tiny random model."""

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

EXPERIMENT = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "skipdecode"


def _load(name: str):
  spec = importlib.util.spec_from_file_location(f"skipdecode_{name}", EXPERIMENT / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


ev = _load("evaluate")


# ---- ROUGE-L ----------------------------------------------------------------------------------------


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


# ---- the evaluation functions on a tiny random model ------------------------------------------------


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
  scores, texts = ev.rouge_scores(CharTokenizer(), outputs, [ex["target"] for ex in examples])
  assert len(texts) == 4 and texts[0] == CharTokenizer().decode(outputs[0])
  assert scores == [ev.rouge_l(CharTokenizer().decode(o), ex["target"])
                    for o, ex in zip(outputs, examples)]


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
  assert calm["step_ms"] > 0 and calm["speedup_q25"] <= calm["speedup"] <= calm["speedup_q75"]
  with pytest.raises(ValueError, match="new_tokens"):
    ev.decode_times(cfg, {"skip": (params, schedule, None)}, prompts, new_tokens=1, out_len=16,
                    reps=1, reference="skip")
  with pytest.raises(ValueError, match="reference"):
    ev.decode_times(cfg, {"skip": (params, schedule, None)}, prompts, new_tokens=4, out_len=16,
                    reps=1, reference="full")


def test_sem():
  assert ev.sem([1.0, 2.0, 3.0, 4.0]) == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
  assert ev.sem([0.5]) == 0.0


def test_closest_matches_speed_by_ratio():
  entries = [{"name": "a", "measured_speedup": 1.5}, {"name": "b", "measured_speedup": 2.6},
             {"name": "c", "measured_speedup": 4.0}]
  assert ev.closest(entries, 2.0)["name"] == "b"  # 2.6 / 2 = 1.30 is closer than 2 / 1.5 = 1.33
  assert ev.closest(entries, 5.0)["name"] == "c"
  assert ev.closest([], 2.0) is None


# ---- report ---------------------------------------------------------------------------------------


def test_report_table_and_plot(tmp_path):
  report = _load("report")
  settings = [
      {"name": "skipdecode 1x", "kind": "skipdecode", "target_speedup": 1.0, "threshold": None,
       "nominal_speedup": 1.0, "measured_speedup": 1.0, "measured_speedup_iqr": [1.0, 1.0],
       "mean_layers": 12.0, "loss": 1.5, "rouge_l": 0.3},
      {"name": "skipdecode 2x", "kind": "skipdecode", "target_speedup": 2.0, "threshold": None,
       "nominal_speedup": 2.0, "measured_speedup": 1.8, "measured_speedup_iqr": [1.7, 1.9],
       "mean_layers": 6.2, "loss": 1.7, "rouge_l": 0.25},
      {"name": "schedule-only 2x", "kind": "schedule_only", "target_speedup": 2.0,
       "threshold": None, "nominal_speedup": 2.0, "measured_speedup": 1.8,
       "measured_speedup_iqr": [1.7, 1.9], "mean_layers": 6.2, "loss": 3.0, "rouge_l": 0.1},
      {"name": "calm 0.1", "kind": "calm", "target_speedup": None, "threshold": 0.1,
       "nominal_speedup": 2.2, "measured_speedup": 1.7, "measured_speedup_iqr": [1.6, 1.8],
       "mean_layers": 5.5, "loss": None, "rouge_l": 0.2, "rouge_l_sem": 0.01,
       "rouge_l_diff_vs_1x": -0.1, "rouge_l_diff_sem": 0.02}]
  result = {"settings": settings, "calm_at_matched_speed": {"2x": "calm 0.1"},
            "model": {"num_layers": 12, "d_model": 96}, "examples": {"count": 4},
            "args": {"batch_size": 16}, "machine": {"device": "cpu: cpu"}}
  table = report.table(result)
  lines = table.splitlines()
  assert len(lines) == 2 + len(settings)
  assert ("| calm 0.1 (closest to 2x) | 2.20x | 1.70x [1.60, 1.80] | 5.50 | n/a | "
          "0.200 ± 0.010 (-0.100 ± 0.020) |") in lines
  assert "| skipdecode 2x | 2.00x | 1.80x [1.70, 1.90] | 6.20 | 1.700 | 0.250 |" in lines
  assert [e["name"] for e in report.series(result, "schedule_only")] == ["skipdecode 1x",
                                                                         "schedule-only 2x"]
  path = tmp_path / "results.json"
  path.write_text(json.dumps(result))
  report.main(["report.py", str(path)])
  assert (tmp_path / "quality_vs_speed.png").stat().st_size > 1000
