"""The chunked LM head + loss (train/chunked_loss.py, config.loss_chunk_len) equals the full-logits
path: per-token losses and their VJP, the training loss and every parameter's gradient (lm_head
bias, tied embedding with logit_multiplier 1/8, ragged masks, chunks that do not divide T), a
sharded train step, the eval step, SkipDecode's layer mask; and bad values
fail clearly."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tiny

from phi_jax.decoding.skipdecode import SkipSchedule
from phi_jax.models import Transformer, transformer
from phi_jax.train import chunked_loss, config_base, loop, mesh as mesh_lib, optim
from phi_jax.train import step as step_lib


def _batch(vocab, batch=3, length=11, seed=0):
  rng = np.random.RandomState(seed)
  mask = (rng.rand(batch, length) > 0.3).astype(np.float32)
  mask[0, 7:] = 0  # a ragged row: padding at its end
  return dict(inputs=jnp.asarray(rng.randint(0, vocab, (batch, length)), jnp.int32),
              targets=jnp.asarray(rng.randint(0, vocab, (batch, length)), jnp.int32),
              segment_ids=jnp.ones((batch, length), jnp.int32),
              positions=jnp.tile(jnp.arange(length, dtype=jnp.int32), (batch, 1)),
              loss_mask=jnp.asarray(mask))


# tiny-parallel: layernorm + lm_head with bias; tiny-small: tied embedding, logit_multiplier 1/8.
@pytest.mark.parametrize("name", ["tiny-parallel", "tiny-small"])
def test_token_losses_and_their_vjp_equal_the_full_head(name):
  cfg, params = tiny(name)
  assert name != "tiny-small" or (cfg.tie_embeddings and cfg.logit_multiplier == 0.125)
  rng = np.random.RandomState(1)
  hidden = jnp.asarray(rng.standard_normal((2, 9, cfg.d_model)), jnp.float32)
  targets = jnp.asarray(rng.randint(0, cfg.vocab_size, (2, 9)), jnp.int32)
  cot = jnp.asarray(rng.standard_normal((2, 9)), jnp.float32)  # any cotangent, not only a mask

  def full(p, h):
    return optax.softmax_cross_entropy_with_integer_labels(transformer.head(cfg, p, h), targets)

  def losses_and_vjp(fn):
    out, vjp = jax.vjp(fn, params, hidden)
    return out, vjp(cot)

  want, (wp, wh) = jax.jit(losses_and_vjp, static_argnums=0)(full)
  for chunk in (4, 64):  # ragged (9 positions padded to 12); larger than T (one chunk)
    got, (gp, gh) = jax.jit(losses_and_vjp, static_argnums=0)(
        lambda p, h, c=chunk: chunked_loss.token_losses(cfg, p, h, targets, c))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gh, wh, rtol=1e-5, atol=1e-6)
    for name_, a in chunked_loss.head_params(cfg, gp).items():
      for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(wp[name_])):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=name_)
      assert any(float(jnp.abs(x).max()) > 0 for x in jax.tree.leaves(a)), name_


def test_training_loss_and_all_gradients_equal_the_full_logits_path():
  cfg, params = tiny("tiny-small")  # tied embedding, logit_multiplier 1/8 (lm_head bias: below)
  model, batch = Transformer(cfg), _batch(cfg.vocab_size)

  def grads(chunk):
    return jax.jit(jax.value_and_grad(lambda p: step_lib._forward_loss(
        model, p, batch, None, True, None, chunk), has_aux=True))(params)

  (want, (wt, wc)), wg = grads(0)
  (got, (gt, gc)), gg = grads(4)  # 11 positions: chunks of 4, 4, 3 (+1 padded)
  assert float(gc) == float(wc) == float(batch["loss_mask"].sum())
  np.testing.assert_allclose(got, want, rtol=1e-6)
  np.testing.assert_allclose(gt, wt, rtol=1e-6)
  flat_w = jax.tree_util.tree_flatten_with_path(wg)[0]
  for (path, w), g in zip(flat_w, jax.tree.leaves(gg)):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
  assert float(jnp.abs(gg["embed"]["embedding"]).max()) > 0


def test_skipdecode_layer_mask_applies_under_chunks():
  cfg, params = tiny("tiny-serial", num_layers=4)
  model, batch = Transformer(cfg), _batch(cfg.vocab_size, batch=2, length=12)
  batch["target_index"] = jnp.asarray(np.tile(np.arange(12) - 4, (2, 1)), jnp.int32)
  schedule = SkipSchedule(4, 3, 2, 1, 4)
  loss = jax.jit(lambda p, b, s, c: step_lib._forward_loss(model, p, b, None, True, s, c)[0],
                 static_argnums=(2, 3))
  got, want = loss(params, batch, schedule, 5), loss(params, batch, schedule, 0)
  plain = loss(params, batch, None, 5)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert abs(float(plain) - float(got)) > 1e-4  # the schedule is in effect


def _run(cfg, spec, grad_accum, loss_chunk_len, steps=2):
  tx, schedule = optim.make_optimizer(config_base.optimizer(learning_rate=1e-2, warmup_steps=1),
                                      10)
  mesh = mesh_lib.make_mesh(spec)
  state, shardings = step_lib.create_sharded_state(cfg, tx, 16, mesh, jax.random.key(0))
  train_step = step_lib.jit_train_step(step_lib.make_train_step(
      cfg, tx, schedule, grad_accum, loss_chunk_len=loss_chunk_len), shardings, mesh)
  eval_step = step_lib.make_eval_step(cfg, mesh, shardings.params,
                                      loss_chunk_len=loss_chunk_len)
  losses = []
  for i in range(steps):
    batch = {k: np.asarray(v) for k, v in _batch(cfg.vocab_size, 8, 16).items()}
    state, metrics = train_step(state, batch)
    losses.append(float(metrics["loss"]))
  total, count = eval_step(state.params, batch)
  return np.asarray(losses), jax.device_get(state.params), float(total), float(count)


def test_sharded_train_and_eval_steps_with_chunks_equal_full_logits():
  # lm_head with bias; resid dropout on: the same dropout stream in both (same layers).
  cfg, _ = tiny("tiny-parallel", vocab_size=256, resid_dropout=0.1)
  spec = {"data": 4, "tensor": 2}  # rows over 'data', the vocabulary over 'tensor'
  want = _run(cfg, spec, 1, 0)
  got = _run(cfg, spec, 1, 5)  # 16 positions: chunks of 5, 5, 5, 1 (+4 padded)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1])):
    np.testing.assert_allclose(a, b, atol=5e-5)
  np.testing.assert_allclose(got[2:], want[2:], rtol=1e-5)
  assert want[0][-1] < want[0][0]  # it trains (the same batch each step: memorised)


def test_bad_loss_chunk_len_fails_clearly(tmp_path):
  for bad in (-1, 2.5, True):
    with pytest.raises(ValueError, match="loss_chunk_len=.* must be an integer >= 0"):
      step_lib.check_loss_chunk_len(bad)
  with pytest.raises(ValueError, match="chunk=0 must be >= 1"):
    chunked_loss.token_losses(*tiny("tiny-serial"), jnp.zeros((1, 4, 64)),
                              jnp.zeros((1, 4), jnp.int32), 0)
  config = config_base.get_config()
  assert config.loss_chunk_len == 0  # default: the full logits
  with pytest.raises(TypeError):
    config.loss_chunk_len = "256"
  config.loss_chunk_len = -4
  with pytest.raises(ValueError, match="loss_chunk_len=-4"):
    loop.train(config, tmp_path / "neg")
  config.loss_chunk_len, config.objective = 64, "dpo"
  with pytest.raises(ValueError, match="applies to objective='lm' only"):
    loop.train(config, tmp_path / "dpo")
  assert config_base.resumable("loss_chunk_len")  # memory, not meaning: a rerun may change it
