#!/usr/bin/env bash
# phi-1's data ablation (Figure 2.1 of "Textbooks Are All You Need") at the tiny coder's scale,
# 3 seeds; RESULTS.md. Three pretraining arms with the same model, tokenizer and tokens:
#   unfiltered  the stdlib's .py files (code_corpus train split)                ~ The Stack+
#   filtered    those files -> dedup -> quality classifier (heuristic STAND-IN labels, random
#               forest on an embedder's features) -> decontamination            ~ filtered code
#   textbook    filtered + procedural textbook sections (20% of the bytes)    ~ CodeTextbook
# each pretrained, then fine-tuned on the tiny coder's exercises + drills          ~ CodeExercises
# and measured before and after: pass@1 on unseen variants and held-out families, held-out
# losses (configs/phi1_ablation.py says what each stage is).
#
#   bash experiments/phi1/run.sh                            # the full run: see RESULTS.md
#   SMOKE=1 bash experiments/phi1/run.sh                    # tiny, 2 seeds, a few minutes
#
# ROOT (default workdirs/phi1_ablation, or workdirs/phi1_smoke with SMOKE) holds everything; OUT
# (default experiments/phi1, or ROOT/report with SMOKE) gets results.json, results_table.md,
# figure_2_1.png and wall_times.tsv. Resumable: every stage skips what is finished (the sweeps
# skip finished runs and resume unfinished ones, the pipelines their finished stages, evaluate.py
# models measured at their current step). PARALLEL runs at a time (default 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
SMOKE=${SMOKE:-}
PARALLEL=${PARALLEL:-2}
if [ -n "$SMOKE" ]; then
  ROOT=${ROOT:-workdirs/phi1_smoke}; TINY=,tiny; TINY_FLAG=--tiny
else
  ROOT=${ROOT:-workdirs/phi1_ablation}; TINY=; TINY_FLAG=
fi
ROOT=$(mkdir -p "$ROOT" && cd "$ROOT" && pwd)  # absolute: the runs' configs record these paths
OUT=${OUT:-${SMOKE:+$ROOT/report}}
OUT=${OUT:-experiments/phi1}
SPEC=configs/phi1_ablation.py

timed() {  # timed NAME COMMAND...: run it and append its wall time to ROOT/wall_times.tsv
  local name=$1; shift
  echo "== $name $(date -u +%H:%M:%S)"
  local start=$SECONDS
  "$@"
  printf '%s\t%d\n' "$name" $((SECONDS - start)) >> "$ROOT/wall_times.tsv"
}

finished() { [ -f "$1/summary.json" ] && grep -q '"stopped_by": null' "$1/summary.json"; }

# ---- data: the classifier's embedder, then prepare_data.py (held-out sets, filter, textbooks,
# mixture, exercises, the shared tokenizer, counts) ------------------------------------------
finished "$ROOT/embedder" || timed embedder "$PYTHON" -m phi_jax.main \
    --config="$SPEC:stage=embedder,root=$ROOT$TINY" --workdir="$ROOT/embedder"
timed data "$PYTHON" experiments/phi1/prepare_data.py --root="$ROOT" $TINY_FLAG

# ---- pretraining: a study of the three arms per seed; fine-tuning: every arm x seed ---------
timed pretrain "$PYTHON" -m phi_jax.sweep --config="$SPEC:stage=pretrain,root=$ROOT$TINY" \
    --workdir="$ROOT/pretrain" --parallel="$PARALLEL"
timed finetune "$PYTHON" -m phi_jax.sweep --config="$SPEC:stage=finetune,root=$ROOT$TINY" \
    --workdir="$ROOT/finetune" --parallel="$PARALLEL"

# ---- measure the fine-tuned models' pass@1 and every model's held-out losses (in PARALLEL
# shards), then the tables and the figure -----------------------------------------------------
measure() {
  local pids=() k
  for ((k = 0; k < PARALLEL; k++)); do
    "$PYTHON" experiments/phi1/evaluate.py --root="$ROOT" $TINY_FLAG --shard=$k \
        --num_shards="$PARALLEL" > "$ROOT/evaluate_$k.log" 2>&1 &
    pids+=($!)
  done
  local failed=0
  for k in "${!pids[@]}"; do
    wait "${pids[$k]}" || { echo "evaluate shard $k failed: $ROOT/evaluate_$k.log" >&2; failed=1; }
  done
  cat "$ROOT"/evaluate_*.log
  return $failed
}
timed evaluate measure
mkdir -p "$OUT"
"$PYTHON" experiments/phi1/report.py --root="$ROOT" $TINY_FLAG --out="$OUT"
cp "$ROOT/wall_times.tsv" "$OUT/wall_times.tsv"
