#!/usr/bin/env bash
# SkipDecode on the tiny coder (RESULTS.md): make the tiny coder's data, train a 12-layer tiny
# coder as the base, fine-tune it on procedural exercises with the 1x (no skipping), 2x, 3x and 5x
# schedules for each seed, then evaluate every model (pass@1 of greedy bodies on held-out
# exercises, held-out loss, measured decode speedup) next to the schedules applied without
# fine-tuning and the CALM early-exit baseline, and write the report.
#
#   bash experiments/skipdecode/run.sh           # the full run (RESULTS.md: expected wall time)
#   SMOKE=1 bash experiments/skipdecode/run.sh   # test scale end to end (1x and 5x, 2 seeds)
#   SEEDS="0" bash experiments/skipdecode/run.sh # fewer fine-tune seeds (PRETRAIN_STEPS,
#                                                # FINETUNE_STEPS, SPEEDUPS, ROOT override too)
#
# Resumable: the data pipelines skip finished stages; a training stage whose workdir has a
# finished summary.json is skipped (an interrupted one resumes from its newest checkpoint); the evaluation
# is skipped when $ROOT/results.json exists. Fine-tunes run seed by seed (all schedules of seed 0
# first), so a run cut short leaves whole seeds: evaluate those with `--seeds=0,1`. Wall time of
# each stage is appended to $ROOT/wall_times.tsv. The full run copies results.json and
# wall_times.tsv to experiments/skipdecode/coder/ and draws coder/quality_vs_speed.png; SMOKE=1
# writes nothing outside $ROOT.
#
# Scale (configs/skipdecode.py:coder):
#   data: make_data.py: the base mixture (30k exercises + 15k drills + 300 textbook sections, the
#     recipe of configs/quickstart.py:long) and the fine-tune set (10k train-split exercises).
#   base: phi-1 block, 12 layers x d_model 96, 1,024-token SentencePiece, PRETRAIN_STEPS (700)
#     steps of 16 x 256 tokens (2.9M tokens), loss on the records' targets.
#   fine-tunes: FINETUNE_STEPS (150) steps of 16 x 256 tokens of exercises, loss on the bodies,
#     schedule SkipSchedule.for_speedup(12, S, warmup_layers=1, decay_len=D), D = the median
#     body length in tokens with the base's tokenizer (make_data.py --decay_len), seeds SEEDS.
set -euo pipefail
cd "$(dirname "$0")/../.."

SMOKE=${SMOKE:-0}
if [[ $SMOKE == 1 ]]; then
  ROOT=${ROOT:-workdirs/skipdecode_smoke}
  PRETRAIN_STEPS=${PRETRAIN_STEPS:-8}
  FINETUNE_STEPS=${FINETUNE_STEPS:-4}
  SEEDS=${SEEDS:-"0 1"}
  SPEEDUPS=${SPEEDUPS:-"1 5"}  # 5x: the schedule that needs the 12 layers
  VARIANT=coder,tiny
  DATA_ARGS=(--smoke)
  EVAL_ARGS=(--n_validation=8 --n_test=8 --batch_size=8 --max_new_tokens=24 --thresholds=0.1,0
             --speed_new_tokens=16 --speed_reps=2 --num_samples=2)
else
  ROOT=${ROOT:-workdirs/skipdecode_coder}
  PRETRAIN_STEPS=${PRETRAIN_STEPS:-700}
  FINETUNE_STEPS=${FINETUNE_STEPS:-150}
  SEEDS=${SEEDS:-"0 1 2"}
  VARIANT=coder
  DATA_ARGS=()
  EVAL_ARGS=()
fi
SPEEDUPS=${SPEEDUPS:-"1 2 3 5"}
PYTHON=${PYTHON:-python}
mkdir -p "$ROOT"

timed() {  # timed NAME COMMAND... : run, append the wall time to wall_times.tsv
  local name=$1 start=$SECONDS; shift
  "$@"
  printf '%s\t%d\n' "$name" $((SECONDS - start)) >> "$ROOT/wall_times.tsv"
}

stage() {  # stage NAME WORKDIR ARGS... : train unless WORKDIR finished (summary.json, stopped_by null)
  local name=$1 workdir=$2; shift 2
  # A run stopped by a signal also writes summary.json (stopped_by: the signal): that one resumes.
  if [[ -f $workdir/summary.json ]] && grep -q '"stopped_by": null' "$workdir/summary.json"; then
    echo "== $name: done ($workdir/summary.json exists)"
    return
  fi
  echo "== $name -> $workdir"
  timed "$name" "$PYTHON" -m phi_jax.main "$@" --workdir="$workdir"
}

echo "== data -> $ROOT/data"
timed data "$PYTHON" experiments/skipdecode/make_data.py --root="$ROOT" "${DATA_ARGS[@]}"
read -r -a BASE_DATA < <("$PYTHON" experiments/skipdecode/make_data.py --root="$ROOT" \
                          "${DATA_ARGS[@]}" --flags=base 2>/dev/null)
read -r -a FT_DATA < <("$PYTHON" experiments/skipdecode/make_data.py --root="$ROOT" \
                        "${DATA_ARGS[@]}" --flags=finetune 2>/dev/null)

stage pretrain "$ROOT/base" \
  --config=configs/skipdecode.py:pretrain,$VARIANT "${BASE_DATA[@]}" \
  --config.total_steps="$PRETRAIN_STEPS" --config.eval_every="$PRETRAIN_STEPS" \
  --config.checkpoint_every=100 --config.log_every=20 --config.report=False

DECAY_LEN=$("$PYTHON" experiments/skipdecode/make_data.py --root="$ROOT" "${DATA_ARGS[@]}" \
            --decay_len="$ROOT/base" 2>/dev/null)
echo "== decay_len = $DECAY_LEN tokens (median fine-tune body with the base's tokenizer)"
echo "$DECAY_LEN" > "$ROOT/decay_len.txt"

for K in $SEEDS; do
  for S in $SPEEDUPS; do
    stage "finetune_${S}x_seed$K" "$ROOT/ft_${S}x_seed$K" \
      --config=configs/skipdecode.py:finetune,$VARIANT,speedup="$S",decay_len="$DECAY_LEN" \
      --config.init_from="$ROOT/base" "${FT_DATA[@]}" --config.seed="$K" \
      --config.total_steps="$FINETUNE_STEPS" --config.eval_every="$FINETUNE_STEPS" \
      --config.checkpoint_every="$FINETUNE_STEPS" --config.log_every=10 --config.report=False
  done
done

if [[ -f $ROOT/results.json ]]; then
  echo "== evaluate: done ($ROOT/results.json exists)"
else
  echo "== evaluate"
  timed evaluate "$PYTHON" experiments/skipdecode/evaluate.py --root="$ROOT" \
    --speedups="${SPEEDUPS// /,}" --seeds="$(echo $SEEDS | tr ' ' ,)" "${EVAL_ARGS[@]}" \
    --out="$ROOT/results.json"
fi
if [[ $SMOKE == 1 ]]; then
  "$PYTHON" experiments/skipdecode/report.py "$ROOT/results.json"
else
  mkdir -p experiments/skipdecode/coder
  cp "$ROOT/results.json" "$ROOT/wall_times.tsv" experiments/skipdecode/coder/
  "$PYTHON" experiments/skipdecode/report.py experiments/skipdecode/coder/results.json
fi
