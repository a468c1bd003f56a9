"""The streaming, sharded pipeline: the same stages over gzip JSONL shards, run by the engine.

`python -m phi_jax.curation --config=... --workdir=DIR --workers=2` (or `config.workers >= 1`)
runs `config.stages` this way instead of in one process (`stages.run`, workers=0). Every stage
reads the previous stage's shards and writes its own, `config.shards` of them, into

    DIR/<stage>/shards/part-SSSSS-of-NNNNN.jsonl.gz   kept documents ('id', 'text', fields)
    DIR/<stage>/shards/_counts/sSSSSS.json            documents, whitespace tokens, bytes
    DIR/<stage>/_work/                                 side files (band buckets, scores, ...)
    DIR/<stage>/_tasks/<step>/                         the engine's logs and per-rank completions
    DIR/<stage>/started.json, stage.json               fingerprint at start; the marker, last

A worker holds one shard (or one band partition) at a time: memory is bounded by the shard size
(`config.shards`: more shards, less memory per worker), not the corpus. A stage whose marker
matches is skipped; one whose settings (or an earlier stage) changed is wiped and rerun, with
every stage after it; one that was killed resumes: its finished ranks (engine completions) are
kept and only the others run again. `workers` does not enter the fingerprints (the same output
on 1 or 16 workers); `shards` does. Supported stages: source, dedup, quality, decontam, dataset
(the stages of `sharded_stages.py`). DIR/summary.json: per-stage counts, seconds and CPU
seconds (all processes), the peak
summed RSS and CPU seconds of the run (all processes), and for the planted corpus
(source.kind='planted', configs/data/scale_test.py) `duplicate_recall` / `contamination_recall`.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import time
from typing import Any, Callable

import ml_collections

from phi_jax.curation import engine as engine_lib
from phi_jax.curation import shards
from phi_jax.curation import sharded_stages
from phi_jax.curation import stages as stages_lib

VERSION = 1  # Bump when a sharded stage's output for the same settings changes.
STARTED = "started.json"


def make_engine(config: ml_collections.ConfigDict) -> engine_lib.Engine:
  options = config.get("executor_options")
  return engine_lib.Engine(workers=int(config.workers), executor=config.get("executor", "local"),
                           options=options.to_dict() if hasattr(options, "to_dict") else
                           dict(options or {}))


def num_shards(config: ml_collections.ConfigDict) -> int:
  n = int(config.get("shards", 0) or 0)
  return n if n > 0 else 4 * int(config.workers)


def _counts(folder: pathlib.Path, n: int) -> dict[str, int]:
  out = {"documents": 0, "whitespace_tokens": 0, "bytes": 0}
  for s in range(n):
    for k, v in shards.read_json(folder / "_counts" / f"s{s:05d}.json").items():
      out[k] = out.get(k, 0) + v
  return out


def run(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
        log: Callable[[str], None] = print) -> dict[str, Any]:
  """Runs (or resumes) `config.stages` over shards on the engine; returns the summary."""
  workdir = pathlib.Path(workdir).absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  names = list(config.stages)
  unsupported = [s for s in names if s not in sharded_stages.STAGES]
  if unsupported:
    raise ValueError(f"Stage(s) {unsupported} have no sharded form (sharded: "
                     f"{sorted(sharded_stages.STAGES)}): run this config with workers=0")
  if names[0] != "source":
    raise ValueError(f"The sharded pipeline starts with 'source', got {names}")
  missing = [s for s in names if s not in config]
  if missing:
    raise ValueError(f"The config has no section for stage(s) {missing}")
  engine = make_engine(config)
  n = num_shards(config)
  stages_lib.write_json(workdir / "config.json", json.loads(config.to_json_best_effort()))
  ctx = stages_lib.Context(config, workdir, progress=False)
  previous, rows, start = "", [], time.time()
  with engine_lib.PeakMemory() as memory:
    for k, name in enumerate(names):
      section = config[name]
      key_fn = (sharded_stages.source_fingerprint if name == "source" else
                stages_lib.INPUT_FINGERPRINTS.get(name))
      settings = {"sharded": VERSION, "shards": n,
                  "settings": section.to_dict() if hasattr(section, "to_dict") else section}
      fp = stages_lib.fingerprint(name, settings, previous, key_fn(ctx, section) if key_fn else "")
      stage_dir = workdir / name
      marker = stages_lib.read_marker(stage_dir)
      if marker is not None and marker.get("fingerprint") == fp:
        log(f"[{name}] finished before (fingerprint {fp}): skipped")
        status = "skipped"
      else:
        started = stage_dir / STARTED
        if started.exists() and shards.read_json(started).get("fingerprint") == fp:
          log(f"[{name}] resuming (finished shards are kept)")
        else:
          shutil.rmtree(stage_dir, ignore_errors=True)
          stage_dir.mkdir(parents=True)
          shards.write_json(started, {"fingerprint": fp})
        io = sharded_stages.StageIO(
            input_dir=str(workdir / names[k - 1] / "shards") if k else "",
            output_dir=str(stage_dir / "shards"), work_dir=str(stage_dir / "_work"),
            tasks_dir=str(stage_dir / "_tasks"), num_shards=n)
        log(f"[{name}] running on {n} shards, {engine.workers} worker(s) ({engine.executor})")
        memory.sample()
        t0, cpu0 = time.time(), memory.cpu_seconds
        info = sharded_stages.STAGES[name](ctx, section, io, engine)
        memory.sample()
        marker = {"stage": name, "fingerprint": fp, "previous": previous, "version": VERSION,
                  "counts": _counts(stage_dir / "shards", n), "seconds": round(time.time() - t0, 2),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "info": info,
                  "shards": n, "cpu_seconds": round(memory.cpu_seconds - cpu0, 1)}
        stages_lib.write_json(stage_dir / stages_lib.MARKER, marker)
        status = "ran"
        log(f"[{name}] kept {marker['counts']['documents']:,} document(s) in "
            f"{marker['seconds']:.1f}s")
      row = {"stage": name, "status": status, "seconds": float(marker["seconds"]),
             "cpu_seconds": marker.get("cpu_seconds")}
      row.update(marker["counts"])
      rows.append(row)
      previous = fp
    # the recalls read every shard once more: inside the measured window (the run's peak memory)
    recall = (sharded_stages.planted_recall(workdir, names, n)
              if config.source.kind == "planted" else {})
  final = stages_lib.read_marker(workdir / names[-1]) or {}
  summary = {"workdir": str(workdir), "stages": rows,
             "train_config": final.get("info", {}).get("train_config"),
             "workers": engine.workers, "shards": n, "executor": engine.executor,
             "seconds": round(time.time() - start, 2),
             "peak_rss_mib": round(memory.peak_bytes / 2**20, 1),
             "processes_at_peak": memory.peak_processes,
             "cpu_seconds": round(memory.cpu_seconds, 1)}
  summary.update(recall)
  stages_lib.write_json(workdir / "summary.json", summary)
  table = stages_lib.markdown_table(rows)
  (workdir / "summary.md").write_text(table + "\n")
  log(table)
  log(f"peak RSS (all processes) {summary['peak_rss_mib']:,.0f} MiB, CPU {summary['cpu_seconds']}"
      f" s, wall {summary['seconds']} s")
  for key in ("duplicate_recall", "contamination_recall"):
    if key in summary:
      log(f"{key}: {summary[key]}")
  if summary["train_config"]:
    log("Train on it with: " + " ".join(f"--config.{k}={v}"
                                        for k, v in summary["train_config"].items()))
  return summary
