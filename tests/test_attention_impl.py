"""ModelConfig.attention_impl: every implementation against 'xla' on the CPU (where it runs).

'blockwise' runs here for real (forward and custom_vjp backward); the 'cudnn' wrapper runs with
jax.nn.dot_product_attention's 'xla' implementation in place of cuDNN (the same masks, padding
fix-up and fallbacks); 'splash' runs in Pallas' interpreter.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

from phi_jax.decoding.cache import init_cache
from phi_jax.models import Transformer, attention, attention_blockwise
from phi_jax.models.config import ModelConfig


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
  """Blocks smaller than the test sequences (and not dividing them): several blocks, a padded
  last one, and causal block skipping all run."""
  monkeypatch.setattr(attention, "BLOCKWISE_QUERY_BLOCK", 8)
  monkeypatch.setattr(attention, "BLOCKWISE_KEY_BLOCK", 16)


def _cfg(**overrides) -> ModelConfig:
  base = dict(vocab_size=64, d_model=64, num_layers=2, num_heads=4, num_kv_heads=4, mlp_dim=64)
  return ModelConfig(**{**base, **overrides}).validate()


def _qkv(cfg, batch, length, seed=0):
  rng = np.random.default_rng(seed)
  q = rng.normal(size=(batch, length, cfg.num_heads, cfg.dim_per_head))
  k = rng.normal(size=(batch, length, cfg.kv_heads, cfg.dim_per_head))
  v = rng.normal(size=(batch, length, cfg.kv_heads, cfg.dim_per_head))
  return tuple(jnp.asarray(x, jnp.float32) for x in (q, k, v))


def _packed(batch, length):
  """Row 0: 5 left-padding slots, then one document; row 1: two packed documents and 3 trailing
  padding slots (positions restart at 0 in each document)."""
  seg = np.ones((batch, length), np.int32)
  pos = np.tile(np.arange(length, dtype=np.int32), (batch, 1))
  seg[0, :5], pos[0, :5], pos[0, 5:] = 0, 0, np.arange(length - 5)
  cut = length // 2
  seg[1, cut:], pos[1, cut:] = 2, np.arange(length - cut)
  seg[1, -3:] = 0
  return jnp.asarray(pos), jnp.asarray(seg)


def _attend(cfg, impl, q, k, v, ctx, layer):
  out = attention.attend(cfg, q, k, v, ctx, jnp.int32(layer), impl=impl)
  return out, jnp.sum(jnp.sin(out) * out)


CASES = {
    "causal": (dict(), False),
    "packed_and_left_padding": (dict(), True),
    "sliding_window": (dict(sliding_window=7), True),
    "gqa": (dict(num_kv_heads=2), True),
    "gqa_mqa_window": (dict(num_kv_heads=1, sliding_window=5), True),
    "block_sparse": (dict(num_kv_heads=2, block_sparse=True, sparse_block_size=4,
                          sparse_local_blocks=2, sparse_vert_stride=2), True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_blockwise_matches_xla_forward_and_gradients(case):
  overrides, packed = CASES[case]
  cfg = _cfg(**overrides)
  batch, length = 2, 37
  q, k, v = _qkv(cfg, batch, length)
  if packed:
    pos, seg = _packed(batch, length)
  else:
    pos = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
    seg = jnp.ones((batch, length), jnp.int32)
  ctx, _, _ = attention.attention_inputs(cfg, pos, seg)
  layers = (0, 1) if cfg.block_sparse else (0,)  # a sparse and a dense layer

  @jax.jit
  def both(q, k, v, layer):
    def run(impl):
      return jax.value_and_grad(lambda *a: _attend(cfg, impl, *a, ctx, layer)[::-1],
                                argnums=(0, 1, 2), has_aux=True)(q, k, v)
    return run("xla"), run("blockwise")

  outs = {}
  for layer in layers:
    ((_, ref), ref_grads), ((_, got), got_grads) = both(q, k, v, jnp.int32(layer))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(got_grads, ref_grads):
      np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
    outs[layer] = np.asarray(got)
  if cfg.block_sparse:  # the pattern matters: sparse and dense layers differ
    assert not np.allclose(outs[0], outs[1], atol=1e-3)
  if packed:
    # Padding queries (segment 0) see no key: both give the mean of all S values.
    mean_v = np.repeat(np.asarray(v).mean(axis=1), cfg.num_heads // cfg.kv_heads, axis=1)
    np.testing.assert_allclose(outs[0][0, :5],
                               np.broadcast_to(mean_v[0], (5, *mean_v.shape[1:])),
                               rtol=1e-5, atol=1e-6)
    # The second document of row 1 does not see the first one.
    k2 = k.at[1, :length // 2].set(0.0)
    moved = np.asarray(both(q, k2, v, jnp.int32(0))[1][0][1])
    np.testing.assert_array_equal(moved[1, length // 2:-3], outs[0][1, length // 2:-3])


def _dense_dropout_reference(st, q, k, v, mask, key):
  """Dense attention with the very keep-mask the kernel draws block by block."""
  batch, length, kv_heads, groups, _ = q.shape
  slots = k.shape[1]
  bq, nq = attention_blockwise._blocks(length, st.query_block)
  bk, nk = attention_blockwise._blocks(slots, st.key_block)
  keep = jnp.concatenate([
      jnp.concatenate([attention_blockwise._keep(st, key, i, j, (batch, kv_heads, groups, bq, bk))
                       for j in range(nk)], axis=-1) for i in range(nq)], axis=-2)
  keep = keep[..., :length, :slots]
  s = jnp.einsum("btkgd,bskd->bkgts", q, k) * st.scale
  p = jax.nn.softmax(jnp.where(mask, s, attention.MASK_VALUE), axis=-1)
  p = jnp.where(keep, p / (1 - st.dropout_rate), 0.0)
  return jnp.einsum("bkgts,bskd->btkgd", p, v), keep


def test_blockwise_dropout_is_per_block_with_the_right_gradient():
  batch, length, kv_heads, groups, dim = 2, 21, 2, 2, 8
  rng = np.random.default_rng(1)
  q = jnp.asarray(rng.normal(size=(batch, length, kv_heads, groups, dim)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(batch, length, kv_heads, dim)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(batch, length, kv_heads, dim)), jnp.float32)
  st = attention_blockwise.BlockwiseSettings(scale=0.3, query_block=8, key_block=8,
                                             dropout_rate=0.4)
  slots = jnp.arange(length, dtype=jnp.int32)
  causal = (slots[None, :] <= slots[:, None])[None, None, None]

  def mask_fn(args, qi, ki):
    del args
    return (ki[None, :] <= qi[:, None])[None, None, None]

  key = jax.random.key(3)

  def run(q, k, v):
    out = attention_blockwise.blockwise_attention(q, k, v, mask_fn, (), (slots, slots), st, key)
    return jnp.sum(jnp.sin(out) * out), out

  def ref(q, k, v):
    out, _ = _dense_dropout_reference(st, q, k, v, causal, jax.random.key_data(key))
    return jnp.sum(jnp.sin(out) * out), out

  (_, got), got_g = jax.jit(jax.value_and_grad(run, argnums=(0, 1, 2), has_aux=True))(q, k, v)
  (_, want), want_g = jax.jit(jax.value_and_grad(ref, argnums=(0, 1, 2), has_aux=True))(q, k, v)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  for g, w in zip(got_g, want_g):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
  _, keep = _dense_dropout_reference(st, q, k, v, causal, jax.random.key_data(key))
  assert 0.5 < float(jnp.mean(keep)) < 0.7  # kept with probability 1 - 0.4
  no_drop = attention_blockwise.blockwise_attention(
      q, k, v, mask_fn, (), (slots, slots), attention_blockwise.BlockwiseSettings(0.3, 8, 8))
  assert not np.allclose(got, no_drop, atol=1e-2)


def _loss(cfg, params, tokens, positions, segment_ids, rng=None):
  logits = Transformer(cfg).apply({"params": params}, tokens, positions, segment_ids,
                                  deterministic=rng is None,
                                  rngs=None if rng is None else {"dropout": rng})
  return jnp.mean(jax.nn.log_softmax(logits)[..., 0] * (segment_ids != 0)), logits


@pytest.mark.parametrize("preset", ["tiny-parallel", "tiny-small"])
def test_model_forward_and_gradient_blockwise_equals_xla(preset):
  cfg, params = tiny(preset, sliding_window=11 if preset == "tiny-parallel" else None)
  batch, length = 2, 30
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, length)),
                       jnp.int32)
  positions, segment_ids = _packed(batch, length)
  results = {}
  # 'auto' with attention_block 8 on CPU: blockwise in blocks of 8 (4 query blocks, skipping)
  for name, c in (("xla", cfg.replace(attention_impl="xla")),
                  ("blockwise", cfg.replace(attention_impl="blockwise")),
                  ("auto_block8", cfg.replace(attention_impl="auto", attention_block=8))):
    (_, logits), grads = jax.jit(jax.value_and_grad(_loss, argnums=1, has_aux=True),
                                 static_argnums=0)(c, params, tokens, positions, segment_ids)
    results[name] = logits, grads
  assert attention.resolve_impl(cfg.replace(attention_impl="auto", attention_block=8), length,
                                length) == "blockwise"
  for name in ("blockwise", "auto_block8"):
    np.testing.assert_allclose(results[name][0], results["xla"][0], rtol=1e-4, atol=1e-4)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-5),
                 results[name][1], results["xla"][1])


def test_model_with_attention_dropout_trains_blockwise():
  cfg, params = tiny("tiny-parallel", attn_dropout=0.3, attention_impl="blockwise")
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 24)), jnp.int32)
  positions, segment_ids = _packed(2, 24)
  grad = jax.jit(jax.value_and_grad(
      lambda p, r: _loss(cfg, p, tokens, positions, segment_ids, r), has_aux=True))
  leaf = lambda g: np.asarray(g["layers"]["attn"]["q"]["kernel"])  # noqa: E731
  (_, drop), g1 = grad(params, jax.random.key(0))
  (_, drop2), g2 = grad(params, jax.random.key(0))
  (_, drop3), g3 = grad(params, jax.random.key(1))
  np.testing.assert_array_equal(leaf(g1), leaf(g2))  # the same key, the same masks
  np.testing.assert_array_equal(drop, drop2)
  assert np.all(np.isfinite(leaf(g1))) and not np.allclose(leaf(g1), leaf(g3))
  assert not np.allclose(drop, drop3, atol=1e-3)


@pytest.mark.parametrize("preset", ["tiny-serial", "tiny-small"])
def test_prefill_and_decode_with_the_kv_cache(preset):
  cfg, params = tiny(preset)
  rng = np.random.default_rng(2)
  prompt = jnp.asarray(rng.integers(0, cfg.vocab_size, (2, 13)), jnp.int32)
  steps = jnp.asarray(rng.integers(0, cfg.vocab_size, (2, 3)), jnp.int32)
  seg = jnp.ones((2, 13), jnp.int32).at[0, :4].set(0)  # row 0 left-padded
  pos = jnp.maximum(jnp.cumsum(seg, axis=1) - 1, 0)
  outputs = {}
  for impl in ("xla", "blockwise"):
    model = Transformer(cfg.replace(attention_impl=impl))
    apply = jax.jit(lambda *a, cache: model.apply({"params": params}, *a, cache=cache))
    logits, cache = apply(prompt, pos, seg, cache=init_cache(cfg, 2, 24))
    seen = [logits]
    for t in range(steps.shape[1]):
      step_pos = pos[:, -1:] + 1 + t
      logits, cache = apply(steps[:, t:t + 1], step_pos, jnp.ones((2, 1), jnp.int32), cache=cache)
      seen.append(logits)
    outputs[impl] = jnp.concatenate(seen, axis=1)
  np.testing.assert_allclose(outputs["blockwise"], outputs["xla"], rtol=1e-4, atol=1e-4)


def test_head_major_keys_blockwise_equals_xla():
  cfg = _cfg(num_kv_heads=2)
  q, k, v = _qkv(cfg, 2, 9)
  pos, seg = _packed(2, 9)
  ctx, _, _ = attention.attention_inputs(cfg, pos, seg)
  head_major = [jnp.swapaxes(x, 1, 2).reshape(4, 9, cfg.dim_per_head) for x in (k, v)]
  ref = attention.attend(cfg, q, k, v, ctx, jnp.int32(0), impl="xla")
  got = attention.attend(cfg, q, *head_major, ctx, jnp.int32(0), "head_major", impl="blockwise")
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_cudnn_wrapper_honours_segment_ids_and_falls_back():
  """The cuDNN path's own code (mask, GQA layout, padding fix-up) with the SDPA 'xla' kernel."""
  cfg = _cfg(num_kv_heads=2, sliding_window=9, dtype="bfloat16")
  batch, length = 2, 32
  q, k, v = (x.astype(jnp.bfloat16) for x in _qkv(cfg, batch, length))
  pos, seg = _packed(batch, length)
  ctx, _, _ = attention.attention_inputs(cfg, pos, seg)
  q5 = q.reshape(batch, length, 2, 2, cfg.dim_per_head)
  assert attention._cudnn_unsupported(cfg, q5, k, ctx, 0.0) is None
  got = attention._attend_cudnn(cfg, q5, k, v, ctx, jnp.int32(0), 0.0, None,
                                sdpa_implementation="xla").reshape(q.shape)
  ref = attention.attend(cfg, q, k, v, ctx, jnp.int32(0), impl="xla")
  np.testing.assert_allclose(got.astype(np.float32), ref.astype(np.float32), atol=3e-2)
  # Without the segment ids the second document of row 1 would see the first: not so here.
  ones = jnp.ones_like(seg)
  ctx_one, _, _ = attention.attention_inputs(cfg, jnp.broadcast_to(jnp.arange(length), pos.shape),
                                             ones)
  unpacked = attention._attend_cudnn(cfg, q5, k, v, ctx_one, jnp.int32(0), 0.0, None,
                                     sdpa_implementation="xla").reshape(q.shape)
  assert not np.allclose(unpacked[1, 20:28].astype(np.float32),
                         got[1, 20:28].astype(np.float32), atol=3e-2)
  # What cuDNN cannot do goes to blockwise (float32 here), which is exact.
  cfg32 = cfg.replace(dtype="float32")
  q32, k32, v32 = _qkv(cfg32, batch, length)
  assert "float32" in attention._cudnn_unsupported(cfg32, q32.reshape(q5.shape), k32, ctx, 0.0)
  np.testing.assert_allclose(
      attention.attend(cfg32, q32, k32, v32, ctx, jnp.int32(0), impl="cudnn"),
      attention.attend(cfg32, q32, k32, v32, ctx, jnp.int32(0), impl="xla"), atol=1e-5)
  # ... but the fused path itself refuses a CPU, saying what to do.
  with pytest.raises(ValueError, match="needs an NVIDIA GPU.*'auto' or 'blockwise'"):
    attention.attend(cfg, q, k, v, ctx, jnp.int32(0), impl="cudnn")


