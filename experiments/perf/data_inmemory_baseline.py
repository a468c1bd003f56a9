"""Today's in-memory dedup and decontam on the planted corpus: the baseline of the scale test.

    python experiments/perf/data_inmemory_baseline.py --num_docs=20000

Generates the first N documents of `phi_jax.curation.planted` (the scale test's corpus, the
same seed) and times `dedup.near_duplicates` (threshold 0.7, as configs/data/scale_test.py) and
`decontam.scan` (HumanEval, defaults; `decontam_per_doc`: chunk_size=1, one TF-IDF transform
per document as before the batching, `decontam`: the default chunks) in this one process.
Prints one JSON line with
CPU seconds (process time: what load on a shared machine does not change much), wall seconds,
documents per CPU second and the peak RSS of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

from phi_jax.curation import decontam, dedup, planted


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--num_docs", type=int, default=20000)
  args = parser.parse_args()
  texts = [planted.document(n)["text"] for n in range(args.num_docs)]
  out = {"num_docs": args.num_docs, "load_avg_start": os.getloadavg()[0]}
  decontam.index_for("humaneval")  # built once, outside the timing (as the sharded stage)
  for name, fn in (("dedup", lambda: dedup.near_duplicates(texts, threshold=0.7)),
                   ("decontam_per_doc", lambda: decontam.scan(texts, ["humaneval"], chunk_size=1)),
                   ("decontam", lambda: decontam.scan(texts, ["humaneval"]))):
    cpu, wall = time.process_time(), time.time()
    fn()
    cpu, wall = time.process_time() - cpu, time.time() - wall
    out[name] = {"cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
                 "docs_per_cpu_s": round(args.num_docs / cpu, 1)}
  out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
  out["load_avg_end"] = os.getloadavg()[0]
  print(json.dumps(out))


if __name__ == "__main__":
  main()
