"""The quality classifier (phi_jax/curation/quality.py): embeddings from a tiny random phi_jax model,
a random forest on a learnable synthetic labelled set, selection, the output dataset, save/load,
and the teacher labeller with a fake teacher."""

import math
import random

import jax
import numpy as np
import pytest

from conftest import tiny
from phi_jax.data import builders, pipeline
from phi_jax.curation import quality
from phi_jax.models import Transformer


class ByteTokenizer:
  """UTF-8 bytes shifted past the 4 special ids (pad 0, unk 1, bos 2, eos 3)."""

  vocab_size, bos_id, eos_id = 260, 2, 3

  def encode(self, text):
    return [b + 4 for b in text.encode("utf-8")]

  def decode(self, ids):
    return bytes(i - 4 for i in ids if i >= 4).decode("utf-8", errors="replace")


WORDS = ["total", "count", "values", "index", "result", "items", "name", "price", "score", "word"]


def educational(rng):
  a, b = rng.sample(WORDS, 2)
  return (f'def compute_{a}_{b}({a}_list):\n'
          f'    """Return the sum of every {b} in {a}_list.\n\n'
          f'    This shows how a for loop adds up numbers one at a time.\n    """\n'
          f'    # Start from zero: nothing has been added yet.\n'
          f'    running_{b} = 0\n'
          f'    for {b} in {a}_list:\n'
          f'        # Add the current {b} to the running total.\n'
          f'        running_{b} += {b}\n'
          f'    return running_{b}\n')


def junk(rng):
  names = "".join(rng.choice("abcdefxyzq") for _ in range(6))
  body = ";".join(f"{names[i]}={names[i - 1]}*{rng.randint(2, 99)}^{rng.randint(0, 9)}"
                  for i in range(1, 6))
  return f"def {names[0]}({names[1]},{names[2]}):{body};return {names[3]}|{rng.randint(0, 9)}\n"


@pytest.fixture(scope="module")
def model():
  cfg, params = tiny("tiny-parallel", vocab_size=260, num_layers=2)
  return cfg, params


@pytest.fixture(scope="module")
def embedder(model):
  cfg, params = model
  return quality.Embedder(cfg, params, ByteTokenizer(), max_len=128, batch_size=4)


def _direct(cfg, params, ids):
  """Mean over the positions of one unpadded document's hidden states [1, n, D] -> [D]."""
  hidden = jax.jit(lambda p, t: Transformer(cfg).apply({"params": p}, t, return_hidden=True))(
      params, np.asarray([ids], np.int32))
  return np.asarray(hidden[0]).mean(axis=0)


def test_embeddings_equal_a_direct_mean_and_ignore_padding_and_buckets(model, embedder):
  cfg, params = model
  rng = random.Random(0)
  docs = [educational(rng), junk(rng), "x = 1\n", "", junk(rng) * 3, educational(rng)[:40]]
  together = embedder(docs)  # buckets 16..128, batches padded to 4 rows
  assert together.shape == (6, cfg.d_model) and together.dtype == np.float32
  tok = ByteTokenizer()
  for i, doc in enumerate(docs):
    alone = embedder([doc])
    np.testing.assert_allclose(alone[0], together[i], atol=1e-5)
    if doc:
      ids = tok.encode(doc)[:128]
      np.testing.assert_allclose(together[i], _direct(cfg, params, ids), atol=1e-5, rtol=1e-5)
    else:
      assert not together[i].any()  # empty documents embed as zeros
  # layer 0: the residual stream after the first block = the sliced model's output
  first = quality.Embedder(cfg, params, tok, layer=0, max_len=128, batch_size=2)
  sliced = dict(params, layers=jax.tree.map(lambda x: x[:1], params["layers"]))
  ids = tok.encode(docs[0])[:128]
  np.testing.assert_allclose(first(docs[:1])[0], _direct(cfg.replace(num_layers=1), sliced, ids),
                             atol=1e-5, rtol=1e-5)
  assert not np.allclose(first(docs[:1])[0], together[0])
  assert first.fingerprint != embedder.fingerprint
  with pytest.raises(ValueError, match="layer must be in"):
    quality.Embedder(cfg, params, tok, layer=2)


