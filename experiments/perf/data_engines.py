"""The same dedup stages on three engines: datatrove (local executor), Apache Beam, Ray Data.

Stages, identical code for every engine (`phi_jax.curation.minhash_lsh`): read the gzip JSONL
shards of the planted corpus (`phi_jax.curation.planted`, written before timing), compute each
document's shingle hashes, MinHash and LSH band keys (the map), group the band entries by key
(the shuffle) and count the candidate pairs (documents sharing a band). The candidate count must
agree across engines. Prints one JSON line: wall seconds, documents/s per worker, peak summed
RSS of the driver and all its descendants and their CPU seconds (`engine.PeakMemory`; the
machine is shared, so documents per CPU second is the figure that load does not distort).

Run each engine from its own throwaway venv (the engine installed there, phi_jax and its
dependencies reached through a .pth file), e.g.
    /work/scratch/engines/beam/venv/bin/python experiments/perf/data_engines.py --engine=beam
Flags: --engine=datatrove|beam|ray --num_docs=4000 --shards=8 --workers=2 --dir=/tmp/engines
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import shutil
import sys
import time

import numpy as np

from phi_jax.curation import dedup as dedup_lib
from phi_jax.curation import engine as engine_lib
from phi_jax.curation import minhash_lsh
from phi_jax.curation import planted
from phi_jax.curation import shards

CONFIG = dedup_lib.DedupConfig(threshold=0.7)


def shard_entries(s: int, input_dir: str, num_shards: int) -> list[tuple[int, int]]:
  """(band key, gid) of every band of every document of shard s: the map, on any engine."""
  signer = minhash_lsh._signer(CONFIG)  # pylint: disable=protected-access
  out = []
  path = shards.shard_path(input_dir, s, num_shards)
  for k, row in enumerate(shards.read_records(path)):
    h = signer.hashes(row["text"])
    if len(h):
      g = minhash_lsh.gid(s, k)
      out.extend((int(key), g) for key in signer.band_keys(signer.minhash(h)).tolist())
  return out


def group_pairs(members: list[int]) -> int:
  n = len(set(members))
  return n * (n - 1) // 2


def run_datatrove(args, input_dir: str, work: pathlib.Path) -> int:
  job = minhash_lsh.DedupJob(input_dir, str(work / "out"), str(work / "work"), args.shards,
                             args.shards, CONFIG)
  engine = engine_lib.Engine(workers=args.workers)
  engine.map("signatures", functools.partial(minhash_lsh.signatures_task, job=job), args.shards,
             work / "tasks" / "signatures")
  engine.map("pairs", functools.partial(minhash_lsh.pairs_task, job=job), args.shards,
             work / "tasks" / "pairs")
  total = 0
  for s in range(args.shards):
    for p in range(args.shards):
      total += len(shards.load_array(work / "work" / "pairs" / f"s{s:05d}" / f"p{p:05d}.npy"))
  return total


def run_beam(args, input_dir: str, work: pathlib.Path) -> int:
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top
  options = pipeline_options.PipelineOptions(direct_num_workers=args.workers, runner="DirectRunner",
                                             direct_running_mode="multi_processing")
  out = str(work / "beam_total")
  with beam.Pipeline(options=options) as p:
    _ = (p | beam.Create(list(range(args.shards)))
         | beam.FlatMap(shard_entries, input_dir=input_dir, num_shards=args.shards)
         | beam.GroupByKey()
         | beam.Map(lambda kv: group_pairs(list(kv[1])))
         | beam.CombineGlobally(sum)
         | beam.io.WriteToText(out, shard_name_template=""))
  return int(pathlib.Path(out).read_text().strip())


def run_ray(args, input_dir: str, work: pathlib.Path) -> int:
  del work
  import ray  # pylint: disable=g-import-not-at-top
  ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
  try:
    ds = ray.data.from_items([{"s": s} for s in range(args.shards)])
    # Arrow has no uint64 Python ints: keys as signed 64-bit (the same grouping).
    ds = ds.flat_map(lambda r: [{"key": k - (1 << 64) if k >= 1 << 63 else k, "gid": g}
                                for k, g in shard_entries(r["s"], input_dir, args.shards)])
    ds = ds.groupby("key").map_groups(
        lambda batch: {"pairs": np.asarray([group_pairs(list(batch["gid"]))])},
        batch_format="numpy")
    return int(ds.sum("pairs"))
  finally:
    ray.shutdown()


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--engine", required=True, choices=("datatrove", "beam", "ray"))
  parser.add_argument("--num_docs", type=int, default=4000)
  parser.add_argument("--shards", type=int, default=8)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--dir", default="/tmp/phi_jax_engines")
  args = parser.parse_args()
  root = pathlib.Path(args.dir)
  input_dir = root / f"corpus_{args.num_docs}_{args.shards}"
  if not (input_dir / "done").exists():
    for s in range(args.shards):
      shards.write_records(shards.shard_path(input_dir, s, args.shards),
                           planted.shard(s, args.shards, args.num_docs))
    (input_dir / "done").touch()
  work = root / f"run_{args.engine}"
  shutil.rmtree(work, ignore_errors=True)
  work.mkdir(parents=True)
  run = {"datatrove": run_datatrove, "beam": run_beam, "ray": run_ray}[args.engine]
  start = time.time()
  with engine_lib.PeakMemory() as mem:
    pairs = run(args, str(input_dir), work)
  seconds = time.time() - start
  print(json.dumps({"engine": args.engine, "num_docs": args.num_docs, "shards": args.shards,
                    "workers": args.workers, "seconds": round(seconds, 2),
                    "docs_per_s_per_worker": round(args.num_docs / seconds / args.workers, 1),
                    "cpu_s": round(mem.cpu_seconds, 1),
                    "docs_per_cpu_s": round(args.num_docs / max(mem.cpu_seconds, 1e-9), 1),
                    "peak_rss_mib": round(mem.peak_bytes / 2**20, 1),
                    "processes_at_peak": mem.peak_processes, "candidate_pairs": pairs,
                    "python": sys.version.split()[0], "load_avg": os.getloadavg()[0]}))


if __name__ == "__main__":
  main()
