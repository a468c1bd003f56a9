"""Post-training: the DPO loss against a direct computation; packed chat batches train on exactly
the assistant tokens with conversations isolated; preference pairs packed whole, their sequence
log-probs equal each sequence scored alone; DPO steps raise the reward margin; a sharded DPO step
equals one device; SFT and DPO run end to end (configs/phi3_posttrain.py:tiny) and DPO resumes
exactly."""

import functools
import json
import pathlib

import jax
import numpy as np
import pytest
from conftest import tiny

from phi_jax import chat
from phi_jax.config_args import load_config
from phi_jax.data import pipeline
from phi_jax.data import tokenizer as tokenizers
from phi_jax.data.builders import build
from phi_jax.data.builders.conversations import demo_records
from phi_jax.models import Transformer
from phi_jax.train import checkpoint, config_base, dpo, loop, mesh as mesh_lib, optim
from phi_jax.train import step as step_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
SPECIALS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>"]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  texts = [m["content"] for r in demo_records("conversations") for m in r["messages"]]
  texts += [r["prompt"] + r["chosen"] + " " + r["rejected"] for r in demo_records("preferences")]
  return tokenizers.train_sentencepiece(texts, tmp_path_factory.mktemp("sp") / "sp",
                                        vocab_size=320, user_defined_symbols=SPECIALS)


def _data_config(fmt, seq_len=64, batch_size=4):
  return pipeline.DataConfig(format=fmt, seq_len=seq_len, batch_size=batch_size, shuffle=False,
                             num_epochs=1, read_threads=0, prefetch_buffer_size=1,
                             drop_remainder=False)


def _scorer(model, params, length):
  """ids [n <= length] -> logits [n, V] of the sequence on its own (padded at the end: causal
  attention makes the padding invisible to it), one compiled program for every n."""
  apply = jax.jit(lambda tokens: model.apply({"params": params}, tokens))

  def score(ids):
    padded = np.zeros((1, length), np.int32)
    padded[0, :len(ids)] = ids
    return apply(padded)[0, :len(ids)]

  return score


def _encoder(tok):
  return functools.partial(chat.encode_with_assistant_mask, template="phi-3", tokenizer=tok)


# ---- the loss --------------------------------------------------------------------------------

def _log_sigmoid(x):
  return -np.log1p(np.exp(-x))


@pytest.mark.parametrize("label_smoothing,reference_free,nll_weight",
                         [(0.0, False, 0.0), (0.2, False, 0.0), (0.1, True, 0.0),
                          (0.0, False, 0.7)])
def test_dpo_loss_equals_a_direct_computation(label_smoothing, reference_free, nll_weight):
  rng = np.random.default_rng(0)
  pc, pr, rc, rr = (rng.normal(-20, 5, 7).astype(np.float32) for _ in range(4))
  lengths = rng.integers(1, 30, 7).astype(np.float32)
  weights = np.array([1, 1, 0, 1, 1, 0, 1], np.float32)
  beta = 0.3
  if reference_free:
    rc = rr = np.zeros(7, np.float32)
  loss, m = dpo.dpo_loss(pc, pr, None if reference_free else rc, None if reference_free else rr,
                         beta=beta, label_smoothing=label_smoothing, weights=weights,
                         nll_weight=nll_weight, chosen_lengths=lengths)
  keep = weights > 0
  h = ((pc - rc) - (pr - rr)).astype(np.float64)[keep]
  nll = (-pc / lengths).astype(np.float64)[keep]  # the chosen reply's NLL per token
  want = np.mean(-(1 - label_smoothing) * _log_sigmoid(beta * h)
                 - label_smoothing * _log_sigmoid(-beta * h) + nll_weight * nll)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  np.testing.assert_allclose(float(m["nll_chosen"]), nll.mean(), rtol=1e-5)
  if nll_weight:
    with pytest.raises(ValueError, match="chosen_lengths"):
      dpo.dpo_loss(pc, pr, rc, rr, nll_weight=nll_weight)
  chosen, rejected = beta * (pc - rc)[keep], beta * (pr - rr)[keep]
  np.testing.assert_allclose(float(m["reward_chosen"]), chosen.mean(), rtol=1e-5)
  np.testing.assert_allclose(float(m["reward_rejected"]), rejected.mean(), rtol=1e-5)
  np.testing.assert_allclose(float(m["reward_margin"]), (chosen - rejected).mean(), rtol=1e-5)
  assert float(m["reward_accuracy"]) == pytest.approx(np.mean(chosen > rejected))
  unweighted, _ = dpo.dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=label_smoothing)
  assert float(unweighted) != pytest.approx(float(loss))  # the weights matter
  with pytest.raises(ValueError, match="label_smoothing"):
    dpo.dpo_loss(pc, pr, rc, rr, label_smoothing=0.5)


