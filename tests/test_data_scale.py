"""The sharded, streaming pipeline (phi_jax.curation.sharded) on datatrove's local executor."""

import json
import os
import pathlib
import time

import numpy as np
import pytest

pytest.importorskip("datatrove")

from phi_jax.curation import dedup  # noqa: E402
from phi_jax.curation import engine as engine_lib  # noqa: E402
from phi_jax.curation import minhash_lsh  # noqa: E402
from phi_jax.curation import planted  # noqa: E402
from phi_jax.curation import sharded  # noqa: E402
from phi_jax.curation import shards  # noqa: E402


def _texts(n=240):
  texts = [planted.document(k, seed=3, dup_rate=0.25, contam_rate=0.0)["text"] for k in range(n)]
  texts[7] = texts[3]  # an exact copy
  texts[11] = texts[3]
  texts[20] = "   "  # no tokens: never a duplicate
  texts[21] = ""
  return texts


def test_sharded_clusters_equal_in_memory_near_duplicates(tmp_path):
  texts = _texts()
  expected = dedup.near_duplicates(texts, threshold=0.7)
  got = minhash_lsh.near_duplicates(texts, tmp_path, engine_lib.Engine(workers=1), num_shards=3,
                                    num_partitions=2, threshold=0.7)
  assert len(expected) >= 10 and any({3, 7, 11} <= set(c) for c in expected)  # has clusters
  assert got == expected


def test_verification_drops_candidates_below_threshold(tmp_path):
  texts = _texts()
  loose = minhash_lsh.near_duplicates(texts, tmp_path / "a", engine_lib.Engine(workers=1),
                                      num_shards=2, threshold=0.5)
  strict = minhash_lsh.near_duplicates(texts, tmp_path / "b", engine_lib.Engine(workers=1),
                                       num_shards=2, threshold=0.9)
  assert loose == dedup.near_duplicates(texts, threshold=0.5)
  assert strict == dedup.near_duplicates(texts, threshold=0.9)
  assert sum(map(len, strict)) < sum(map(len, loose))


REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(tmp_path, num_docs=360, workers=2, shards_=4):
  from phi_jax import config_args  # pylint: disable=g-import-not-at-top
  c = config_args.load_config(f"{REPO}/configs/data/scale_test.py:num_docs={num_docs},"
                        f"workers={workers},shards={shards_}")
  c.source.contam_rate = 0.05
  c.quality.update(num_labels=120, n_estimators=10, batch_size=32, max_len=64,
                   tokenizer_vocab_size=512, tokenizer_train_bytes=300_000)
  c.dataset.validation_fraction = 0.1
  return c


def test_local_executor_two_workers_end_to_end(tmp_path):
  config = _config(tmp_path, shards_=2)
  summary = sharded.run(config, tmp_path / "run", log=lambda _: None)
  by_stage = {r["stage"]: r for r in summary["stages"]}
  assert [r["stage"] for r in summary["stages"]] == list(config.stages)
  assert by_stage["source"]["documents"] == 360
  assert summary["planted_duplicates"] > 5
  assert summary["duplicate_recall"] >= 0.95
  assert summary["planted_contaminated_reaching_decontam"] > 5
  assert summary["contamination_recall"] >= 0.95
  assert summary["unplanted_flagged"] == 0
  # quality keeps ceil(0.9 x N) of what dedup kept; decontam drops what it flagged
  assert by_stage["quality"]["documents"] == int(np.ceil(0.9 * by_stage["dedup"]["documents"]))
  decontam = json.loads((tmp_path / "run" / "decontam" / "stage.json").read_text())
  assert by_stage["decontam"]["documents"] == (by_stage["quality"]["documents"]
                                               - decontam["info"]["flagged"])
  # The dataset is what training reads: the filtered_corpus builder finds it prepared.
  from phi_jax.data import builders  # pylint: disable=g-import-not-at-top
  train = summary["train_config"]
  builder = builders.build("filtered_corpus", train["data.data_dir"],
                           source_dir=train["data.source_dir"],
                           validation_fraction=train["data.validation_fraction"])
  splits = {k: v.num_examples for k, v in builder.info.splits.items()}
  assert sum(splits.values()) == by_stage["dataset"]["documents"] and min(splits.values()) > 0
  source = builder.as_data_source("train")
  ids = {source[i]["id"].decode() for i in range(len(source))}
  kept = {r["id"] for s in range(2) for r in shards.read_records(
      shards.shard_path(tmp_path / "run" / "dataset" / "shards", s, 2))}
  assert ids < kept
  assert summary["peak_rss_mib"] > 0 and summary["workers"] == 2


_FORKS = []
os.register_at_fork(before=lambda: _FORKS.append(os.getpid()))