def test_classifier_learns_selects_and_writes_the_dataset(embedder, tmp_path):
  rng = random.Random(1)
  texts, labels = [], []
  for k in range(120):
    good = k % 2 == 0
    texts.append(educational(rng) if good else junk(rng))
    labels.append(int(good))
  features = embedder(texts)
  clf = quality.train_classifier(features, labels, seed=0, n_estimators=50,
                                 metadata={"embedder": embedder.fingerprint})
  m = clf.metrics
  assert m["num_test"] == 24 and m["label_counts"] == {0: 60, 1: 60}
  assert m["accuracy"] >= 0.9 and m["roc_auc"] >= 0.95 and m["majority_baseline"] == 0.5

  # held-out documents never seen in training
  rng = random.Random(2)
  new = [educational(rng) for _ in range(10)] + [junk(rng) for _ in range(30)]
  scores = clf.score(embedder(new))
  assert scores[:10].min() > scores[10:].max()  # every educational one above every junk one
  kept = quality.select(scores, top_fraction=0.25)
  assert kept == list(range(10))
  assert quality.select(scores, threshold=0.5) == [i for i in range(40) if scores[i] >= 0.5]
  assert len(quality.select(np.zeros(7), top_fraction=0.5)) == 4  # ceil, ties by index
  assert quality.select(np.zeros(7), top_fraction=0.5) == [0, 1, 2, 3]

  # the kept documents become a filtered_corpus readable by the training pipeline
  records = [{"id": f"new/{i}", "text": new[i]} for i in kept]
  builder = quality.write_dataset(records, scores[kept], tmp_path / "out",
                                  validation_fraction=0.2)
  rows = [r for split in ("train", "validation") for r in builder.as_data_source(split)]
  assert sorted(r["id"].decode() for r in rows) == sorted(r["id"] for r in records)
  for r in rows:
    i = int(r["id"].decode().split("/")[1])
    assert r["text"].decode() == new[i] and math.isclose(r["score"], scores[i], rel_tol=1e-6)
  cfg = pipeline.DataConfig(name="filtered_corpus", data_dir=str(tmp_path / "out" / "tfds"),
                            seq_len=32, batch_size=2,
                            builder_kwargs={"source_dir": str(tmp_path / "out"),
                                            "validation_fraction": 0.2})
  batch = next(pipeline.make_iterator(cfg, ByteTokenizer(), process_index=0, process_count=1))
  assert batch["inputs"].shape == (2, 32) and batch["loss_mask"].sum() > 0
  assert "filtered_corpus" in builders.BUILDERS

  # save / load
  path = tmp_path / "clf" / "quality.joblib"
  quality.save_classifier(clf, path)
  again = quality.load_classifier(path, embedder.fingerprint)
  np.testing.assert_array_equal(again.score(embedder(new)), scores)
  assert again.metadata["embedder"] == embedder.fingerprint and again.metrics == m
  with pytest.raises(ValueError, match="trained on embeddings"):
    quality.load_classifier(path, "another-model:layer0:len128")
  with pytest.raises(ValueError, match="features must be"):
    again.score(np.zeros((2, 5)))


def test_training_needs_both_labels():
  with pytest.raises(ValueError, match="at least 2 examples of each label"):
    quality.train_classifier(np.zeros((10, 4)), [1] * 9 + [0])
  with pytest.raises(ValueError, match="labels must be 0, 1"):
    quality.train_classifier(np.zeros((10, 4)), [2] * 10)


class FakeTeacher:
  """Answers in many formats, in order; records what it was asked."""

  def __init__(self, answers):
    self.answers = list(answers)
    self.calls = []

  def complete(self, prompts, *, max_tokens, temperature, stop=None):
    self.calls.append((list(prompts), max_tokens, temperature, stop))
    out, self.answers = self.answers[:len(prompts)], self.answers[len(prompts):]
    return out


def test_label_with_teacher_parses_yes_no_and_scores():
  answers = ["Yes, 8/10", "no", " **NO** - 2/10", "Score: 7", "3 out of 10", "9", "It is 4/10.",
             "maybe?", "yes.", "Educational value: 5"]
  teacher = FakeTeacher(answers)
  texts = [f"def f{i}():\n    return {i}\n" for i in range(len(answers))]
  labels = quality.label_with_teacher(teacher, texts, batch_size=4)
  assert labels == [1, 0, 0, 1, 0, 1, 0, -1, 1, 1]
  assert [len(c[0]) for c in teacher.calls] == [4, 4, 2]
  prompt = teacher.calls[0][0][1]
  assert quality.PHI1_QUESTION in prompt and texts[1] in prompt
  assert teacher.calls[0][2] == 0.0  # greedy
  # unparseable answers (-1) are dropped by train_classifier
  clf = quality.train_classifier(np.arange(24, dtype=np.float32)[:, None] % 2,
                                 [i % 2 for i in range(22)] + [-1, -1], n_estimators=5)
  assert sum(clf.metrics["label_counts"].values()) == 22


def test_heuristic_stand_in_labels():
  rng = random.Random(3)
  assert all(quality.heuristic_label(educational(rng)) == 1 for _ in range(5))
  assert all(quality.heuristic_label(junk(rng)) == 0 for _ in range(5))
  assert quality.heuristic_score("def broken(:\n") == 0.0
