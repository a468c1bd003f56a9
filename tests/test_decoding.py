"""KV-cached decoding reproduces the full forward pass; generation, sampling and buckets."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

from phi_jax import decoding
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


@pytest.mark.parametrize("name,overrides", [
    ("tiny-parallel", {}), ("tiny-serial", {"sliding_window": 5}), ("tiny-small", {})])
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


# ---- decode weights: made once per (model, params), reused, never stale ------------------------


def test_decode_weights_are_reused_for_the_same_params_and_remade_for_new_ones():
  from phi_jax.decoding import weights as weights_lib
  cfg, params = tiny("tiny-parallel")
  prompts = [[5, 6, 7, 8], [3, 4]]
  weights_lib.clear_cache()
  first = weights_lib.cached_weights(cfg, params, layout="per_layer_t")
  assert weights_lib.cached_weights(cfg, params, layout="per_layer_t") is first  # reused
  assert weights_lib.cache_size() == 1
  out = generate(cfg, params, prompts, max_new_tokens=6, decode_layout="per_layer_t")
  assert weights_lib.cached_weights(cfg, params, layout="per_layer_t") is first

  # Updated params (new leaves, e.g. after a train step) give the new model's tokens, not the
  # cached copy's: the same as a fresh prepare_weights of them.
  updated = jax.tree_util.tree_map(lambda x: x * 1.5, params)
  new = generate(cfg, updated, prompts, max_new_tokens=6, decode_layout="per_layer_t")
  assert new != out
  assert new == generate(cfg, decoding.prepare_weights(cfg, updated, layout="per_layer_t"),
                         prompts, max_new_tokens=6)
  assert weights_lib.cached_weights(cfg, updated, layout="per_layer_t") is not first
  # One leaf replaced in place in the same dict: a new leaf, so new weights.
  tweaked = dict(updated, lm_head=dict(updated["lm_head"], bias=updated["lm_head"]["bias"] + 9.0))
  before = weights_lib.cached_weights(cfg, updated, layout="per_layer_t")
  assert weights_lib.cached_weights(cfg, tweaked, layout="per_layer_t") is not before

  # The cache holds no strong reference to the params and forgets them once they are freed.
  import gc
  del tweaked, updated
  gc.collect()
  assert weights_lib.cache_size() == 0
  # Numpy leaves (mutable in place) are never cached.
  host = jax.tree_util.tree_map(np.asarray, params)
  assert weights_lib.cached_weights(cfg, host) is not weights_lib.cached_weights(cfg, host)
  assert generate(cfg, host, prompts, max_new_tokens=6, decode_layout="per_layer_t") == out


@pytest.mark.parametrize("layout", generation.DECODE_LAYOUTS)
def test_prepared_weights_decode_like_params_and_bfloat16_runs_in_bfloat16(layout):
  cfg, params = tiny("tiny-serial")
  prompts = [[5, 6, 7, 8, 9], [3]]
  want = generate(cfg, params, prompts, max_new_tokens=8, decode_layout=layout)
  weights = decoding.prepare_weights(cfg, params, layout=layout)
  assert weights.layout == layout and weights.dtype is None
  assert generate(cfg, weights, prompts, max_new_tokens=8) == want
  bf16 = decoding.prepare_weights(cfg, params, layout=layout, dtype="bfloat16")
  dtypes = {x.dtype for x in jax.tree_util.tree_leaves(bf16)}
  assert dtypes == {jnp.dtype(jnp.bfloat16)}, dtypes
  assert bf16.decode_cfg(cfg).dtype == "bfloat16"
  program = generation.prepare(cfg, bf16, prompts, max_new_tokens=8)
  *_, cache = program.run(return_cache=True)
  kv = cache.k if layout == "stacked" else cache.layers[0].k
  assert kv.dtype == jnp.bfloat16  # the KV cache in the decode dtype
  out = generate(cfg, bf16, prompts, max_new_tokens=8)
  assert [len(r) for r in out] == [8, 8]
  assert generate(cfg, params, prompts, max_new_tokens=8, decode_layout=layout,
                  dtype="bfloat16") == out
  with pytest.raises(ValueError, match="decode_layout"):
    other = "stacked" if layout != "stacked" else "per_layer"
    generate(cfg, weights, prompts, max_new_tokens=2, decode_layout=other)
  with pytest.raises(ValueError, match="dtype"):
    generate(cfg, bf16, prompts, max_new_tokens=2, dtype="float32")
  with pytest.raises(ValueError, match="num_layers"):
    generate(cfg.replace(num_layers=3), weights, prompts, max_new_tokens=2)
  with pytest.raises(ValueError, match="floating"):
    decoding.prepare_weights(cfg, params, dtype="int8")


def test_ensure_weights_passes_decode_weights_through_and_prepares_params():
  cfg, params = tiny("tiny-serial")
  host = jax.tree_util.tree_map(np.asarray, params)  # loaded checkpoints are numpy
  bf16 = decoding.ensure_weights(cfg, host, layout="per_layer", dtype="bfloat16")
  assert isinstance(bf16, decoding.DecodeWeights)
  assert (bf16.layout, bf16.dtype) == ("per_layer", "bfloat16")
  assert {x.dtype for x in jax.tree_util.tree_leaves(bf16)} == {jnp.dtype(jnp.bfloat16)}
  assert decoding.ensure_weights(cfg, bf16) is bf16  # given weights: as they are
  assert decoding.ensure_weights(cfg, bf16, layout="per_layer", dtype=jnp.bfloat16) is bf16
  assert decoding.ensure_weights(cfg, host).dtype is None  # default: the params' own dtype
  with pytest.raises(ValueError, match="layout='stacked'"):
    decoding.ensure_weights(cfg, bf16, layout="stacked")
  with pytest.raises(ValueError, match="dtype='float32'"):
    decoding.ensure_weights(cfg, bf16, dtype="float32")
  with pytest.raises(ValueError, match="num_layers"):
    decoding.ensure_weights(cfg.replace(num_layers=3), bf16)


# ---- the blocked decode cache: attention over the filled blocks only ----------------------------


def _blocked_attention_case(cfg, sizes, index, length, pad_query, unfilled):
  """Keys/values of a cache with block `sizes`, filled before slot `index` (row 0 with 3 slots
  of left padding), `length` new entries written at `index` by HeadMajorKV and by BlockedKV;
  -> (both caches' [B * K, S, Dh] k and v, the two attention outputs [B, T, H, Dh])."""
  from phi_jax.models.attention import KVBlocks, attend, attention_inputs
  batch, slots, rows = 2, sum(sizes), 2 * cfg.kv_heads
  rng = np.random.RandomState(index + 7 * length)
  k_all, v_all = (rng.randn(rows, slots, cfg.dim_per_head).astype(np.float32) for _ in "kv")
  k_all[:, index:], v_all[:, index:] = 0.0, 0.0  # empty slots (never attended)
  ends = np.cumsum(sizes)
  after = ends[np.searchsorted(ends, index + length - 1, side="right")]  # the last query's block
  k_all[:, after:], v_all[:, after:] = unfilled, unfilled  # the blocks after it
  pad = np.array([3, 0])
  slot = np.arange(slots)[None]
  seg = ((slot >= pad[:, None]) & (slot < index)).astype(np.int32)
  pos = np.where(seg > 0, slot - pad[:, None], 0).astype(np.int32)
  new_pos = (index - pad[:, None] + np.arange(length)[None]).astype(np.int32)
  new_seg = np.ones((batch, length), np.int32)
  if pad_query:
    new_seg[1] = 0  # a query that sees no key: the mean of all S values
  new_k, new_v = (rng.randn(batch, length, cfg.kv_heads, cfg.dim_per_head).astype(np.float32)
                  for _ in "kv")
  q = rng.randn(batch, length, cfg.num_heads, cfg.dim_per_head).astype(np.float32)
  cuts = np.cumsum(sizes)[:-1]

  @jax.jit
  def run(index, k_all, v_all, q, new_k, new_v, layer_idx):
    meta = layouts.PerLayerCache((), jnp.asarray(pos), jnp.asarray(seg), index)
    ctx, _, _ = attention_inputs(cfg, jnp.asarray(new_pos), jnp.asarray(new_seg), meta)
    plain, keys, values = layouts.HeadMajorKV(k_all, v_all).update(0, new_k, new_v, index)
    want = attend(cfg, q, keys, values, ctx, layer_idx, "head_major", impl="xla")
    blocked = layouts.BlockedKV(tuple(jnp.split(k_all, cuts, axis=1)),
                                tuple(jnp.split(v_all, cuts, axis=1)))
    blocked, b_keys, b_values = blocked.update(0, new_k, new_v, index)
    assert isinstance(b_keys, KVBlocks) and b_keys.shape == keys.shape
    got = attend(cfg, q, b_keys, b_values, ctx, layer_idx, "head_major_blocks")
    merged = blocked.merged()
    return plain.k, plain.v, merged.k, merged.v, want, got

  return [run(jnp.int32(index), k_all, v_all, q, new_k, new_v, jnp.int32(layer))
          for layer in (0, 1)]  # tiny-small: layer 0 block-sparse, layer 1 dense


@pytest.mark.parametrize("name,overrides", [("tiny-serial", {}),  # GQA (4 heads, 2 kv heads)
                                            ("tiny-serial", {"sliding_window": 5}),
                                            ("tiny-small", {})])  # GQA + block-sparse layers
@pytest.mark.parametrize("index,length", [(7, 1), (8, 1), (11, 1), (13, 1), (19, 1), (11, 2),
                                          (6, 3)])
def test_attention_over_the_filled_blocks_equals_attention_over_the_whole_cache(
    name, overrides, index, length):
  """Blocks (8, 4, 4, 4): the new entries' slot at a block's first / last slot, inside one, at
  the last slot, and chunks of 2-3 queries across a block boundary. NaN in the slots after the
  written ones: attention over all slots would give NaN (0 x NaN in probs x V), over the filled
  blocks they are never read (empty slots of the last query's own block are zeros)."""
  cfg, _ = tiny(name, **overrides)
  assert cfg.kv_heads < cfg.num_heads
  for clean, nan in zip(_blocked_attention_case(cfg, (8, 4, 4, 4), index, length, False, 0.0),
                        _blocked_attention_case(cfg, (8, 4, 4, 4), index, length, False,
                                                np.nan)):
    plain_k, plain_v, blocked_k, blocked_v, want, got = map(np.asarray, clean)
    np.testing.assert_array_equal(blocked_k, plain_k)  # the same slots written
    np.testing.assert_array_equal(blocked_v, plain_v)
    assert np.isfinite(want).all()
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
    last_block_end = next(e for e in (8, 12, 16, 20) if e > index + length - 1)
    if last_block_end < 20:  # a block after the last query's is all NaN: never read
      assert np.isnan(np.asarray(nan[4])).any()  # (the whole cache reads it)
    np.testing.assert_allclose(np.asarray(nan[5]), want, atol=2e-6, rtol=1e-5)


def test_a_query_that_sees_no_key_gets_the_mean_of_all_values_as_in_xla():
  cfg, _ = tiny("tiny-serial")
  for case in _blocked_attention_case(cfg, (8, 4, 4, 4), 9, 1, True, 0.0):
    want, got = np.asarray(case[4]), np.asarray(case[5])
    np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
    mean = np.asarray(case[1]).mean(axis=1)  # [B * K, Dh]: row 1's kv heads
    np.testing.assert_allclose(got[1, 0].reshape(cfg.kv_heads, -1, cfg.dim_per_head)[:, 0],
                               mean[cfg.kv_heads:], atol=1e-6)


def test_decode_block_sizes():
  assert layouts.decode_block_sizes(32, 128) == (32, 32, 32, 32, 32)
  assert layouts.decode_block_sizes(16, 16) == (16, 16)
  assert layouts.decode_block_sizes(16, 100) == (16, 32, 32, 32, 4)
  assert layouts.decode_block_sizes(64, 1024) == (64,) + (128,) * 8  # at most 8 after the prompt


@pytest.mark.parametrize("name,overrides", [("tiny-serial", {"sliding_window": 5}),
                                            ("tiny-small", {})])
def test_blocked_decode_cache_gives_the_tokens_and_cache_of_the_unblocked_one(
    name, overrides, monkeypatch):
  """decode_block None (one buffer per layer), 32 and 4 (blocks of 4 slots: the steps cross
  block boundaries): the same greedy tokens, and the same cache at every attended slot."""
  cfg, params = tiny(name, **overrides)
  prompts = [[5, 6, 7, 8, 9, 10, 11], [3], list(range(1, 20))]
  outs, caches = {}, {}
  for block in (None, 32, 4):
    monkeypatch.setattr(layouts, "DECODE_BLOCK", block)
    program = generation.prepare(cfg, params, prompts, max_new_tokens=14,
                                 decode_layout="per_layer_t")
    assert program.static["decode_block"] == block
    new, steps, _, caches[block] = program.run(return_cache=True)
    outs[block] = np.asarray(new)[:len(prompts), :14].tolist()
  assert outs[None] == outs[32] == outs[4]
  assert outs[None] == generate(cfg, params, prompts, max_new_tokens=14, decode_layout="stacked")
  seg = np.asarray(caches[None].segment_ids)
  for block in (32, 4):
    np.testing.assert_array_equal(caches[block].segment_ids, seg)
    for want, got in zip(caches[None].layers, caches[block].layers):
      attended = np.repeat(seg != 0, cfg.kv_heads, axis=0)  # [B * K, S]
      np.testing.assert_allclose(np.asarray(got.k)[attended], np.asarray(want.k)[attended],
                                 atol=1e-5)
      np.testing.assert_allclose(np.asarray(got.v)[attended], np.asarray(want.v)[attended],
                                 atol=1e-5)