def test_local_executor_never_forks_this_process(tmp_path):
  """Workers and datatrove's rank-queue manager start by forkserver: os.fork() in a process with
  JAX's threads can deadlock the child (JAX warns). A fork here would run the before-hook."""
  import multiprocess  # pylint: disable=g-import-not-at-top
  before = multiprocess.get_start_method(allow_none=True)
  del _FORKS[:]
  engine_lib.Engine(workers=2).map("sleep", time.sleep, num_tasks=2, logging_dir=tmp_path / "l")
  assert _FORKS == []
  assert multiprocess.get_start_method(allow_none=True) == before  # the default is restored
  assert sorted(os.listdir(tmp_path / "l" / "completions")) == ["00000", "00001"]


def test_resume_redoes_only_the_killed_shard_and_reruns_from_changed_stage(tmp_path):
  config = _config(tmp_path, num_docs=200, workers=1, shards_=4)
  config.stages = ("source", "dedup")
  work = tmp_path / "run"
  sharded.run(config, work, log=lambda _: None)
  out = work / "dedup" / "shards"
  before = {s: shards.shard_path(out, s, 4).read_bytes() for s in range(4)}
  mtimes = {s: shards.shard_path(out, s, 4).stat().st_mtime_ns for s in range(4)}
  # "kill" the dedup stage while its filter step was on shard 2
  (work / "dedup" / "stage.json").unlink()
  (work / "dedup" / "_tasks" / "filter" / "completions" / "00002").unlink()
  shards.shard_path(out, 2, 4).unlink()
  logs = []
  summary = sharded.run(config, work, log=logs.append)
  assert [r["status"] for r in summary["stages"]] == ["skipped", "ran"]
  assert any("resuming" in line for line in logs)
  assert {s: shards.shard_path(out, s, 4).read_bytes() for s in range(4)} == before
  assert all(shards.shard_path(out, s, 4).stat().st_mtime_ns == mtimes[s] for s in (0, 1, 3))
  # a changed dedup setting reruns dedup (wiped), not source
  config.dedup.threshold = 0.9
  summary = sharded.run(config, work, log=lambda _: None)
  assert [r["status"] for r in summary["stages"]] == ["skipped", "ran"]
  assert summary["stages"][1]["documents"] >= summary["stages"][0]["documents"] - sum(
      1 for s in range(4) for r in shards.read_records(shards.shard_path(
          work / "source" / "shards", s, 4)) if r.get("plant"))


def test_unsupported_stage_and_missing_engine_errors_are_actionable(tmp_path):
  config = _config(tmp_path)
  config.stages = ("source", "teacher")
  with pytest.raises(ValueError, match="workers=0"):
    sharded.run(config, tmp_path / "x", log=lambda _: None)
  with pytest.raises(ValueError, match="workers must be >= 1"):
    engine_lib.Engine(workers=0)


def test_planted_documents_are_deterministic_and_plants_are_near_duplicates():
  a = planted.shard(1, 3, 300, seed=5)
  b = planted.shard(1, 3, 300, seed=5)
  assert a == b and len(a) == 100 and a[0]["id"] == "doc-000000100"
  rows = [planted.document(n, seed=5, dup_rate=0.3) for n in range(200)]
  by_id = {r["id"]: r for r in rows}
  copies = [r for r in rows if (r.get("plant") or {}).get("kind") == "duplicate"]
  assert copies
  for r in copies:
    sim = dedup.jaccard(dedup.shingles(r["text"]), dedup.shingles(by_id[r["plant"]["of"]]["text"]))
    assert 0.6 < sim < 1.0
  code = planted.renamed_solution("def add(a, b):\n  '''Adds.'''\n  return len(a) + b\n",
                                  __import__("random").Random(0))
  assert "add" not in code and "Adds" not in code and "len(" in code


def test_jsonl_source_glob_keeps_corpus_order_in_contiguous_shards(tmp_path):
  texts = _texts(60)
  for f in range(2):
    with open(tmp_path / f"in{f}.jsonl", "w") as out:
      for n in range(f * 30, (f + 1) * 30):
        out.write(json.dumps({"text": texts[n], "lang": "py"}) + "\n")
  config = _config(tmp_path, workers=1, shards_=4)
  config.stages = ("source", "dedup")
  config.source.update(kind="jsonl", path=str(tmp_path / "in*.jsonl"), id_key="")
  sharded.run(config, tmp_path / "run", log=lambda _: None)
  rows = [r for s in range(4) for r in shards.read_records(
      shards.shard_path(tmp_path / "run" / "source" / "shards", s, 4))]
  assert [r["id"] for r in rows] == [str(n) for n in range(60)]
  assert [r["text"] for r in rows] == texts and rows[0]["lang"] == "py"
  kept = [r["id"] for s in range(4) for r in shards.read_records(
      shards.shard_path(tmp_path / "run" / "dedup" / "shards", s, 4))]
  removed = {i for c in dedup.near_duplicates(texts, threshold=0.7) for i in c[1:]}
  assert kept == [str(n) for n in range(60) if n not in removed] and removed
