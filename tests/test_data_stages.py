"""The data pipeline CLI (phi_jax/curation/stages.py, `python -m phi_jax.curation`): the tiny filter chain
end to end, skipping finished stages, resuming after a lost stage, the output dataset in the
training pipeline; and the tiny synthetic-exercise chain."""

import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

from phi_jax import sweep
from phi_jax.data import builders, pipeline
from phi_jax.curation import decontam, stages
from phi_jax.data import tokenizer as tokenizers

REPO = pathlib.Path(__file__).resolve().parents[1]
STDLIB = pathlib.Path(sysconfig.get_paths()["stdlib"])
MODULES = ("textwrap.py", "heapq.py", "bisect.py", "fnmatch.py", "shlex.py", "glob.py",
           "colorsys.py", "base64.py", "string.py", "keyword.py", "cmd.py", "sched.py",
           "queue.py", "graphlib.py", "numbers.py", "copy.py", "linecache.py", "stat.py",
           "struct.py", "token.py", "this.py", "reprlib.py", "tabnanny.py", "getopt.py")
CONTAMINATED = ("HumanEval/0", "HumanEval/12", "HumanEval/26")


def _source_dir(root):
  """24 stdlib modules, a near-copy of one (a changed comment), and three documented modules
  that each carry a HumanEval solution."""
  src = root / "src"
  src.mkdir()
  for name in MODULES:
    shutil.copy(STDLIB / name, src / name)
  text = (STDLIB / "textwrap.py").read_text()
  assert "# Hardcode the recognized whitespace characters" in text
  (src / "textwrap_copy.py").write_text(
      text.replace("# Hardcode the recognized whitespace characters", "# The whitespace chars"))
  problems = {p.id: p for p in decontam.load_benchmark("humaneval")}
  for k, task in enumerate(CONTAMINATED):
    (src / f"lesson_{k}.py").write_text(
        f'"""Lesson {k}: a worked example with explanations."""\n\n'
        "# We start from the problem statement in the docstring below.\n"
        + problems[task].code + "\n\n# Try it on a few inputs of your own.\n")
  return src


def _config(src, **quality):
  config = sweep.load_config(str(REPO / "configs/data/stdlib_filtered.py") + ":tiny")
  config.source.source_dir = str(src)
  config.quality.update(quality)
  return config


def _stage_status(lines):
  return {line.split("]")[0][1:]: ("skipped" if "skipped" in line else "ran")
          for line in lines if line.startswith("[") and ("skipped" in line or "kept" in line)}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("pipeline")
  src = _source_dir(root)
  workdir = root / "work"
  lines = []
  summary = stages.run(_config(src), workdir, log=lines.append)
  return src, workdir, summary, lines


def test_filter_pipeline_counts_and_outputs(first_run):
  src, workdir, summary, lines = first_run
  rows = {r["stage"]: r for r in summary["stages"]}
  assert [r["stage"] for r in summary["stages"]] == ["source", "dedup", "quality", "decontam",
                                                     "dataset"]
  assert all(r["status"] == "ran" for r in rows.values()) and _stage_status(lines) == {
      s: "ran" for s in rows}
  n = len(MODULES) + 1 + len(CONTAMINATED)
  assert rows["source"]["documents"] == n
  assert rows["dedup"]["documents"] == n - 1  # the near-copy of textwrap.py
  report = json.loads((workdir / "dedup" / "dedup_report.json").read_text())
  assert [c["ids"] for c in report["clusters"]] == [["textwrap.py", "textwrap_copy.py"]]
  assert rows["quality"]["documents"] == math.ceil(0.75 * (n - 1))

  # decontam removes exactly the lessons that survived the quality filter
  quality_ids = [r["id"] for r in stages.read_records(workdir / "quality" / "records.jsonl")]
  lessons = [i for i in quality_ids if i.startswith("lesson_")]
  assert lessons, "no lesson reached decontam: the test would not exercise it"
  flagged = json.loads((workdir / "decontam" / "decontam_report.json").read_text())["flagged"]
  assert sorted(f["id"] for f in flagged) == lessons
  for f in flagged:
    task = CONTAMINATED[int(f["id"][len("lesson_"):-len(".py")])]
    assert task in [m["item"] for m in f["matches"]]
  assert rows["decontam"]["documents"] == rows["quality"]["documents"] - len(lessons)

  for r in rows.values():  # whitespace tokens and bytes are consistent with the records
    records = stages.read_records(workdir / r["stage"] / "records.jsonl")
    assert r["bytes"] == sum(len(x["text"].encode()) for x in records)
    assert r["whitespace_tokens"] == sum(len(x["text"].split()) for x in records)
  assert rows["dataset"]["documents"] == rows["decontam"]["documents"]
  assert json.loads((workdir / "summary.json").read_text())["stages"] == summary["stages"]
  assert (workdir / "summary.md").read_text().count("\n") == 2 + len(rows)
  metrics = json.loads((workdir / "quality" / "metrics.json").read_text())
  assert metrics["num_test"] + metrics["num_train"] == n - 1  # heuristic labels on all documents
  assert (workdir / "quality" / "classifier.joblib").exists()


