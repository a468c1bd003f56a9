"""Fine-tuning pieces: the docstring -> body task, prompt/completion batches, SkipDecode training
(the teacher-forced schedule mask in the loss) and warm starts from a workdir or a HF folder."""

import pathlib
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import tiny

from phi_jax.data import pipeline
from phi_jax.data.builders.docstring_code import extract_functions
from phi_jax.decoding.skipdecode import SkipSchedule
from phi_jax.models import Transformer
from phi_jax.sweep import load_config
from phi_jax.train import checkpoint, loop, step as step_lib

REPO = pathlib.Path(__file__).resolve().parents[1]

SOURCE = '''\
import os


def plain(x):
    return x


@decorator
def documented(a, b=1):
    """Add a and b.

    Longer text.
    """
    total = a + b
    return total


class Box:
    def method(self):
        """One line."""
        if self:
            return 1
        return 2

    async def later(self):
        """Async."""
        def inner(y):
            """Inner doc."""
            return y * 2 + 1
        return inner(3)


def only_doc():
    """Nothing else."""
'''


def test_extract_functions_splits_signature_and_docstring_from_the_body():
  examples = {e["name"]: e for e in extract_functions(SOURCE)}
  assert set(examples) == {"documented", "method", "later", "inner"}
  doc = examples["documented"]
  assert doc["prompt"] == 'def documented(a, b=1):\n    """Add a and b.\n\n    Longer text.\n    """\n'
  assert doc["target"] == "    total = a + b\n    return total\n"
  method = examples["method"]  # dedented to column 0
  assert method["prompt"] == 'def method(self):\n    """One line."""\n'
  assert method["target"] == "    if self:\n        return 1\n    return 2\n"
  assert examples["later"]["prompt"].startswith("async def later(self):")
  assert examples["inner"]["target"] == "    return y * 2 + 1\n"
  for e in examples.values():  # prompt + target is the function's source, which parses
    compile(e["prompt"] + e["target"], "<f>", "exec")
  assert extract_functions("def broken(:\n") == []


class _CharTokenizer:
  eos_id = 3

  def encode(self, text):
    return [4 + (ord(c) % 60) for c in text]


RECORDS = [{"prompt": "p" * (3 + i % 5), "target": "t" * (2 + i % 7)} for i in range(40)]


def _pc_config(**kw):
  base = dict(seq_len=24, batch_size=4, format="prompt_completion", shuffle=False, num_epochs=1,
              read_threads=0, prefetch_buffer_size=1, drop_remainder=False)
  return pipeline.DataConfig(**{**base, **kw})


def test_prompt_completion_batches_mask_the_prompt_and_count_target_positions():
  it = pipeline.make_iterator(_pc_config(), _CharTokenizer(), source=RECORDS, process_index=0,
                              process_count=1)
  seen = 0
  for batch in it:
    assert set(batch) == set(pipeline.FEATURES) | {"target_index"}
    for row in range(batch["inputs"].shape[0]):
      seg, t = batch["segment_ids"][row], batch["target_index"][row]
      for s in set(seg[seg > 0].tolist()):
        idx = np.flatnonzero(seg == s)
        seen += 1
        # whole examples only: each starts with its prompt, positions from 0, ends with EOS
        assert t[idx[0]] < 0 and batch["positions"][row, idx[0]] == 0
        assert batch["inputs"][row, idx[-1]] == _CharTokenizer.eos_id
        n_prompt = int((t[idx] < 0).sum())
        np.testing.assert_array_equal(t[idx], np.arange(len(idx)) - n_prompt)
        mask = batch["loss_mask"][row, idx]
        # trained: from the last prompt token (predicts g_0) up to the token before EOS
        np.testing.assert_array_equal(mask, (np.arange(len(idx)) >= n_prompt - 1) &
                                      (np.arange(len(idx)) < len(idx) - 1))
        np.testing.assert_array_equal(batch["targets"][row, idx[:-1]],
                                      batch["inputs"][row, idx[1:]])
      assert (t[seg == 0] == -1).all()
  assert seen == len(RECORDS)