# ---- SFT batches -------------------------------------------------------------------------------

def test_chat_batches_train_on_exactly_the_assistant_tokens_of_isolated_conversations(tok):
  records = demo_records("conversations")[:8]
  encode = _encoder(tok)
  batches = list(pipeline.make_iterator(_data_config("chat", seq_len=96), tok, source=records,
                                        encode_chat=encode, process_index=0, process_count=1))
  encoded = {tuple(ids): mask for ids, mask in (encode(r["messages"]) for r in records)}
  seen, packed_rows = 0, 0
  cfg, params = tiny("tiny-serial", vocab_size=320)
  model = Transformer(cfg)
  alone = _scorer(model, params, 96)
  for batch in batches:
    logits = model.apply({"params": params}, batch["inputs"], positions=batch["positions"],
                         segment_ids=batch["segment_ids"])
    for b in range(len(batch["inputs"])):
      segments = [s for s in np.unique(batch["segment_ids"][b]) if s > 0]
      packed_rows += len(segments) > 1
      for s in segments:
        where = np.flatnonzero(batch["segment_ids"][b] == s)
        assert np.all(np.diff(where) == 1)  # one contiguous piece
        ids = tuple(batch["inputs"][b, where])
        assert ids in encoded, "a segment is not one whole conversation"
        mask = np.asarray(encoded[ids])
        np.testing.assert_array_equal(batch["positions"][b, where], np.arange(len(where)))
        np.testing.assert_array_equal(batch["loss_mask"][b, where][:-1], mask[1:])
        assert batch["loss_mask"][b, where][-1] == 0
        np.testing.assert_array_equal(batch["targets"][b, where][:-1], np.asarray(ids)[1:])
        # Trained targets = each assistant reply and its <|end|>, nothing else.
        record = next(r for r in records if tuple(encode(r["messages"])[0]) == ids)
        replies = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
        targets = batch["targets"][b, where][batch["loss_mask"][b, where] > 0]
        end = tok.sp.piece_to_id("<|end|>")
        assert int(np.sum(targets == end)) == len(replies)
        assert tok.decode([int(t) for t in targets]).replace("<|end|>", "|") == \
            "|".join(replies) + "|"
        # Isolation: the conversation's logits inside the packed row equal it scored alone.
        np.testing.assert_allclose(logits[b, where], alone(ids), atol=2e-5)
        seen += 1
  assert seen == len(records) and packed_rows > 0


# ---- DPO batches and steps ---------------------------------------------------------------------

def _pref_batches(tok, n=24, seq_len=64, batch_size=4, records=None):
  records = demo_records("preferences")[:n] if records is None else records
  return list(pipeline.make_iterator(_data_config("preference", seq_len, batch_size), tok,
                                     source=records, process_index=0, process_count=1))