def test_output_dataset_trains_through_the_pipeline(first_run):
  _, workdir, summary, _ = first_run
  train = summary["train_config"]
  assert train["data.dataset"] == "filtered_corpus"
  kwargs = {"source_dir": train["data.source_dir"],
            "validation_fraction": train["data.validation_fraction"]}
  builder = builders.build("filtered_corpus", train["data.data_dir"], **kwargs)
  rows = [r for split in ("train", "validation") for r in builder.as_data_source(split)]
  scores = {r["id"]: r["score"] for r in stages.read_records(workdir / "quality" / "scores.jsonl")}
  final = stages.read_records(workdir / "decontam" / "records.jsonl")
  assert sorted(r["id"].decode() for r in rows) == sorted(r["id"] for r in final)
  for r in rows:
    assert math.isclose(r["score"], scores[r["id"].decode()], rel_tol=1e-6)
  tok = tokenizers.load(workdir / "quality" / "tokenizer" / "sp.model")
  cfg = pipeline.DataConfig(name=train["data.dataset"], data_dir=train["data.data_dir"],
                            seq_len=64, batch_size=4, builder_kwargs=kwargs)
  batch = next(pipeline.make_iterator(cfg, tok, process_index=0, process_count=1))
  assert batch["inputs"].shape == (4, 64) and batch["loss_mask"].sum() > 100


def test_rerun_skips_then_resumes_lost_and_changed_stages(first_run):
  src, workdir, summary, _ = first_run
  counts = {r["stage"]: r["documents"] for r in summary["stages"]}
  config = _config(src)
  config.tokenizer = str(workdir / "quality" / "tokenizer" / "sp.model")
  lines = []
  again = stages.run(config, workdir, log=lines.append)
  assert _stage_status(lines) == {s: "skipped" for s in counts}
  assert {r["stage"]: r["documents"] for r in again["stages"]} == counts
  assert all(r["tokenizer_tokens"] > 0 for r in again["stages"])  # counted without rerunning

  shutil.rmtree(workdir / "dataset")  # the last stage's output is lost (or its run was killed)
  lines = []
  stages.run(_config(src), workdir, log=lines.append)
  assert _stage_status(lines) == {"source": "skipped", "dedup": "skipped", "quality": "skipped",
                                  "decontam": "skipped", "dataset": "ran"}
  (workdir / "dataset" / "stage.json").unlink()  # killed after the rename, before the marker
  lines = []
  stages.run(_config(src), workdir, log=lines.append)
  assert _stage_status(lines)["dataset"] == "ran"

  config = _config(src)
  config.decontam.benchmarks = ()  # a changed setting reruns that stage and every later one
  lines = []
  changed = stages.run(config, workdir, log=lines.append)
  assert _stage_status(lines) == {"source": "skipped", "dedup": "skipped", "quality": "skipped",
                                  "decontam": "ran", "dataset": "ran"}
  rows = {r["stage"]: r["documents"] for r in changed["stages"]}
  assert rows["decontam"] == rows["quality"] == counts["quality"]
  stages.run(_config(src), workdir, log=lambda _: None)  # back to the original settings


def test_cli_runs_the_config_and_skips_finished_stages(first_run):
  src, workdir, _, _ = first_run
  stages.run(_config(src), workdir, log=lambda _: None)
  # `python -m phi_jax.data` (the name the data issues use) runs the curation CLI
  run = subprocess.run([sys.executable, "-m", "phi_jax.data",
                        "--config=configs/data/stdlib_filtered.py:tiny", f"--workdir={workdir}",
                        f"--config.source.source_dir={src}"],
                       cwd=REPO, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert run.returncode == 0, run.stderr[-3000:]
  assert "[phi_jax.data] running the data pipeline: python -m phi_jax.curation" in run.stderr
  assert run.stdout.count("skipped") >= 5 and "| stage | status | documents |" in run.stdout
  assert "--config.data.dataset=filtered_corpus" in run.stdout
  bad = subprocess.run([sys.executable, "-m", "phi_jax.curation",
                        "--config=configs/data/stdlib_filtered.py:tiny", f"--workdir={workdir}",
                        "--config.dedup.treshold=0.5"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and "treshold" in bad.stderr


def test_bad_configs_fail_clearly(tmp_path):
  config = sweep.load_config(str(REPO / "configs/data/stdlib_filtered.py") + ":tiny")
  with config.unlocked():
    config.stages = ("source", "dedupe")
  with pytest.raises(ValueError, match=r"Unknown stage\(s\) \['dedupe'\]"):
    stages.run(config, tmp_path)
  with pytest.raises(ValueError, match="Unknown config variant 'small'"):
    sweep.load_config(str(REPO / "configs/data/stdlib_filtered.py") + ":small")


def test_synthetic_exercise_pipeline(tmp_path):
  config = sweep.load_config(str(REPO / "configs/data/synthetic_exercises.py") + ":tiny")
  lines = []
  summary = stages.run(config, tmp_path, log=lines.append)
  rows = {r["stage"]: r for r in summary["stages"]}
  assert list(rows) == ["teacher", "synthetic", "validate", "decontam", "dataset"]
  assert rows["synthetic"]["documents"] == rows["validate"]["documents"] == 24  # correct by
  teacher = json.loads((tmp_path / "teacher" / "teacher.json").read_text())  # construction
  assert teacher["name"] == "procedural:train" and "def " in teacher["probe_answer"]
  flagged = json.loads((tmp_path / "decontam" / "decontam_report.json").read_text())["flagged"]
  assert rows["decontam"]["documents"] == 24 - len(flagged)
  train = summary["train_config"]
  builder = builders.build(train["data.dataset"], train["data.data_dir"],
                           source_dir=train["data.source_dir"],
                           validation_fraction=train["data.validation_fraction"])
  records = [r for split in ("train", "validation") for r in builder.as_data_source(split)]
  assert len(records) == rows["dataset"]["documents"]
  assert all(r["tests"].decode().startswith("assert") and r["prompt"] and r["target"]
             for r in records)
  lines = []
  stages.run(config, tmp_path, log=lines.append)
  assert set(_stage_status(lines).values()) == {"skipped"}
