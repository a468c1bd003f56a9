#!/usr/bin/env bash
# phi-1.5's ablation at CPU scale (configs/phi1_5.py:ablation): three arms (phi-1.5: synthetic +
# code; phi-1.5-web: + filtered web; phi-1.5-web-only: web + code) x seeds 0, 1, 2, then the
# evaluation (word problems held out by template, scored by running the model's Python in the
# sandbox; held-out prose perplexity) with 95% intervals across seeds. RESULTS.md.
#
#   bash experiments/phi1_5/run.sh [DIR]          # default DIR: workdirs/phi1_5_ablation
#   SMOKE=1 bash experiments/phi1_5/run.sh /tmp/p  # tiny: one seed, the plumbing in minutes
#
# Needs Debian's python3.11-doc (the "web" prose): apt-get install python3.11-doc.
# Resumable: rerun the same command (finished runs and evaluations are reused).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
PARALLEL=${PARALLEL:-1}
NICE=${NICE:-19}
if [ -n "${SMOKE:-}" ]; then
  DIR=${1:-workdirs/phi1_5_smoke}; ARG=ablation,smoke; OUT=${OUT:-$DIR/report}
  EVAL=(--n_test 8 --n_train 4 --max_new_tokens 16)
else
  DIR=${1:-workdirs/phi1_5_ablation}; ARG=ablation; OUT=${OUT:-experiments/phi1_5}; EVAL=()
fi
nice -n "$NICE" "$PYTHON" -m phi_jax.sweep --config="configs/phi1_5.py:$ARG" --workdir="$DIR" \
  --parallel="$PARALLEL"
nice -n "$NICE" "$PYTHON" experiments/phi1_5/evaluate.py "$DIR" --out="$OUT" "${EVAL[@]}"
