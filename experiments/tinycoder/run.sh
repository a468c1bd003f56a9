#!/usr/bin/env bash
# The tiny coder across seeds: the quickstart study (configs/quickstart.py) for seeds 0, 1, 2,
# then the table across seeds (experiments/tinycoder/report.py -> seeds.json, seeds.md).
#
#   bash experiments/tinycoder/run.sh                 # VARIANT=long: ~28 min per seed, 2 cores
#   VARIANT= ROOT=workdirs/tinycoder_10min bash experiments/tinycoder/run.sh   # the 10-min main job
#
# Resumable: rerunning skips finished studies (phi_jax.sweep) and resumes a study where it
# stopped (phi_jax.study.arms). COPY_SEED=N also copies seed N's results.json next to this file
# (what notebooks/phi1.ipynb loads).
set -euo pipefail
cd "$(dirname "$0")/../.."
VARIANT=${VARIANT-long}
ROOT=${ROOT:-workdirs/tinycoder_${VARIANT:-default}}
PYTHON=${PYTHON:-python}
SPEC=configs/quickstart.py${VARIANT:+:$VARIANT}
$PYTHON -m phi_jax.sweep --config="$SPEC" --workdir="$ROOT/sweep"
$PYTHON experiments/tinycoder/report.py --sweep="$ROOT/sweep" \
    --out="${OUT:-experiments/tinycoder}" ${COPY_SEED:+--copy_seed=$COPY_SEED}