def test_preference_pairs_are_packed_whole_and_scored_as_sequences_alone(tok):
  records = demo_records("preferences")[:6]
  batches = _pref_batches(tok, records=records, seq_len=128, batch_size=2)
  cfg, params = tiny("tiny-serial", vocab_size=320)
  model = Transformer(cfg)
  score = _scorer(model, params, 128)
  pairs = 0
  for batch in batches:
    logits = model.apply({"params": params}, batch["inputs"], positions=batch["positions"],
                         segment_ids=batch["segment_ids"])
    pc, pr, valid = dpo.sequence_logps(logits, batch, dpo.max_pairs(128))
    for b in range(len(batch["inputs"])):
      for k in range(dpo.max_pairs(128)):
        if not valid[b, k]:
          assert not np.any((batch["segment_ids"][b] + 1) // 2 == k + 1)
          continue
        pairs += 1
        for seg, got in ((2 * k + 1, pc[b, k]), (2 * k + 2, pr[b, k])):
          where = batch["segment_ids"][b] == seg
          ids = batch["inputs"][b, where]
          mask = batch["loss_mask"][b, where]
          alone = jax.nn.log_softmax(score(ids))
          want = sum(float(alone[t, ids[t + 1]]) for t in range(len(ids) - 1) if mask[t])
          np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-4)
        chosen = batch["targets"][b][(batch["segment_ids"][b] == 2 * k + 1)
                                     & (batch["loss_mask"][b] > 0)]
        text = tok.decode([int(t) for t in chosen if t != tok.eos_id])
        assert any(text == r["chosen"] for r in records)
        assert np.all(batch["reference_logps"][b] == 0)
  assert pairs == len(records)


def _dpo_run(cfg, params, batches, mesh, *, steps, reference="model", lr=1e-2, eps=1e-8,
             nll_weight=0.0):
  tx, schedule = optim.make_optimizer(
      config_base.optimizer(learning_rate=lr, warmup_steps=0, weight_decay=0.0, eps=eps), 100)
  state, shardings = step_lib.create_sharded_state(cfg, tx, 64, mesh, jax.random.key(0))
  place = loop._place_params  # pylint: disable=protected-access
  state = state.replace(params=place(params, state.params, shardings.params))
  ref = place(params, state.params, shardings.params) if reference == "model" else None
  dpo_config = dpo.DPOConfig(reference=reference, nll_weight=nll_weight)
  step = dpo.jit_dpo_step(dpo.make_dpo_step(cfg, tx, schedule, dpo_config, 64), shardings, mesh,
                          ref)
  out = []
  for i in range(steps):
    state, metrics = step(state, batches[i % len(batches)])
    out.append(jax.device_get(metrics))
  return out, jax.device_get(state.params)


def test_dpo_steps_raise_the_chosen_minus_rejected_margin(tok):
  cfg, params = tiny("tiny-serial", vocab_size=320)
  batches = _pref_batches(tok, n=8, batch_size=8)[:1]
  mesh = mesh_lib.make_mesh({"data": 1}, jax.devices()[:1])
  metrics, _ = _dpo_run(cfg, params, batches, mesh, steps=6)
  first, last = metrics[0], metrics[-1]
  assert first["pairs"] == 8
  assert abs(float(first["reward_margin"])) < 1e-6  # policy == reference at step 0
  np.testing.assert_allclose(float(first["loss"]), np.log(2.0), rtol=1e-6)
  assert float(last["reward_margin"]) > 0.05 and float(last["loss"]) < np.log(2.0) - 0.01
  assert float(last["reward_accuracy"]) > 0.5