def test_splash_in_the_pallas_interpreter_matches_xla():
  cfg = _cfg(num_kv_heads=2, sliding_window=50)
  batch, length = 1, 128  # splash's block size
  q, k, v = _qkv(cfg, batch, length)
  pos, seg = _packed(2, length)
  pos, seg = pos[:1], seg[:1].at[0, 70:].set(2)
  pos = pos.at[0, 70:].set(jnp.arange(length - 70))
  ctx, _, _ = attention.attention_inputs(cfg, pos, seg)
  q5 = q.reshape(batch, length, 2, 2, cfg.dim_per_head)
  got = attention._attend_splash(cfg, q5, k, v, ctx, jnp.int32(0), 0.0, None, interpret=True)
  ref = attention.attend(cfg, q, k, v, ctx, jnp.int32(0), impl="xla")
  np.testing.assert_allclose(got.reshape(q.shape), ref, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="needs a TPU"):
    attention.attend(cfg, q, k, v, ctx, jnp.int32(0), impl="splash")


def test_auto_rule_and_config_validation():
  cfg = _cfg(attention_impl="auto")
  assert attention.resolve_impl(cfg, 1, 4096, backend="cpu") == "xla"  # a decode step
  assert attention.resolve_impl(cfg, 1024, 1024, backend="cpu") == "xla"
  assert attention.resolve_impl(cfg, 2048, 2048, backend="cpu") == "blockwise"
  assert attention.resolve_impl(cfg, 2048, 2048, backend="tpu") == "splash"
  assert attention.resolve_impl(cfg.replace(attention_impl="xla"), 4096, 4096) == "xla"
  blocked = cfg.replace(attention_block=64)  # CPU: every call with > 1 block of queries
  assert attention.resolve_impl(blocked, 256, 256, backend="cpu") == "blockwise"
  assert attention.resolve_impl(blocked, 64, 512, backend="cpu") == "xla"
  assert attention.resolve_impl(blocked, 1, 512, backend="cpu") == "xla"  # a decode step
  assert attention.resolve_impl(blocked, 256, 256, backend="gpu") == "xla"
  with pytest.raises(ValueError, match="attention_block: must be >= 1"):
    _cfg(attention_block=-1)
  with pytest.raises(ValueError, match="attention_impl: 'flash' is not one of"):
    _cfg(attention_impl="flash")
  # The paper configs say which implementation they use.
  from phi_jax.config_args import load_config
  for name in ("configs/phi1.py", "configs/phi1_5.py", "configs/phi3.py"):
    assert load_config(name, []).model.attention_impl == "auto"
