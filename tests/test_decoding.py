"""KV-cached decoding reproduces the full forward pass; generation, sampling and buckets."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

from phi_jax.decoding import generate, init_cache
from phi_jax.decoding import generation, layouts, sampling
from phi_jax.models import Transformer

CASES = [
    ("tiny-parallel", {}),
    ("tiny-serial", {}),
    ("tiny-serial", {"sliding_window": 5}),
    ("tiny-small", {}),
    ("tiny-longrope", {}),
]


@functools.lru_cache(maxsize=None)
def _fns(cfg):
  model = Transformer(cfg)
  full = jax.jit(lambda p, t, pos, seg, lr: model.apply(
      {"params": p}, t, positions=pos, segment_ids=seg, long_rope=lr))
  step = jax.jit(lambda p, t, pos, seg, c, lr: model.apply(
      {"params": p}, t, positions=pos, segment_ids=seg, cache=c, long_rope=lr))
  return full, step


def _padded_batch(rng, vocab, lengths, total):
  """Left-padded [B, total] tokens, segment ids and positions for rows of real `lengths`."""
  batch = len(lengths)
  tokens = rng.randint(0, vocab, (batch, total)).astype(np.int32)
  slots = np.arange(total)[None]
  pads = total - np.asarray(lengths)[:, None]
  seg = (slots >= pads).astype(np.int32)
  pos = np.maximum(slots - pads, 0).astype(np.int32)
  return tokens, seg, pos


@pytest.mark.parametrize("name,overrides", CASES)
def test_incremental_decoding_matches_full_forward(name, overrides):
  cfg, params = tiny(name, **overrides)
  full, step = _fns(cfg)
  rng = np.random.RandomState(0)
  total, prefill = 24, 14
  tokens, seg, pos = _padded_batch(rng, cfg.vocab_size, [24, 17, 9], total)
  long = jnp.bool_(False)
  ref = np.asarray(full(params, tokens, pos, seg, long))

  cache = init_cache(cfg, 3, 32)
  logits, cache = step(params, tokens[:, :prefill], pos[:, :prefill], seg[:, :prefill], cache, long)
  outs = [np.asarray(logits)]
  for t in range(prefill, total):  # one token at a time, then a chunk of two
    logits, cache = step(params, tokens[:, t:t + 1], pos[:, t:t + 1], seg[:, t:t + 1], cache, long)
    outs.append(np.asarray(logits))
  inc = np.concatenate(outs, axis=1)
  real = seg.astype(bool)
  np.testing.assert_allclose(inc[real], ref[real], atol=1e-5, rtol=0)
  assert int(cache.index) == total


def test_sliding_window_changes_logits_beyond_window():
  cfg, params = tiny("tiny-serial", sliding_window=4)
  cfg_full = cfg.replace(sliding_window=None)
  tokens = np.random.RandomState(1).randint(0, cfg.vocab_size, (1, 12)).astype(np.int32)
  windowed = Transformer(cfg).apply({"params": params}, tokens)
  unlimited = Transformer(cfg_full).apply({"params": params}, tokens)
  np.testing.assert_allclose(windowed[:, :4], unlimited[:, :4], atol=1e-6)
  assert np.abs(np.asarray(windowed[:, 4:] - unlimited[:, 4:])).max() > 1e-4


def _greedy_reference(cfg, params, prompt, n, width=32):
  """Greedy continuation by re-running the full forward pass on a fixed-width (right-padded,
  causal so unaffected) buffer: one compilation."""
  full, _ = _fns(cfg)
  seq = list(prompt)
  pos = np.arange(width, dtype=np.int32)[None]
  for _ in range(n):
    t = np.zeros((1, width), np.int32)
    t[0, :len(seq)] = seq
    logits = full(params, t, pos, np.ones_like(t), jnp.bool_(False))
    seq.append(int(np.argmax(logits[0, len(seq) - 1])))
  return seq[len(prompt):]


@pytest.mark.parametrize("name,overrides", CASES[:4])
def test_greedy_generate_matches_full_forward_argmax(name, overrides):
  cfg, params = tiny(name, **overrides)
  prompts = [[5, 6, 7, 8, 9, 10, 11], [3], [20, 21, 22, 23]]
  out = generate(cfg, params, prompts, max_new_tokens=10)
  for prompt, got in zip(prompts, out):
    assert got == _greedy_reference(cfg, params, prompt, 10)


def test_eos_stops_each_row_and_is_included():
  cfg, params = tiny("tiny-parallel")
  prompts = [[1, 2, 3], [4, 5, 6, 7]]
  free = generate(cfg, params, prompts, max_new_tokens=12)
  eos = free[0][3]
  out = generate(cfg, params, prompts, max_new_tokens=12, eos_id=eos)
  assert out[0] == free[0][:free[0].index(eos) + 1]
  expected1 = free[1][:free[1].index(eos) + 1] if eos in free[1] else free[1]
  assert out[1] == expected1


def test_no_recompilation_within_a_bucket():
  cfg, params = tiny("tiny-serial")
  generate(cfg, params, [[1, 2, 3]], max_new_tokens=5)
  before = generation.compiled_programs()
  generate(cfg, params, [[1, 2, 3, 4, 5, 6, 7, 8, 9]], max_new_tokens=9)  # same buckets
  generate(cfg, params, [[4]], max_new_tokens=16)
  generate(cfg, params, [[4, 5]], max_new_tokens=3, temperature=0.7, top_k=3, top_p=0.9)
  generate(cfg, params, [[4, 5]], max_new_tokens=3, temperature=1.3, top_k=9, top_p=0.5)
  assert generation.compiled_programs() == before + 1  # only the sampling mode added one
  generate(cfg, params, [[1] * 17], max_new_tokens=5)  # a longer prompt bucket
  assert generation.compiled_programs() == before + 2


def test_sampling_is_seeded_and_respects_top_k():
  cfg, params = tiny("tiny-parallel")
  prompts = [[1, 2, 3], [9, 8]]
  kwargs = dict(max_new_tokens=8, temperature=1.0)
  a = generate(cfg, params, prompts, rng=jax.random.key(3), **kwargs)
  b = generate(cfg, params, prompts, rng=jax.random.key(3), **kwargs)
  c = generate(cfg, params, prompts, rng=jax.random.key(4), **kwargs)
  assert a == b and a != c
  # top_k=1 at any temperature is greedy.
  assert generate(cfg, params, prompts, max_new_tokens=8, temperature=2.0, top_k=1) == \
      generate(cfg, params, prompts, max_new_tokens=8)


def test_top_k_and_top_p_filters():
  logits = jnp.log(jnp.asarray([[0.5, 0.2, 0.15, 0.1, 0.05]], jnp.float32))
  kept_k = np.isfinite(np.asarray(sampling.top_k_filter(logits, jnp.int32(2))))
  assert kept_k.tolist() == [[True, True, False, False, False]]
  kept_p = np.isfinite(np.asarray(sampling.top_p_filter(logits, jnp.float32(0.8))))
  assert kept_p.tolist() == [[True, True, True, False, False]]  # 0.5 + 0.2 < 0.8 <= 0.85
  kept_p = np.isfinite(np.asarray(sampling.top_p_filter(logits, jnp.float32(0.3))))
  assert kept_p.tolist() == [[True, False, False, False, False]]
  draws = [int(sampling.sample(logits, jax.random.key(i), sampling.SamplingMode(False, True, False),
                               sampling.SamplingParams(jnp.float32(1), jnp.int32(2),
                                                       jnp.float32(1)))[0]) for i in range(40)]
  assert set(draws) == {0, 1}


@pytest.mark.parametrize("bad,match", [
    (dict(prompts=[]), "non-empty"),
    (dict(prompts=[[1, 2], []]), "prompt 1 is empty"),
    (dict(prompts=[[1, 10_000]]), "outside"),
    (dict(prompts=[[1] * 120], max_new_tokens=20), "max_seq_len=128"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(temperature=-1.0), "temperature"),
    (dict(temperature=1.0, top_p=1.5), "top_p"),
])
def test_bad_generation_input_is_rejected(bad, match):
  cfg, params = tiny("tiny-parallel")
  kwargs = dict(prompts=[[1, 2, 3]], max_new_tokens=4)
  kwargs.update(bad)
  with pytest.raises(ValueError, match=match):
    generate(cfg, params, kwargs.pop("prompts"), **kwargs)


@pytest.mark.parametrize("name,overrides", [("tiny-parallel", {}), ("tiny-serial", {"sliding_window": 5}),
                                            ("tiny-small", {})])
def test_decode_layouts_give_identical_tokens(name, overrides):
  """The stacked (scanned) decode loop and the per-layer (optionally transposed) ones agree."""
  cfg, params = tiny(name, **overrides)
  prompts = [[5, 6, 7, 8, 9, 10, 11], [3], [20, 21, 22, 23]]
  outs = {layout: generate(cfg, params, prompts, max_new_tokens=12, decode_layout=layout)
          for layout in generation.DECODE_LAYOUTS}
  assert outs["per_layer"] == outs["stacked"] == outs["per_layer_t"]
  with pytest.raises(ValueError, match="decode_layout"):
    generate(cfg, params, prompts, max_new_tokens=2, decode_layout="diagonal")


@pytest.mark.parametrize("name", ["tiny-serial", "tiny-small"])  # GQA; tied + block-sparse
def test_a_per_layer_decode_step_is_the_stacked_models_step(name):
  """layouts.decode_step on per-layer weights (both kernel layouts) and the head-major cache gives
  the logits of the scanned model's cached step, and writes the same keys/values."""
  cfg, params = tiny(name)
  _, step = _fns(cfg)
  tokens, seg, pos = _padded_batch(np.random.RandomState(1), cfg.vocab_size, [9, 5], 10)
  cache = init_cache(cfg, 2, 16)
  long = jnp.bool_(False)
  _, cache = step(params, tokens[:, :9], pos[:, :9], seg[:, :9], cache, long)
  want, want_cache = step(params, tokens[:, 9:], pos[:, 9:], seg[:, 9:], cache, long)
  per_layer = layouts.per_layer_cache(cache)
  assert isinstance(per_layer.layers[0], layouts.HeadMajorKV)
  np.testing.assert_array_equal(  # layer 1's keys, head-major [B * K, S, Dh]
      per_layer.layers[1].k, np.swapaxes(np.asarray(cache.k[1]), 1, 2).reshape(
          2 * cfg.kv_heads, 16, cfg.dim_per_head))
  for kernel_layout in ("in_out", "out_in"):
    weights = layouts.per_layer_params(params, kernel_layout)
    assert ("kernel_t" in weights.layers[0]["attn"]["q"]) == (kernel_layout == "out_in")
    logits, new = jax.jit(layouts.decode_step, static_argnums=0)(
        cfg, weights, jnp.asarray(tokens[:, 9]), jnp.asarray(pos[:, 9:]), per_layer, long)
    np.testing.assert_allclose(logits, np.asarray(want)[:, -1], atol=2e-5)
    assert int(new.index) == 10
    np.testing.assert_array_equal(new.segment_ids, want_cache.segment_ids)
    for layer in range(cfg.num_layers):
      np.testing.assert_allclose(new.layers[layer].v, layouts.per_layer_cache(want_cache)
                                 .layers[layer].v, atol=1e-6)
  with pytest.raises(ValueError, match="kernel_layout"):
    layouts.per_layer_params(params, "transposed")