def test_dpo_plus_nll_adds_the_chosen_replies_nll_per_token_and_lowers_it(tok):
  """nll_weight=alpha: the step-0 loss is ln 2 + alpha x (mean over pairs of the chosen reply's
  NLL per completion token, computed here from the logits); training lowers that NLL more than
  plain DPO does with the same steps."""
  cfg, params = tiny("tiny-serial", vocab_size=320)
  batches = _pref_batches(tok, n=8, batch_size=8)[:1]
  batch = batches[0]
  logits = Transformer(cfg).apply({"params": params}, batch["inputs"],
                                  positions=batch["positions"], segment_ids=batch["segment_ids"])
  logp = np.asarray(jax.nn.log_softmax(logits.astype(np.float32)))
  token_logp = np.take_along_axis(logp, np.asarray(batch["targets"])[..., None], -1)[..., 0]
  per_pair = []
  for b in range(len(batch["inputs"])):
    for s in np.unique(batch["segment_ids"][b]):
      if s > 0 and s % 2 == 1:  # segment 2k-1: pair k's chosen reply
        where = ((np.asarray(batch["segment_ids"][b]) == s)
                 & (np.asarray(batch["loss_mask"][b]) > 0))
        per_pair.append(-token_logp[b][where].sum() / where.sum())
  mesh = mesh_lib.make_mesh({"data": 1}, jax.devices()[:1])
  alpha = 0.5
  with_nll, _ = _dpo_run(cfg, params, batches, mesh, steps=6, nll_weight=alpha, lr=3e-3)
  plain, _ = _dpo_run(cfg, params, batches, mesh, steps=6, lr=3e-3)
  assert len(per_pair) == 8 == with_nll[0]["pairs"]
  np.testing.assert_allclose(float(with_nll[0]["nll_chosen"]), np.mean(per_pair), rtol=1e-4)
  np.testing.assert_allclose(float(with_nll[0]["loss"]), np.log(2.0) + alpha * np.mean(per_pair),
                             rtol=1e-5)
  assert float(plain[0]["nll_chosen"]) == pytest.approx(float(with_nll[0]["nll_chosen"]))
  assert float(with_nll[-1]["nll_chosen"]) < float(plain[-1]["nll_chosen"]) - 0.01


def test_sharded_dpo_step_equals_one_device(tok):
  cfg, params = tiny("tiny-serial", num_kv_heads=4, vocab_size=320)
  batches = _pref_batches(tok, n=16, batch_size=8)[:2]
  # eps 1e-3: Adam's first updates are ~lr * sign(g), which float noise flips where g ~ 0.
  one, one_params = _dpo_run(cfg, params, batches, mesh_lib.make_mesh({"data": 1},
                                                                      jax.devices()[:1]),
                             steps=2, eps=1e-3)
  many, many_params = _dpo_run(cfg, params, batches,
                               mesh_lib.make_mesh({"data": 2, "fsdp": 2, "tensor": 2}), steps=2,
                               eps=1e-3)
  for a, b in zip(one, many):
    for key in ("loss", "reward_margin", "logp_chosen", "grad_norm"):
      np.testing.assert_allclose(float(b[key]), float(a[key]), rtol=2e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(one_params), jax.tree.leaves(many_params)):
    np.testing.assert_allclose(b, a, atol=5e-5)


def test_bad_records_fail_with_their_line(tmp_path):
  path = tmp_path / "chats.jsonl"
  path.write_text('{"messages": [{"role": "user", "content": "hi"}, '
                  '{"role": "assistant", "content": "hello"}]}\n{"messages": [{"role": "bot"}]}\n')
  with pytest.raises(ValueError, match=r"chats.jsonl:2: message 0 must be"):
    build("conversations", tmp_path / "tfds", source_dir=path)
  path.write_text('{"prompt": "q", "chosen": "a"}\n')
  with pytest.raises(ValueError, match=r"chats.jsonl:1: a preference record needs a string "
                                       "'rejected'"):
    build("preferences", tmp_path / "tfds", source_dir=path)


