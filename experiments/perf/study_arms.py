"""Two arms of a study trained one after another (study.parallel=1) vs at once (study.parallel=2).

    python experiments/perf/study_arms.py [--steps 60] [--reps 2] [--quick]

Both arms are the quickstart's model, batch and sequence (configs/quickstart.py:arm=raw, d_model
96, 4 layers, 16 x 256 tokens a step) on the raw standard library, seeds 0 and 1, each for
--steps steps from scratch. `sequential`: one fresh process trains arm 0 then arm 1 with
`train.loop.train` on all the machine's cores (what `phi_jax.study.arms.run` does with
study.parallel=1); `concurrent`: one fresh process calls `arms.train_concurrently` with parallel 2
(each arm in its own process, pinned to a core of its own when there are two). Wall time of the
whole call, data and tokenizer prepared once beforehand; repetitions interleaved (the machine is
shared). The last stdout line is JSON: medians, all times, and sequential / concurrent.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]

DRIVER = r"""
import json, sys, pathlib
from phi_jax.config_args import load_config
from phi_jax.study import arms
from phi_jax.train import loop
mode, root, spec, overrides = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
configs = {f"arm{s}": load_config(spec, overrides + [f"--config.seed={s}"]) for s in (0, 1)}
if mode == "sequential":
  for name, c in configs.items():
    loop.train(c, root / name)
else:
  arms.train_concurrently(configs, root, 2, {}, log=lambda _: None)
"""


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--steps", type=int, default=60)
  p.add_argument("--reps", type=int, default=2)
  p.add_argument("--quick", action="store_true", help="smoke model, a few steps (a test)")
  args = p.parse_args(argv)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix="study_arms_"))
  variant = "smoke,arm=raw" if args.quick else "arm=raw"
  spec = str(REPO / "configs" / "quickstart.py") + ":" + variant
  steps = 4 if args.quick else args.steps
  base = [f"--config.data.data_dir={tmp / 'data'}", "--config.report=False",
          "--config.checkpoint_every_fraction=1.0", "--config.eval_every_fraction=1.0"]
  if args.quick:
    base.append("--config.data.max_files=12")
  env = dict(os.environ, PYTHONPATH=str(REPO))
  # data + tokenizer once (a 1-step run), then every timed run uses them
  prep = [sys.executable, "-m", "phi_jax.main", f"--config={spec}", f"--workdir={tmp / 'prep'}",
          "--config.total_steps=1", *base]
  subprocess.run(prep, check=True, env=env, stdout=subprocess.DEVNULL)
  overrides = base + [f"--config.total_steps={steps}",
                      f"--config.data.tokenizer={tmp / 'prep' / 'tokenizer' / 'sp.model'}"]
  times: dict[str, list[float]] = {"sequential": [], "concurrent": []}
  for rep in range(args.reps):
    for mode in times:
      root = tmp / f"{mode}{rep}"
      start = time.perf_counter()
      subprocess.run([sys.executable, "-c", DRIVER, mode, str(root), spec, json.dumps(overrides)],
                     check=True, env=env, stdout=subprocess.DEVNULL)
      times[mode].append(round(time.perf_counter() - start, 2))
  seq, con = statistics.median(times["sequential"]), statistics.median(times["concurrent"])
  print(json.dumps({
      "benchmark": "study_arms", "model": variant, "steps_per_arm": steps,
      "phi_jax_concurrent_s": con, "reference_sequential_s": seq, "ratio_sequential_over_concurrent":
      round(seq / con, 3), "times": times, "cpus": os.cpu_count(),
      "machine": f"{platform.machine()} {platform.processor()}".strip(),
      "date": datetime.date.today().isoformat()}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
