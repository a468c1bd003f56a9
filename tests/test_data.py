"""Data: TFDS builders (array_record, split by file), packing, shuffling, sharding, exact resume."""

import dataclasses
import json
import os
import pathlib

import grain
import numpy as np
import pytest

from phi_jax.data import builders, pipeline, tokenizer

EOS = 3


class CharTokenizer:
  """One id per character (ord), EOS 3: packing is checked against an exact reference."""

  vocab_size, bos_id, eos_id = 128, None, EOS

  def encode(self, text):
    return [ord(c) for c in text]

  def decode(self, ids):
    return "".join(chr(i) for i in ids)


def _snippet(i):
  return (f"def func_{i}(value, scale={i}):\n"
          f"  \"\"\"Returns value * scale + {i * 7}.\"\"\"\n"
          f"  total = value * scale + {i * 7}\n"
          + "".join(f"  if total > {j * 13}:\n    total -= {j}\n" for j in range(i % 5))
          + "  return total\n\n\nclass Thing{i}:\n  name = 'thing_{i}'\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """A folder of 14 .py files plus things the builder must skip."""
  root = tmp_path_factory.mktemp("src")
  included = {}
  for i in range(14):
    rel = f"pkg{i % 3}/mod_{i}.py" if i % 2 else f"top_{i}.py"
    included[rel] = _snippet(i) * (1 + i % 4)
  for rel, text in included.items():
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(text)
  (root / "tests").mkdir()
  (root / "tests" / "test_x.py").write_text("assert True\n")  # excluded dir
  (root / "empty.py").write_text("")  # below min_bytes
  (root / "latin1.py").write_bytes(b"x = '\xe9'\n")  # not UTF-8: skipped
  (root / "notes.txt").write_text("not python\n")  # wrong suffix
  (root / "__pycache__").mkdir()
  (root / "__pycache__" / "cached.py").write_text("x = 1\n")
  return root, included


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def built(corpus, data_dir):
  return builders.build("code_corpus", data_dir, source_dir=corpus[0], validation_fraction=0.2)


@pytest.fixture(scope="module")
def sp(corpus, tmp_path_factory):
  texts = list(corpus[1].values())
  return tokenizer.train_sentencepiece(texts, tmp_path_factory.mktemp("sp") / "sp", vocab_size=384)


def _records(builder, split):
  src = builder.as_data_source(split)
  return {src[i]["path"].decode(): src[i]["text"].decode() for i in range(len(src))}


def _config(**kw):
  kw.setdefault("read_threads", 0)
  return pipeline.DataConfig(**kw)


def _take(it, n):
  return [next(it) for _ in range(n)]


def _equal(a, b):
  return len(a) == len(b) and all(
      x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x) for x, y in zip(a, b))


def _stream(batches):
  """Real tokens of the batches, in order, split into documents at EOS."""
  ids = np.concatenate([b["inputs"][b["segment_ids"] > 0] for b in batches]).tolist()
  docs, cur = [], []
  for i in ids:
    cur.append(i)
    if i == EOS:
      docs.append(cur)
      cur = []
  return docs, cur


# ----------------------------------------------------------------------------------------- builders


def test_builder_writes_array_record_split_by_file(built, corpus):
  root, included = corpus
  files = sorted(p.name for p in pathlib.Path(built.data_dir).iterdir())
  assert any(".array_record-" in f and "train" in f for f in files), files
  assert any(".array_record-" in f and "validation" in f for f in files), files
  train, val = _records(built, "train"), _records(built, "validation")
  assert val and train and not set(train) & set(val)
  assert {**train, **val} == included  # skipped: tests/, empty, non-UTF-8, .txt, __pycache__
  assert set(val) == set(builders.split_files(sorted(included), 0.2)["validation"])


def test_builder_is_idempotent_and_never_stale(built, corpus, data_dir, tmp_path):
  root = corpus[0]
  files = sorted(pathlib.Path(built.data_dir).glob("*.array_record*"))
  for f in files:  # An old mtime: a rewrite shows even where timestamps are coarse.
    os.utime(f, ns=(10**18, 10**18))
  mtimes = [f.stat().st_mtime_ns for f in files]
  assert files and mtimes == [10**18] * len(files)
  again = builders.build("code_corpus", data_dir, source_dir=root, validation_fraction=0.2)
  assert again.builder_config.name == built.builder_config.name
  assert [f.stat().st_mtime_ns for f in files] == mtimes  # not rewritten
  other = builders.build("code_corpus", data_dir, source_dir=root, validation_fraction=0.2,
                         max_files=5)
  assert other.builder_config.name != built.builder_config.name
  assert other.info.splits.total_num_examples == 5
  # Same arguments, changed folder contents -> a new dataset, not the stale one.
  copy = tmp_path / "copy"
  copy.mkdir()
  for i, text in enumerate(list(corpus[1].values())[:4]):
    (copy / f"m{i}.py").write_text(text)
  first = builders.build("code_corpus", data_dir, source_dir=copy)
  (copy / "m9.py").write_text("x = 9\n")
  second = builders.build("code_corpus", data_dir, source_dir=copy)
  assert first.builder_config.name != second.builder_config.name
  assert second.info.splits.total_num_examples == 5


def test_split_keeps_at_least_one_file_each():
  paths = [f"f{i}.py" for i in range(3)]
  assert len(builders.split_files(paths, 0.0)["validation"]) == 1
  splits = builders.split_files(paths, 0.99)
  assert len(splits["train"]) >= 1 and len(splits["validation"]) >= 1
  big = builders.split_files([f"f{i}.py" for i in range(2000)], 0.1)
  assert 150 < len(big["validation"]) < 250  # the fraction is honoured, by file


def test_stdlib_default_and_text_corpus(data_dir, tmp_path):
  code = builders.build("code_corpus", data_dir, max_files=12)
  paths = list(_records(code, "train")) + list(_records(code, "validation"))
  assert len(paths) == 12 and not any(p.startswith(("test/", "site-packages/")) for p in paths)
  for i, ext in enumerate([".md", ".txt", ".rst", ".py"]):
    (tmp_path / f"doc{i}{ext}").write_text(f"Chapter {i}\n\nSome prose about topic {i}.\n")
  text = builders.build("text_corpus", data_dir, source_dir=tmp_path)
  assert text.info.splits.total_num_examples == 3  # .py is not prose


def test_builder_errors(tmp_path, data_dir):
  with pytest.raises(ValueError, match="No .py files"):
    builders.build("code_corpus", data_dir, source_dir=tmp_path)
  with pytest.raises(ValueError, match="not a directory"):
    builders.build("code_corpus", data_dir, source_dir=tmp_path / "missing")
  with pytest.raises(ValueError, match="Unknown dataset"):
    builders.build("nope", data_dir)
  (tmp_path / "only.py").write_text("x = 1\n")
  with pytest.raises(ValueError, match="at least 2 files"):
    builders.build("code_corpus", data_dir, source_dir=tmp_path)
  with pytest.raises(ValueError, match="validation_fraction"):
    builders.build("code_corpus", data_dir, source_dir=tmp_path, validation_fraction=1.5)


# ----------------------------------------------------------------------------------------- pipeline

DOCS = [f"doc {i}: " + "abcdefghij"[: i % 10] * (1 + (i * 7) % 9) for i in range(40)]


def test_packing_is_exact():
  tok, seq_len = CharTokenizer(), 16
  cfg = _config(seq_len=seq_len, batch_size=3, num_epochs=1, shuffle=False, drop_remainder=False)
  batches = list(pipeline.make_dataset(cfg, tok, source=DOCS, process_index=0, process_count=1))
  for b in batches:
    assert {k: (v.shape, v.dtype) for k, v in b.items()} == {
        "inputs": ((3, seq_len), np.int32), "targets": ((3, seq_len), np.int32),
        "segment_ids": ((3, seq_len), np.int32), "positions": ((3, seq_len), np.int32),
        "loss_mask": ((3, seq_len), np.float32)}
  rows = {k: np.concatenate([b[k] for b in batches]) for k in pipeline.FEATURES}
  # Reference: every document + EOS, concatenated, cut into rows; the tail row zero-padded.
  stream = [t for d in DOCS for t in tok.encode(d) + [EOS]]
  ends = np.cumsum([len(d) + 1 for d in DOCS])
  n = len(stream)
  flat = {k: v.reshape(-1) for k, v in rows.items()}
  assert flat["inputs"][:n].tolist() == stream
  assert not flat["inputs"][n:].any() and not flat["segment_ids"][n:].any()  # padding only at end
  assert (flat["segment_ids"][:n] > 0).all()
  is_eos = np.zeros(n, bool)
  is_eos[ends - 1] = True
  nxt = np.array(stream[1:] + [0])
  # Loss rule: token i predicts token i + 1 of its own document; EOS (and padding) predicts nothing.
  assert np.array_equal(flat["loss_mask"][:n], (~is_eos).astype(np.float32))
  assert np.array_equal(flat["targets"][:n], np.where(is_eos, 0, nxt))
  assert not flat["loss_mask"][n:].any()
  # Segments: consecutive 1, 2, 3... per document piece in a row; positions restart per piece.
  doc_of = np.repeat(np.arange(len(DOCS)), [len(d) + 1 for d in DOCS])
  doc_of = np.concatenate([doc_of, np.full(rows["inputs"].size - n, -1)]).reshape(-1, seq_len)
  for r, row_docs in enumerate(doc_of):
    real = row_docs >= 0
    if not real.any():  # a pad row filling the last batch
      assert not any(rows[k][r].any() for k in pipeline.FEATURES)
      continue
    seg = rows["segment_ids"][r][real]
    assert seg[0] == 1 and np.array_equal(seg - 1, row_docs[real] - row_docs[0])
    for s in np.unique(seg):
      assert np.array_equal(rows["positions"][r][rows["segment_ids"][r] == s],
                            np.arange((seg == s).sum()))


def test_sentencepiece_tfds_end_to_end(built, corpus, data_dir, sp):
  cfg = _config(data_dir=data_dir, seq_len=32, batch_size=4, num_epochs=1, shuffle=False,
                drop_remainder=False,
                builder_kwargs={"source_dir": str(corpus[0]), "validation_fraction": 0.2})
  batches = list(pipeline.make_iterator(cfg, sp, process_index=0, process_count=1))
  assert batches and all(b["inputs"].shape == (4, 32) for b in batches)
  ids = np.concatenate([b["inputs"][b["segment_ids"] > 0] for b in batches]).tolist()
  docs, _ = _split_at(ids, sp.eos_id)
  train = _records(built, "train")
  assert sorted(sp.decode(d) for d in docs) == sorted(train.values())  # the train split only
  evals = pipeline.make_eval_batches(cfg, sp, process_index=0, process_count=1)
  assert evals and all(b["inputs"].shape == (4, 32) for b in evals)
  assert _equal(evals, pipeline.make_eval_batches(cfg, sp, process_index=0, process_count=1))
  n_val = sum(len(sp.encode(t)) + 1 for t in _records(built, "validation").values())
  assert sum(int((b["segment_ids"] > 0).sum()) for b in evals) == n_val
  assert len(pipeline.make_eval_batches(cfg, sp, max_batches=1, process_index=0,
                                        process_count=1)) == 1


def _split_at(ids, eos):
  docs, cur = [], []
  for i in ids:
    if i == eos:
      docs.append(cur)
      cur = []
    else:
      cur.append(i)
  return docs, cur


def test_shuffle_is_seeded_and_epochs_repeat():
  tok = CharTokenizer()

  def first(seed, n=4, **kw):
    it = pipeline.lm_batches_from_texts(DOCS, tok, seq_len=16, batch_size=2, seed=seed, **kw)
    return _take(it, n)

  assert _equal(first(0), first(0))
  assert not _equal(first(0), first(1))
  unshuffled = first(0, shuffle=False)
  assert not _equal(first(0), unshuffled)
  cfg = _config(seq_len=16, batch_size=2, num_epochs=2, seed=5, drop_remainder=False)
  docs, rest = _stream(list(pipeline.make_dataset(cfg, tok, source=DOCS, process_index=0,
                                                  process_count=1)))
  one_epoch = sorted(tok.encode(d) + [EOS] for d in DOCS)
  assert not rest and len(docs) == 2 * len(DOCS)
  assert sorted(docs[:len(DOCS)]) == one_epoch and sorted(docs[len(DOCS):]) == one_epoch
  assert docs[:len(DOCS)] != docs[len(DOCS):]  # reshuffled each epoch


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_slices_make_the_global_batch(process_count):
  tok = CharTokenizer()
  cfg = _config(seq_len=16, batch_size=8, seed=3)
  global_batches = _take(pipeline.make_iterator(cfg, tok, source=DOCS, process_index=0,
                                                process_count=1), 5)
  slices = [_take(pipeline.make_iterator(cfg, tok, source=DOCS, process_index=p,
                                         process_count=process_count), 5)
            for p in range(process_count)]
  for step, full in enumerate(global_batches):
    for k in pipeline.FEATURES:
      parts = [s[step][k] for s in slices]
      assert all(p.shape[0] == 8 // process_count for p in parts)
      assert np.array_equal(np.concatenate(parts), full[k])


def test_shard_documents_gives_disjoint_documents():
  tok = CharTokenizer()
  cfg = _config(seq_len=16, batch_size=4, num_epochs=1, shard_documents=True,
                drop_remainder=False)
  per_process = [_stream(list(pipeline.make_dataset(cfg, tok, source=DOCS, process_index=p,
                                                    process_count=2)))[0] for p in range(2)]
  assert all(b for b in per_process)
  assert sorted(per_process[0] + per_process[1]) == sorted(tok.encode(d) + [EOS] for d in DOCS)


@pytest.mark.parametrize("doc_len", [None, 15])
def test_state_restore_is_exact(doc_len):
  """doc_len=15: every document + EOS fills a row exactly, so the packer's state has no remainder
  (the case grain 0.2.18 gets wrong after a JSON round trip)."""
  tok = CharTokenizer()
  docs = DOCS if doc_len is None else [f"{i:02d}" + "x" * (doc_len - 2) for i in range(40)]
  make = lambda: pipeline.lm_batches_from_texts(docs, tok, seq_len=16, batch_size=2, seed=7)
  for skip in (0, 1, 3):
    it = make()
    _take(it, skip)
    state = json.loads(json.dumps(it.get_state()))  # what grain.checkpoint writes
    expected = _take(it, 3)
    fresh = make()
    fresh.set_state(state)
    assert _equal(_take(fresh, 3), expected), skip


def test_orbax_checkpoint_resumes_exactly(tmp_path):
  import orbax.checkpoint as ocp
  tok = CharTokenizer()
  docs = [f"{i:02d}" + "x" * 13 for i in range(40)]  # + EOS = one row: a remainder-free state
  make = lambda: pipeline.lm_batches_from_texts(docs, tok, seq_len=16, batch_size=2, seed=1)
  it = make()
  _take(it, 3)
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckpt:
    ckpt.save(tmp_path / "ckpt", ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    expected = _take(it, 3)
    fresh = make()
    ckpt.restore(tmp_path / "ckpt",
                 ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(fresh)))
  assert _equal(_take(fresh, 3), expected)


def test_worker_processes_match_and_resume():
  tok = CharTokenizer()
  cfg = _config(seq_len=16, batch_size=2, seed=2)
  expected = _take(pipeline.make_iterator(cfg, tok, source=DOCS, process_index=0,
                                          process_count=1), 6)
  it = pipeline.make_iterator(dataclasses.replace(cfg, worker_count=1), tok, source=DOCS,
                              process_index=0, process_count=1)
  try:  # One worker process (spawned once: it is the slow part).
    assert _equal(_take(it, 3), expected[:3])  # one worker: same order as in-process
    state = json.loads(json.dumps(it.get_state()))
    assert _equal(_take(it, 3), expected[3:])
    it.set_state(state)
    assert _equal(_take(it, 3), expected[3:])
  finally:
    it.close()


def test_bad_inputs_give_clear_errors(tmp_path):
  tok = CharTokenizer()
  with pytest.raises(ValueError, match="divisible by the process count 4"):
    pipeline.make_iterator(_config(batch_size=6), tok, source=DOCS, process_index=0,
                           process_count=4)
  with pytest.raises(ValueError, match="seq_len must be >= 2"):
    pipeline.make_iterator(_config(seq_len=1), tok, source=DOCS, process_index=0, process_count=1)
  with pytest.raises(ValueError, match="no records"):
    pipeline.make_iterator(_config(), tok, source=[], process_index=0, process_count=1)
  with pytest.raises(ValueError, match="eos_id"):
    pipeline.make_iterator(_config(), type("NoEos", (), {"eos_id": None})(), source=DOCS,
                           process_index=0, process_count=1)
  with pytest.raises(ValueError, match="No .py files"):
    pipeline.make_iterator(_config(data_dir=str(tmp_path / "d"),
                                   builder_kwargs={"source_dir": str(tmp_path)}), tok,
                           process_index=0, process_count=1)
  with pytest.raises(ValueError, match="process_index"):
    pipeline.make_iterator(_config(), tok, source=DOCS, process_index=2, process_count=2)


def test_jsonl_configs_stream_the_file_and_keep_their_names(tmp_path, monkeypatch):
  """Making a filtered_corpus / synthetic config reads the records one at a time (a corpus of any
  size: `read_records`' list is never built) and hashes the file in chunks to the same name."""
  import hashlib  # pylint: disable=g-import-not-at-top
  from phi_jax.data.builders import filtered_corpus, jsonl, synthetic  # pylint: disable=g-import-not-at-top
  rows = [{"id": f"d{i}", "text": f"def f{i}():\n  return {i}\n" * (i % 7 + 1)} for i in range(50)]
  (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  monkeypatch.setattr(jsonl, "_CHUNK_BYTES", 100)  # many chunks

  def no_list(source):
    raise AssertionError("make_config read every record into a list")

  monkeypatch.setattr(filtered_corpus, "read_records", no_list)
  monkeypatch.setattr(synthetic, "read_records", no_list)
  config = filtered_corpus.FilteredCorpus.make_config(tmp_path, validation_fraction=0.1)
  whole = (tmp_path / "records.jsonl").read_bytes() + repr((0.1, None)).encode()
  assert config.fingerprint == hashlib.sha256(whole).hexdigest()
  assert config.description.startswith("50 records")
  assert filtered_corpus.FilteredCorpus.make_config(
      tmp_path, validation_fraction=0.1, max_files=7).description.startswith("7 records")
  ex = synthetic.SyntheticExercises.make_config(tmp_path, validation_fraction=0.1)
  assert ex.fingerprint == hashlib.sha256((tmp_path / "records.jsonl").read_bytes()
                                          + repr(0.1).encode()).hexdigest()
  (tmp_path / "records.jsonl").write_text(json.dumps(rows[0]) + "\n")
  with pytest.raises(ValueError, match="at least 2 records"):
    filtered_corpus.FilteredCorpus.make_config(tmp_path)
  (tmp_path / "records.jsonl").write_text(json.dumps(rows[0]) + "\n" + '{"id": "x"}\n')
  with pytest.raises(ValueError, match=r"records.jsonl:2: each record needs a string 'text'"):
    filtered_corpus.FilteredCorpus.make_config(tmp_path)
