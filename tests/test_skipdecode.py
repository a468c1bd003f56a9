"""SkipDecode: schedules, the invariants of skip decoding, and the CALM early-exit baseline."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

from phi_jax.decoding import generate, generation, layouts
from phi_jax.decoding.early_exit import EarlyExit, confidence
from phi_jax.decoding.skipdecode import SkipSchedule, from_config
from phi_jax.models import Transformer, rotary

PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [3, 4, 5], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]]


# ---- schedules ------------------------------------------------------------------------------------


def test_linear_schedule_follows_the_formula():
  s = SkipSchedule(num_layers=16, max_layers=12, min_layers=4, warmup_layers=1, decay_len=9)
  # tau = t / 8; n = round(12 - 8 tau) = 12 - t for t <= 8, then 4.
  assert [s.n(t) for t in range(12)] == [12, 11, 10, 9, 8, 7, 6, 5, 4, 4, 4, 4]
  assert s.active(0) == (0, *range(5, 16))       # warm-up layer 0 + the top 11
  assert s.active(8) == (0, 13, 14, 15)
  assert len(s.active(3)) == s.n(3)
  np.testing.assert_array_equal(s.table(12).sum(1), [s.n(t) for t in range(12)])
  assert s.nominal_speedup(9) == pytest.approx(16 / np.mean([12, 11, 10, 9, 8, 7, 6, 5, 4]))
  assert s.static_upper == (5, 13)
  # Rounding is Python's round (half to even), the same on host and in jit.
  half = SkipSchedule(4, 4, 1, 0, 3)  # n = round(4 - 1.5 t): 4, round(2.5) = 2, 1
  assert [half.n(t) for t in range(3)] == [4, 2, 1]
  np.testing.assert_array_equal(np.asarray(half.first_upper_jnp(jnp.arange(5))), [0, 2, 3, 3, 3])


def test_active_sets_only_shrink_and_keep_the_top():
  for s in [SkipSchedule(12, 10, 3, 2, 20), SkipSchedule(12, 12, 2, 1, 7, shape="power", power=0.5)]:
    previous = set(range(12))
    for t in range(30):
      active = set(s.active(t))
      assert active <= previous
      assert 11 in active and set(range(s.warmup_layers)) <= active
      previous = active


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_layers=8, max_layers=3, min_layers=5), "not monotone"),
    (dict(num_layers=8, max_layers=9, min_layers=5), "exceeds num_layers"),
    (dict(num_layers=8, max_layers=6, min_layers=2, warmup_layers=2), "must exceed warmup"),
    (dict(num_layers=8, max_layers=6, min_layers=2, warmup_layers=-1), "warmup_layers must be"),
    (dict(num_layers=8, max_layers=6, min_layers=2, decay_len=0), "decay_len"),
    (dict(num_layers=8, max_layers=6, min_layers=2, shape="cosine"), "shape"),
    (dict(num_layers=8, max_layers=6.5, min_layers=2), "must be an int"),
])
def test_invalid_schedules_are_rejected(kwargs, match):
  with pytest.raises(ValueError, match=match):
    SkipSchedule(**kwargs)


@pytest.mark.parametrize("target", [2.0, 3.0, 5.0])
def test_for_speedup_hits_the_target(target):
  s = SkipSchedule.for_speedup(16, target, warmup_layers=1, decay_len=32)
  assert s.nominal_speedup(32) == pytest.approx(target, rel=0.1)
  assert s.max_layers > s.min_layers > s.warmup_layers
  with pytest.raises(ValueError, match="within 10%"):
    SkipSchedule.for_speedup(4, 5.0, warmup_layers=1, decay_len=8)


def test_from_config():
  import ml_collections
  assert from_config(None, 8) is None
  cfg = ml_collections.ConfigDict(dict(enabled=True, max_layers=6, min_layers=2, warmup_layers=1,
                                       decay_len=10, shape="linear"))
  assert from_config(cfg, 8) == SkipSchedule(8, 6, 2, 1, 10)
  target = from_config(ml_collections.ConfigDict(dict(target_speedup=2.0, decay_len=16)), 8)
  assert target.nominal_speedup(16) == pytest.approx(2.0, rel=0.1)
  with pytest.raises(ValueError, match="unknown fields"):
    from_config(ml_collections.ConfigDict(dict(max_layers=6, min_layers=2, bogus=1)), 8)


def test_training_mask_counts_from_the_target_start():
  s = SkipSchedule(4, 3, 2, 1, 4)
  # a row: 3 prompt tokens (index < 0), then targets t = 0..4, then padding (-1)
  target_index = jnp.array([[-3, -2, -1, 0, 1, 2, 3, 4, -1]])
  mask = np.asarray(s.layer_mask(target_index))
  assert mask.shape == (1, 9, 4)
  assert mask[0, :3].all() and mask[0, -1].all()
  np.testing.assert_array_equal(mask[0, 3:8], s.table(5))


# ---- decoding -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny-parallel", "tiny-serial"])
def test_a_schedule_that_skips_nothing_is_normal_decoding(name):
  cfg, params = tiny(name, num_layers=4)
  base = generate(cfg, params, PROMPTS, max_new_tokens=20)
  out, stats = generate(cfg, params, PROMPTS, max_new_tokens=20, skip=SkipSchedule.no_skip(4),
                        return_stats=True)
  assert out == base
  assert stats["layers_per_token"] == [4] * 20


def _teacher_forced_argmax(cfg, params, prompt, generated, schedule):
  """Greedy tokens the masked full forward pass predicts after each prompt/generated token."""
  seq = np.asarray(prompt + generated[:-1], np.int32)[None]
  target_index = np.arange(seq.shape[1]) - len(prompt)
  logits = Transformer(cfg).apply({"params": params}, seq,
                                  layer_mask=schedule.layer_mask(target_index[None]))
  return np.asarray(jnp.argmax(logits[0, len(prompt) - 1:], -1)).tolist()


@pytest.mark.parametrize("name,layout", [("tiny-parallel", "per_layer_t"),
                                         ("tiny-serial", "per_layer")])
def test_greedy_skip_decoding_equals_the_teacher_forced_masked_pass(name, layout):
  cfg, params = tiny(name, num_layers=4)
  schedule = SkipSchedule(4, max_layers=3, min_layers=2, warmup_layers=1, decay_len=6)
  out, stats = generate(cfg, params, PROMPTS, max_new_tokens=12, skip=schedule,
                        decode_layout=layout, return_stats=True)
  assert stats["layers_per_token"] == [4] + [schedule.n(t) for t in range(11)]
  for prompt, generated in zip(PROMPTS, out):  # ragged: 7, 3 and 11 prompt tokens
    assert len(generated) == 12
    assert _teacher_forced_argmax(cfg, params, prompt, generated, schedule) == generated
  # The skipping changed the output (else the test would not tell the two paths apart).
  assert out != generate(cfg, params, PROMPTS, max_new_tokens=12)


def test_skipped_layers_write_nothing_and_active_layers_find_every_earlier_position():
  cfg, params = tiny("tiny-parallel", num_layers=6)
  schedule = SkipSchedule(6, max_layers=5, min_layers=2, warmup_layers=1, decay_len=5)
  prompts = PROMPTS[:2]
  batch, prompt_len = 2, 16
  pads = [prompt_len - len(p) for p in prompts]
  new = 10
  _, steps, layers_used, cache = generation.prepare(
      cfg, params, prompts, max_new_tokens=new, decode_layout="per_layer", skip=schedule
  ).run(return_cache=True)
  assert int(steps) == new
  # per-layer head-major k: [B * K, S, Dh]; which slots hold an entry, per layer and row.
  assert isinstance(cache, layouts.PerLayerCache)
  written = np.stack([np.abs(np.asarray(kv.k)).reshape(batch, cfg.kv_heads, -1, cfg.dim_per_head)
                      .sum((1, 3)) > 0 for kv in cache.layers])  # [L, B, S]
  seg = np.asarray(cache.segment_ids)
  for layer in range(cfg.num_layers):
    for row in range(batch):
      real = slice(pads[row], prompt_len)
      assert written[layer, row, real].all()           # the prefill wrote every layer
      assert (seg[row, :pads[row]] == 0).all()  # padding: written by the prefill, never attended
      for t in range(new - 1):  # slot P + t holds g_t, processed at step t
        slot = prompt_len + t
        assert seg[row, slot] == 1
        assert written[layer, row, slot] == (layer in schedule.active(t)), (layer, t)
        if layer in schedule.active(t):  # it finds keys/values of every earlier position
          assert written[layer, row, pads[row]:slot].all()
      assert not written[layer, row, prompt_len + new - 1:].any()


def test_skip_decoding_compiles_once_per_bucket_and_samples():
  cfg, params = tiny("tiny-parallel", num_layers=4, seed=1)
  schedule = SkipSchedule(4, 3, 2, 1, 8)
  before = generation.compiled_programs()
  a = generate(cfg, params, PROMPTS, max_new_tokens=9, skip=schedule, temperature=0.8, top_k=20,
               rng=jax.random.key(1))
  b = generate(cfg, params, PROMPTS, max_new_tokens=13, skip=schedule, temperature=0.8, top_k=20,
               rng=jax.random.key(2))
  assert generation.compiled_programs() == before + 1  # 9 and 13 tokens share a bucket
  assert [len(x) for x in a] == [9] * 3 and [len(x) for x in b] == [13] * 3
  assert a != [x[:9] for x in b]  # different keys sample differently
  with pytest.raises(ValueError, match="SkipSchedule for this model"):
    generate(cfg, params, PROMPTS, max_new_tokens=4, skip=SkipSchedule(6, 3, 2, 1, 8))
  with pytest.raises(ValueError, match="per_layer"):
    generate(cfg, params, PROMPTS, max_new_tokens=4, skip=schedule, decode_layout="stacked")


# ---- the CALM baseline ------------------------------------------------------------------------------


def test_confidence_is_top1_minus_top2():
  logits = jnp.log(jnp.array([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]]))
  np.testing.assert_allclose(confidence(logits), [0.2, 0.85], atol=1e-6)


def test_early_exit_extremes_and_kv_propagation():
  cfg, params = tiny("tiny-serial", num_layers=4)
  base = generate(cfg, params, PROMPTS, max_new_tokens=12)
  never, stats = generate(cfg, params, PROMPTS, max_new_tokens=12, early_exit=EarlyExit(1.0),
                          return_stats=True)
  assert never == base and stats["mean_layers"] == 4
  # threshold 0: every token exits after the first exit point (layer 1 -> 2 layers run).
  out, stats = generate(cfg, params, PROMPTS, max_new_tokens=12,
                        early_exit=EarlyExit(0.0, exit_layers=(1, 2)), return_stats=True)
  assert stats["layers_per_token"] == [4] + [2] * 11
  # Layers 0-1 then run at every generated position, so the tokens after g_0 (which the
  # full-depth prefill makes) are the 2-layer model's (cut from the stack) greedy tokens.
  two = cfg.replace(num_layers=2)
  cut = {**params, "layers": jax.tree.map(lambda x: x[:2], params["layers"])}
  for prompt, generated in zip(PROMPTS, out):
    seq = np.asarray(prompt + generated[:-1], np.int32)[None]
    logits = Transformer(two).apply({"params": cut}, seq)
    assert np.asarray(jnp.argmax(logits[0, len(prompt):], -1)).tolist() == generated[1:]

  # The skipped layers' cache entries are their k/v projections of the exited (layer-1) state.
  from phi_jax.models.attention import attention_inputs
  from phi_jax.models.layers import Norm
  prompt = PROMPTS[0]
  new, _, _, cache = generation.prepare(
      cfg, params, [prompt], max_new_tokens=3, decode_layout="per_layer",
      early_exit=EarlyExit(0.0, exit_layers=(1,))).run(return_cache=True)
  g0 = int(new[0, 0])
  seq = np.asarray(prompt + [g0], np.int32)[None]
  hidden = Transformer(two).apply({"params": cut}, seq, return_hidden=True)[:, -1:]
  pos = jnp.array([[len(prompt)]], jnp.int32)
  ctx, _, _ = attention_inputs(cfg, pos, jnp.ones((1, 1), jnp.int32))
  for layer in (2, 3):
    lp = jax.tree.map(lambda x: x[layer], params["layers"])
    # written out here from the parameters (not with the model's pieces the step itself uses)
    h = Norm(cfg).apply({"params": lp["input_norm"]}, hidden)
    attn = lp["attn"]
    assert "bias" not in attn["k"]  # tiny-serial: no attention biases
    k = np.einsum("btd,dkh->btkh", h, attn["k"]["kernel"])
    v = np.einsum("btd,dkh->btkh", h, attn["v"]["kernel"])
    k = rotary.apply_rotary(jnp.asarray(k), ctx.cos, ctx.sin)
    slot = 16  # g_0's slot: the prompt bucket is 16
    got = cache.layers[layer]  # head-major [B * K, S, Dh]
    np.testing.assert_allclose(np.asarray(got.k)[:, slot], np.asarray(k)[0, 0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(got.v)[:, slot], v[0, 0], atol=1e-5)


def test_early_exit_waits_for_the_least_confident_row():
  cfg, params = tiny("tiny-parallel", num_layers=4, seed=3)
  _, single = generate(cfg, params, PROMPTS[:1], max_new_tokens=10,
                       early_exit=EarlyExit(0.02, exit_layers=(0, 1, 2)), return_stats=True)
  _, batched = generate(cfg, params, PROMPTS, max_new_tokens=10,
                        early_exit=EarlyExit(0.02, exit_layers=(0, 1, 2)), return_stats=True)
  # The batch runs at least as many layers per step as its first row alone.
  assert all(b >= s for b, s in zip(batched["layers_per_token"], single["layers_per_token"]))
  with pytest.raises(ValueError, match="not in"):
    generate(cfg, params, PROMPTS, max_new_tokens=4, early_exit=EarlyExit(0.5, exit_layers=(3,)))