def test_posttrain_config_variants():
  sft = load_config(f"{REPO}/configs/phi3_posttrain.py:sft,init_from=/models/base")
  assert (sft.objective, sft.data.format, sft.data.dataset) == ("lm", "chat", "conversations")
  d = load_config(f"{REPO}/configs/phi3_posttrain.py:dpo,init_from=/m,reference=precomputed")
  assert (d.objective, d.data.format, d.dpo.reference, d.dpo.beta) == ("dpo", "preference",
                                                                       "precomputed", 0.1)
  assert load_config(f"{REPO}/configs/phi3_posttrain.py:sft,tiny").model.name == "tiny-serial"
  for bad, match in (("sft,dpo,tiny", "exactly one"), ("sft", "init_from"),
                     ("dpo,tiny,reference=x", "reference")):
    with pytest.raises(ValueError, match=match):
      load_config(f"{REPO}/configs/phi3_posttrain.py:{bad}")


# ---- end to end: SFT, then DPO with an exact resume ----------------------------------------------

def _tiny(variant, root, steps, **extra):
  config = load_config(f"{REPO}/configs/phi3_posttrain.py:{variant}")
  config.total_steps = steps
  config.eval_every_fraction = 0.0
  config.report = False
  config.checkpoint_every = 2
  config.log_every = 1
  config.optimizer.update(warmup_fraction=0.0, warmup_steps=1, decay_steps=8)
  config.data.update(data_dir=str(root / "data"), seq_len=64, batch_size=8)
  for key, value in extra.items():
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
  return config


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("posttrain")
  summary = loop.train(_tiny("sft,tiny", root, 3), root / "sft")
  return root, summary


@pytest.mark.slow
def test_sft_runs_end_to_end_from_chat_jsonl(sft_run):
  root, summary = sft_run
  assert summary["step"] == 3 and np.isfinite(summary["final_loss"])
  saved = json.loads((root / "sft" / "config.json").read_text())
  assert saved["data"]["format"] == "chat" and saved["data"]["dataset"] == "conversations"


@pytest.mark.slow
def test_dpo_from_the_sft_run_resumes_exactly(sft_run):
  root, _ = sft_run
  kw = {"init_from": str(root / "sft"), "dpo.reference": "precomputed",
        "optimizer.learning_rate": 1e-3}
  loop.train(_tiny("dpo,tiny", root, 4, **kw), root / "full")
  loop.train(_tiny("dpo,tiny", root, 2, **kw), root / "half")
  loop.train(_tiny("dpo,tiny", root, 4, **kw), root / "half")  # resumes at step 2
  records = {}
  for name in ("full", "half"):
    lines = [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in lines if "loss" in r]
    assert steps == [1, 2, 3, 4], steps  # the rerun continued at step 3
    records[name] = {r["step"]: (r["loss"], r["reward_margin"]) for r in lines if "loss" in r}
  assert records["half"] == records["full"]
  _, full, _ = checkpoint.load_run(root / "full")
  _, half, _ = checkpoint.load_run(root / "half")
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(half)):
    np.testing.assert_array_equal(a, b)
  reference = np.load(root / "half" / "reference_logps_train.npy")
  assert reference.shape[1] == 2 and np.all(reference < 0)  # real log-probs, computed once
  # the cache is keyed by the reference's params: the same SFT model, the same fingerprint
  meta = json.loads((root / "half" / "reference_logps_train.json").read_text())
  assert meta == json.loads((root / "full" / "reference_logps_train.json").read_text())
  assert meta["rows"] == reference.shape[0]


def test_reference_fingerprint_follows_the_params():
  params = {"a": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "b": np.ones(4, np.float32)}
  same = {"a": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "b": np.ones(4, np.float32)}
  assert dpo.params_fingerprint(params) == dpo.params_fingerprint(same)
  changed = {"a": {"w": params["a"]["w"] + 1e-3}, "b": params["b"]}
  assert dpo.params_fingerprint(changed) != dpo.params_fingerprint(params)
  renamed = {"a": {"v": params["a"]["w"]}, "b": params["b"]}
  assert dpo.params_fingerprint(renamed) != dpo.params_fingerprint(params)
