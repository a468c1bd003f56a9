"""Decontamination with the lexical pre-filter against parsing every document, on the scale test's
planted corpus.

    python experiments/perf/decontam_prefilter.py --num_docs=4000 --reps=3

`phi_jax`: `decontam.decontaminate` with the default config (the AST test only on the documents
`lexical_filter` passes); `reference`: the same with `candidate_dice=0`, every document with a
`def` parsed (decontamination before the pre-filter). Repetitions are interleaved (reference,
phi_jax, reference, ...) in one process with the benchmark index built once outside the timing.
Prints one JSON line: CPU ms per document (process time) of each repetition, the medians, their
ratio (reference / phi_jax: > 1 is faster), documents parsed and whether both flag the same
documents with the same matches.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from phi_jax.curation import decontam, planted


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--num_docs", type=int, default=4000)
  parser.add_argument("--reps", type=int, default=3)
  args = parser.parse_args()
  texts = [planted.document(n)["text"] for n in range(args.num_docs)]
  configs = {"reference": decontam.DecontamConfig(candidate_dice=0.0),
             "phi_jax": decontam.DecontamConfig()}
  indexes = {k: [decontam.build_index("humaneval", c)] for k, c in configs.items()}
  out = {"num_docs": args.num_docs, "load_avg_start": os.getloadavg()[0]}
  times = {k: [] for k in configs}
  reports = {}
  for _ in range(args.reps):
    for name, config in configs.items():
      cpu = time.process_time()
      _, reports[name] = decontam.decontaminate(texts, ["humaneval"], config,
                                                indexes=indexes[name])
      times[name].append(1000 * (time.process_time() - cpu) / len(texts))
  for name in configs:
    out[name] = {"cpu_ms_per_doc": [round(t, 3) for t in times[name]],
                 "median": round(statistics.median(times[name]), 3),
                 "num_parsed": reports[name]["num_parsed"],
                 "num_flagged": reports[name]["num_flagged"]}
  out["ratio"] = round(out["reference"]["median"] / out["phi_jax"]["median"], 2)
  out["same_flags"] = reports["phi_jax"]["flagged"] == reports["reference"]["flagged"]
  out["load_avg_end"] = os.getloadavg()[0]
  print(json.dumps(out))


if __name__ == "__main__":
  main()
