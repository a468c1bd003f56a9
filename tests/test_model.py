"""The Transformer's semantics: layer masks, packing, dropout, remat, dtypes, logical axes, and the
phi-3-small pieces (block-sparse pattern, GEGELU, muP) against the definitions in MODELS.md."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny

from phi_jax.models import Transformer, rotary
from phi_jax.models import transformer
from phi_jax.models.attention import attention_inputs, block_sparse_mask
from phi_jax.models.layers import Dense, gegelu


@functools.partial(jax.jit, static_argnames=("cfg", "deterministic"))
def _apply(cfg, params, tokens, positions, segment_ids, layer_mask, long_rope, deterministic, rng):
  rngs = None if rng is None else {"dropout": rng}
  return Transformer(cfg).apply({"params": params}, tokens, positions=positions,
                                segment_ids=segment_ids, layer_mask=layer_mask,
                                long_rope=long_rope, deterministic=deterministic, rngs=rngs)


def apply(cfg, params, tokens, positions=None, segment_ids=None, layer_mask=None, long_rope=None,
          deterministic=True, rngs=None):
  """Transformer.apply, jitted (one compilation per config and input structure)."""
  return _apply(cfg, params, jnp.asarray(tokens), positions, segment_ids, layer_mask,
                None if long_rope is None else jnp.bool_(long_rope), deterministic,
                None if rngs is None else rngs["dropout"])


def _tokens(cfg, batch=2, length=16, seed=0):
  return np.random.RandomState(seed).randint(0, cfg.vocab_size, (batch, length)).astype(np.int32)


def _drop_layer(params, layer):
  keep = [i for i in range(jax.tree.leaves(params["layers"])[0].shape[0]) if i != layer]
  return {**params, "layers": jax.tree.map(lambda x: x[np.asarray(keep)], params["layers"])}


@pytest.mark.parametrize("name", ["tiny-parallel", "tiny-serial"])
def test_layer_mask_false_makes_the_layer_the_identity(name):
  cfg, params = tiny(name, num_layers=3)
  tokens = _tokens(cfg)
  full = apply(cfg, params, tokens)
  np.testing.assert_array_equal(apply(cfg, params, tokens, layer_mask=np.ones((16, 3), bool)), full)
  # Layer 1 off everywhere == the model with layer 1 sliced out of the stack.
  mask = np.ones((16, 3), bool)
  mask[:, 1] = False
  without = apply(cfg.replace(num_layers=2), _drop_layer(params, 1), tokens)
  np.testing.assert_allclose(apply(cfg, params, tokens, layer_mask=mask), without, atol=1e-5)
  # Per-row, per-position [B, T, L]: row 0 skips layer 1 from position 8 on, row 1 runs all.
  mask3 = np.ones((2, 16, 3), bool)
  mask3[0, 8:, 1] = False
  out = np.asarray(apply(cfg, params, tokens, layer_mask=mask3))
  np.testing.assert_array_equal(out[1], np.asarray(full)[1])
  np.testing.assert_array_equal(out[0, :8], np.asarray(full)[0, :8])
  assert np.abs(out[0, 8:] - np.asarray(full)[0, 8:]).max() > 1e-3
  with pytest.raises(ValueError, match="layer_mask has shape"):
    apply(cfg, params, tokens, layer_mask=np.ones((16, 2), bool))


def test_return_hidden_is_the_residual_stream_before_the_final_norm():
  cfg, params = tiny("tiny-serial", num_layers=3)
  tokens = _tokens(cfg)
  model = Transformer(cfg)
  hidden = model.apply({"params": params}, tokens, return_hidden=True)
  assert hidden.shape == (*tokens.shape, cfg.d_model)
  # Final norm + head on the hidden states give the logits (the head piece is the module's).
  np.testing.assert_array_equal(transformer.head(cfg, params, hidden),
                                model.apply({"params": params}, tokens))
  tied_cfg, tied = tiny("tiny-small", num_layers=2)  # tied embeddings, muP multipliers
  tied_model = Transformer(tied_cfg)
  np.testing.assert_array_equal(
      transformer.head(tied_cfg, tied, tied_model.apply({"params": tied}, tokens,
                                                        return_hidden=True)),
      tied_model.apply({"params": tied}, tokens))
  # embed, then every block, is the residual stream (x10 embedding multiplier included).
  x = transformer.embed(tied_cfg, tied, tokens)
  np.testing.assert_array_equal(
      x, np.asarray(tied["embed"]["embedding"])[tokens] * np.float32(10.0))
  ctx, _, _ = attention_inputs(tied_cfg, jnp.broadcast_to(jnp.arange(16), (2, 16)),
                               jnp.ones((2, 16), jnp.int32))
  for i in range(tied_cfg.num_layers):
    x, _ = transformer.block(tied_cfg, jax.tree.map(lambda a: a[i], tied["layers"]), i, x, None,
                             ctx)
  np.testing.assert_allclose(x, tied_model.apply({"params": tied}, tokens, return_hidden=True),
                             atol=1e-5)
  # Layer 0's output: the model cut to its first layer.
  first = jax.tree.map(lambda x: x[:1], params["layers"])
  h0 = Transformer(cfg.replace(num_layers=1)).apply({"params": {**params, "layers": first}},
                                                   tokens, return_hidden=True)
  mask = np.zeros((16, 3), bool)
  mask[:, 0] = True
  np.testing.assert_allclose(model.apply({"params": params}, tokens, layer_mask=mask,
                                         return_hidden=True), h0, atol=1e-5)


@pytest.mark.parametrize("name,overrides", [("tiny-parallel", {}), ("tiny-serial", {}),
                                            ("tiny-serial", {"sliding_window": 3})])
def test_packed_segments_do_not_attend_across_documents(name, overrides):
  cfg, params = tiny(name, **overrides)
  a, b = _tokens(cfg, 1, 10, seed=1), _tokens(cfg, 1, 6, seed=2)
  packed = np.concatenate([a, b, np.zeros((1, 4), np.int32)], axis=1)  # + 4 padding tokens
  seg = np.asarray([[1] * 10 + [2] * 6 + [0] * 4])
  pos = np.asarray([list(range(10)) + list(range(6)) + [0] * 4])
  out = np.asarray(apply(cfg, params, packed, positions=pos, segment_ids=seg))
  np.testing.assert_allclose(out[:, :10], apply(cfg, params, a), atol=1e-5)
  np.testing.assert_allclose(out[:, 10:16], apply(cfg, params, b), atol=1e-5)
  assert np.isfinite(out).all()  # padding rows attend nothing but stay finite


def test_dropout_only_when_not_deterministic():
  cfg, params = tiny("tiny-parallel", embd_dropout=0.1, resid_dropout=0.1, attn_dropout=0.1)
  tokens = _tokens(cfg)
  det = apply(cfg, params, tokens)
  ref = apply(cfg.replace(embd_dropout=0.0, resid_dropout=0.0, attn_dropout=0.0), params, tokens)
  np.testing.assert_array_equal(det, ref)
  drop = lambda seed: apply(cfg, params, tokens, deterministic=False,  # noqa: E731
                            rngs={"dropout": jax.random.key(seed)})
  np.testing.assert_array_equal(drop(0), drop(0))
  assert np.abs(np.asarray(drop(0) - drop(1))).max() > 1e-3
  assert np.abs(np.asarray(drop(0) - det)).max() > 1e-3


@pytest.mark.parametrize("policy", ["full", "dots", "dots_no_batch", "save_attn_out"])
def test_remat_policies_keep_values_and_gradients(policy):
  cfg, params = tiny("tiny-serial")
  tokens = _tokens(cfg)

  def loss(p, c):
    logits = apply(c, p, tokens)
    return -jnp.mean(jax.nn.log_softmax(logits)[..., 0])

  ref_val, ref_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, cfg)
  val, grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)(
      params, cfg.replace(remat_policy=policy))
  np.testing.assert_allclose(val, ref_val, rtol=1e-6)
  for g, r in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_grad)):
    np.testing.assert_allclose(g, r, atol=1e-6)


def test_every_parameter_has_logical_axis_names():
  cfg, _ = tiny("tiny-small")
  boxed = jax.eval_shape(Transformer(cfg).init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
  flat = jax.tree_util.tree_flatten_with_path(
      boxed["params"], is_leaf=lambda x: isinstance(x, nn.Partitioned))[0]
  assert flat
  for path, leaf in flat:
    assert isinstance(leaf, nn.Partitioned), path
    assert len(leaf.names) == leaf.value.ndim, (path, leaf.names)
    if path[0].key == "layers":
      assert leaf.names[0] == "layers" and leaf.value.shape[0] == cfg.num_layers


def test_compute_and_parameter_dtypes():
  cfg, params = tiny("tiny-serial")
  tokens = _tokens(cfg)
  ref = np.asarray(apply(cfg, params, tokens))
  bf16 = cfg.replace(dtype="bfloat16")
  out = apply(bf16, params, tokens)
  assert out.dtype == jnp.float32
  assert np.abs(np.asarray(out) - ref).max() < 0.05
  half = cfg.replace(param_dtype="bfloat16", dtype="bfloat16")
  boxed = jax.eval_shape(Transformer(half).init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
  assert {x.dtype for x in jax.tree.leaves(nn.unbox(boxed))} == {jnp.dtype("bfloat16")}


def test_block_sparse_mask_matches_the_definition():
  cfg, _ = tiny("tiny-small")  # block 4, 2 local blocks, vertical stride 2
  pos = np.arange(40)[None]
  got = np.asarray(block_sparse_mask(cfg, jnp.asarray(pos), jnp.asarray(pos)))[0]
  bs, local, stride = cfg.sparse_block_size, cfg.sparse_local_blocks, cfg.sparse_vert_stride
  for h in range(cfg.num_heads):
    for q in range(40):
      for k in range(40):
        i, j = q // bs, k // bs
        want = j <= i and (i - j < local or (j + h + 1) % stride == 0)
        assert got[h, q, k] == want, (h, q, k)
  assert not got.all()


def test_block_sparse_applies_on_even_layers_only():
  cfg, params = tiny("tiny-small")
  tokens = _tokens(cfg, length=24)
  dense = apply(cfg.replace(block_sparse=False), params, tokens)
  sparse = apply(cfg, params, tokens)
  np.testing.assert_allclose(sparse[:, :8], dense[:, :8], atol=1e-5)  # inside the local blocks
  assert np.abs(np.asarray(sparse - dense)).max() > 1e-4
  # With one layer (layer 0, sparse) vs the same layer placed at index 1 (dense) of a 2-layer
  # stack whose layer 0 is switched off by the layer mask.
  one = cfg.replace(num_layers=1)
  p1 = {**params, "layers": jax.tree.map(lambda x: x[:1], params["layers"])}
  p2 = {**params, "layers": jax.tree.map(lambda x: jnp.concatenate([x[:1], x[:1]]), params["layers"])}
  off0 = np.ones((24, 2), bool)
  off0[:, 0] = False
  as_dense_layer = apply(cfg, p2, tokens, layer_mask=off0)
  np.testing.assert_allclose(as_dense_layer, apply(one.replace(block_sparse=False), p1, tokens),
                             atol=1e-5)
  assert np.abs(np.asarray(as_dense_layer - apply(one, p1, tokens))).max() > 1e-4


def test_gegelu_on_known_inputs():
  gate = jnp.asarray([0.0, 1.0, -2.0, 30.0, jnp.inf])
  lin = jnp.asarray([1.0, 0.5, 25.0, -30.0, 0.0])
  quick = lambda x: x / (1.0 + np.exp(-1.702 * x))  # noqa: E731
  want = [0.0, quick(1.0) * 1.5, quick(-2.0) * 21.0, quick(20.0) * -19.0, np.inf]
  np.testing.assert_allclose(np.asarray(gegelu(gate, lin)), want, rtol=1e-6)


def test_mup_multipliers():
  cfg, params = tiny("tiny-small", tie_embeddings=False, block_sparse=False)
  tokens = _tokens(cfg)
  plain = cfg.replace(embedding_multiplier=1.0, logit_multiplier=1.0, attn_scale=None)
  # logits / 8
  np.testing.assert_allclose(apply(cfg.replace(embedding_multiplier=1.0, attn_scale=None), params,
                                   tokens), apply(plain, params, tokens) / 8, rtol=1e-5, atol=1e-6)
  # embedding x10 == a 10x larger embedding table
  big = {**params, "embed": {"embedding": params["embed"]["embedding"] * 10}}
  np.testing.assert_allclose(apply(cfg.replace(logit_multiplier=1.0, attn_scale=None), params, tokens),
                             apply(plain, big, tokens), rtol=1e-4, atol=1e-5)
  # attention scale 1/head_dim == 1/sqrt(head_dim) with q scaled by 1/sqrt(head_dim)
  s = 1 / np.sqrt(cfg.dim_per_head)
  q = params["layers"]["attn"]["q"]
  scaled = {**params, "layers": {**params["layers"], "attn": {
      **params["layers"]["attn"], "q": {"kernel": q["kernel"] * s, "bias": q["bias"] * s}}}}
  np.testing.assert_allclose(apply(cfg.replace(embedding_multiplier=1.0, logit_multiplier=1.0),
                                   params, tokens), apply(plain, scaled, tokens), rtol=1e-4, atol=1e-5)


def test_longrope_switches_strictly_above_the_original_length():
  cfg, params = tiny("tiny-longrope")  # original length 32
  at = _tokens(cfg, 1, 32)
  np.testing.assert_array_equal(apply(cfg, params, at), apply(cfg, params, at, long_rope=False))
  above = _tokens(cfg, 1, 33)
  np.testing.assert_array_equal(apply(cfg, params, above), apply(cfg, params, above, long_rope=True))
  assert np.abs(np.asarray(apply(cfg, params, above, long_rope=False) -
                           apply(cfg, params, above))).max() > 1e-3


def test_partial_rotary_rotates_only_the_leading_dims():
  cfg, _ = tiny("tiny-parallel")  # head_dim 16, rotary_dim 8
  x = jax.random.normal(jax.random.key(0), (1, 5, 4, 16))
  cos, sin = rotary.rotary_tables(cfg, jnp.arange(5)[None])
  y = rotary.apply_rotary(x, cos, sin)
  np.testing.assert_array_equal(y[..., 8:], x[..., 8:])
  np.testing.assert_array_equal(y[:, 0], x[:, 0])  # position 0: identity
  pair_norm = lambda v: v[..., :4] ** 2 + v[..., 4:8] ** 2  # noqa: E731  (i pairs with i + rot/2)
  np.testing.assert_allclose(pair_norm(y), pair_norm(x), rtol=1e-5)
  assert np.abs(np.asarray(y[:, 1:, :, :8] - x[:, 1:, :, :8])).max() > 1e-2


def test_dense_kernel_layouts_compute_the_same_product():
  """'out_in' (kernel_t = kernel.T, a decoding layout) is the same function as 'in_out', on the
  attention output projection's two contracted axes; a kernel_t does not run as 'in_out'."""
  cfg, _ = tiny("tiny-serial")
  x = jax.random.normal(jax.random.key(0), (3, 5, 4, 16))
  layer = Dense(cfg, (64,), 2, ("heads", "head_dim", "embed"), True)
  params = layer.init(jax.random.key(1), x)["params"]
  params = {**nn.unbox(params), "bias": jnp.arange(64.0)}
  want = np.einsum("bthd,hde->bte", x, params["kernel"]) + np.arange(64.0)
  np.testing.assert_allclose(layer.apply({"params": params}, x), want, rtol=1e-5, atol=1e-5)
  transposed = {"kernel_t": jnp.transpose(params["kernel"]), "bias": params["bias"]}
  np.testing.assert_allclose(
      Dense(cfg, (64,), 2, ("heads", "head_dim", "embed"), True, "out_in").apply(
          {"params": transposed}, x), want, rtol=1e-5, atol=1e-5)
  with pytest.raises(Exception, match="kernel"):  # the layout is named, not guessed from params
    layer.apply({"params": transposed}, x)
  with pytest.raises(ValueError, match="kernel_layout"):
    Dense(cfg, (64,), 2, ("heads", "head_dim", "embed"), True, "diagonal").init(
        jax.random.key(1), x)