def test_prompt_completion_resumes_exactly_and_rejects_bad_records():
  tok = _CharTokenizer()
  config = _pc_config(shuffle=True, num_epochs=None, seed=3)
  it = pipeline.make_iterator(config, tok, source=RECORDS, process_index=0, process_count=1)
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  again = pipeline.make_iterator(config, tok, source=RECORDS, process_index=0, process_count=1)
  again.set_state(state)
  for want in expected:
    got = next(again)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])
  bad = pipeline.make_iterator(_pc_config(), tok, source=[{"text": "x"}], process_index=0,
                               process_count=1)
  with pytest.raises(ValueError, match="'prompt'"):
    next(bad)
  with pytest.raises(ValueError, match="format"):
    _pc_config(format="dialogue").validate()  # ('chat' is a format now: SFT)


def test_training_loss_under_a_schedule_is_the_masked_forward_loss():
  cfg, params = tiny("tiny-serial", num_layers=4)
  schedule = SkipSchedule(4, 3, 2, 1, 4)
  tok = _CharTokenizer()
  batch = next(pipeline.make_iterator(_pc_config(seq_len=32), tok, source=RECORDS,
                                      process_index=0, process_count=1))
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  model = Transformer(cfg)
  loss, _ = step_lib._forward_loss(model, params, batch, None, True, schedule)
  t = np.asarray(batch["target_index"])
  mask = np.ones(t.shape + (4,), bool)
  for idx in zip(*np.nonzero(t >= 0)):
    mask[idx] = schedule.table(40)[t[idx]]
  logits = model.apply({"params": params}, batch["inputs"], positions=batch["positions"],
                       segment_ids=batch["segment_ids"], layer_mask=mask)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
  want = float((losses * batch["loss_mask"]).sum() / batch["loss_mask"].sum())
  assert float(loss) == pytest.approx(want, rel=1e-5)
  plain, _ = step_lib._forward_loss(model, params, batch, None, True, None)
  assert abs(float(plain) - float(loss)) > 1e-3  # the schedule changes the loss
  lm = {k: v for k, v in batch.items() if k != "target_index"}
  with pytest.raises(ValueError, match="prompt_completion"):
    step_lib._forward_loss(model, params, lm, None, True, schedule)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("sd")
  config = load_config(f"{REPO}/configs/skipdecode.py:pretrain,tiny")
  config.total_steps = 3
  config.optimizer.warmup_steps = 1
  config.eval_every = 0
  config.report = False
  config.data.data_dir = str(root / "data")
  loop.train(config, root / "base")
  return root


def test_finetune_from_a_workdir_starts_from_its_weights_and_tokenizer(base_run):
  config = load_config(f"{REPO}/configs/skipdecode.py:finetune,tiny,speedup=2")
  config.init_from = str(base_run / "base")
  config.total_steps = 1
  config.eval_every = 0
  config.report = False
  config.optimizer.warmup_steps = 0
  config.optimizer.learning_rate = 1e-30  # one step that changes (next to) nothing
  config.data.data_dir = str(base_run / "data")
  loop.train(config, base_run / "ft")
  cfg0, params0, tok0 = checkpoint.load_run(base_run / "base")
  cfg1, params1, tok1 = checkpoint.load_run(base_run / "ft")
  assert cfg1 == cfg0
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9), params1,
               params0)
  assert tok1.encode("def f(x):\n") == tok0.encode("def f(x):\n")

  with config.unlocked():
    config.model.d_model = 32  # changes the architecture of init_from
  with pytest.raises(ValueError, match="would change the architecture"):
    loop.train(config, base_run / "ft_bad")


def test_init_from_a_hugging_face_folder(base_run, tmp_path):
  from phi_jax.convert import hf
  cfg, params, _ = checkpoint.load_run(base_run / "base")
  hf_dir = tmp_path / "hf"
  hf.save(cfg, params, hf_dir)
  shutil.copy(base_run / "base" / "tokenizer" / "sp.model", hf_dir / "tokenizer.model")
  cfg2, params2 = loop.load_init(str(hf_dir))
  assert cfg2.num_layers == cfg.num_layers and cfg2.d_model == cfg.d_model
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), params2, params)
  with pytest.raises(ValueError, match="init_from=.*not a model folder.*training workdir"):
    loop.load_init(str(tmp_path))


def test_target_ids_are_those_that_follow_the_prompt_in_the_joint_encoding():
  class DummyPrefix(_CharTokenizer):  # like SentencePiece's dummy prefix: a marker per encode call
    def encode(self, text):
      return [99] + super().encode(text)

  tok = DummyPrefix()
  tokens = pipeline.TokenizeExample(tok, 64).map({"prompt": "ab", "target": "cd"})["tokens"]
  np.testing.assert_array_equal(tokens[:, 0], tok.encode("abcd") + [tok.eos_id])
