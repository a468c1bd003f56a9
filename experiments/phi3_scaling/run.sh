#!/usr/bin/env bash
# phi-3's scaling at CPU scale: the sweep of configs/phi3_scaling.py (5 sizes x 3 token budgets x
# 2 mixtures, plus a held-out larger size), then the analysis (fitted laws with bootstrap
# intervals, the compute-optimal frontier, textbook vs raw at equal compute, the holdout's
# prediction). RESULTS.md says what was measured.
#
#   bash experiments/phi3_scaling/run.sh [DIR]            # default DIR: workdirs/phi3_scaling
#   SMOKE=1 bash experiments/phi3_scaling/run.sh /tmp/s   # tiny: the plumbing in a few minutes
#   ARG=:ladder=width OUT=DIR/report bash experiments/phi3_scaling/run.sh DIR   # a config variant
#
# Resumable: rerun the same command; finished runs are skipped, an unfinished one resumes from its
# checkpoint, a failed one runs again (the sweep says which). PARALLEL runs at a time (default 1);
# NICE (default 19) keeps it out of the way of other work on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
PARALLEL=${PARALLEL:-1}
NICE=${NICE:-19}
if [ -n "${SMOKE:-}" ]; then
  DIR=${1:-workdirs/phi3_scaling_smoke}; ARG=:smoke; OUT=${OUT:-$DIR/report}; EXTRA=(--bootstrap 5)
else
  DIR=${1:-workdirs/phi3_scaling}; ARG=${ARG:-}; OUT=${OUT:-experiments/phi3_scaling}; EXTRA=()
fi
nice -n "$NICE" "$PYTHON" -m phi_jax.sweep --config="configs/phi3_scaling.py$ARG" --workdir="$DIR" \
  --parallel="$PARALLEL" --fit=eval_loss --fit_by=mixture --fit_points=final || true
nice -n "$NICE" "$PYTHON" experiments/phi3_scaling/analyse.py "$DIR" --config="configs/phi3_scaling.py$ARG" \
  --out="$OUT" "${EXTRA[@]}"
