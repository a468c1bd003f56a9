#!/usr/bin/env bash
# phi-3-style post-training of the tiny coder, per seed: base -> SFT -> preferences -> DPO, then
# the report (experiments/phi3_posttrain/report.py -> results.json, results.md, curves.png).
#
#   bash experiments/phi3_posttrain/run.sh        # seeds 0 1 2 on the tinycoder's textbook bases
#   BASES=workdirs/tinycoder_long/sweep SEEDS="0" bash experiments/phi3_posttrain/run.sh
#   SMOKE=1 ROOT=/tmp/pt_smoke bash experiments/phi3_posttrain/run.sh   # tiny random-init chain
#
# BASES/seed=N/textbook is seed N's base (experiments/tinycoder/run.sh makes them); ROOT/seed=N/
# gets base (a link to it; with SMOKE, a 10-step tiny model trained from scratch), sft, prefs
# (the preferences pipeline) and dpo. Resumable: a finished stage (summary.json with
# stopped_by null, or a pipeline stage whose marker matches) is skipped; a killed one resumes.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
SMOKE=${SMOKE:-}
SEEDS=${SEEDS:-0 1 2}
BASES=${BASES:-workdirs/tinycoder_long/sweep}
ROOT=${ROOT:-workdirs/phi3_posttrain${SMOKE:+_smoke}}
OUT=${OUT:-experiments/phi3_posttrain}
if [ -n "$SMOKE" ]; then
  VARIANT=tiny
  # shortened tiny runs; seq_len 256: a chat-formatted exercise is ~200 tokens of a 320-piece vocab
  TRAIN_FLAGS=(--config.data.seq_len=256 --config.data.batch_size=8 --config.total_steps=6
               --config.checkpoint_every=6 --config.eval_every_fraction=1.0 --config.log_every=2
               --config.report=false --config.data.tokenizer_vocab_size=400)
  DATA_VARIANT=tiny
  REPORT_FLAGS=(--n=8 --max_new_tokens=24 --batch_size=8)
else
  VARIANT=coder
  TRAIN_FLAGS=()
  DATA_VARIANT=
  REPORT_FLAGS=()
fi

finished() { [ -f "$1/summary.json" ] && grep -q '"stopped_by": null' "$1/summary.json"; }

$PYTHON -m phi_jax.curation --config=configs/data/chat_exercises.py${DATA_VARIANT:+:$DATA_VARIANT} \
    --workdir="$ROOT/data/chat"
CHAT=(--config.data.source_dir="$ROOT/data/chat/dataset"
      --config.data.data_dir="$ROOT/data/chat/dataset/tfds")

for SEED in $SEEDS; do
  W="$ROOT/seed=$SEED"
  mkdir -p "$W"
  if [ -n "$SMOKE" ]; then  # the base: a tiny model from random init, a few steps on the chat data
    finished "$W/base" || $PYTHON -m phi_jax.main --config=configs/phi3_posttrain.py:sft,tiny \
        --workdir="$W/base" --config.seed="$SEED" "${CHAT[@]}" "${TRAIN_FLAGS[@]}"
  else
    BASE="$BASES/seed=$SEED/textbook"
    [ -d "$BASE/checkpoints" ] || { echo "no base model at $BASE (run experiments/tinycoder/run.sh or set BASES)" >&2; exit 1; }
    ln -sfn "$(cd "$BASE" && pwd)" "$W/base"
  fi
  # The tiny coder's runs keep their tokenizer in the study folder (config.json data.tokenizer):
  # SFT and DPO read it from there (a smoke base has its own, in base/tokenizer/).
  TOK=$($PYTHON -c 'import json, sys; print(json.load(open(sys.argv[1]))["data"]["tokenizer"])' \
      "$W/base/config.json")
  TOK_FLAGS=(${TOK:+--config.data.tokenizer="$TOK"})
  finished "$W/sft" || $PYTHON -m phi_jax.main \
      --config=configs/phi3_posttrain.py:sft,$VARIANT,init_from="$W/base" --workdir="$W/sft" \
      --config.seed="$SEED" "${CHAT[@]}" "${TOK_FLAGS[@]}" "${TRAIN_FLAGS[@]}"
  $PYTHON -m phi_jax.curation --workdir="$W/prefs" \
      --config=configs/data/preferences.py:model="$W/sft",seed=$SEED${DATA_VARIANT:+,$DATA_VARIANT}
  finished "$W/dpo" || $PYTHON -m phi_jax.main \
      --config=configs/phi3_posttrain.py:dpo,$VARIANT,init_from="$W/sft" --workdir="$W/dpo" \
      --config.seed="$SEED" --config.data.source_dir="$W/prefs/dataset" \
      --config.data.data_dir="$W/prefs/dataset/tfds" "${TOK_FLAGS[@]}" "${TRAIN_FLAGS[@]}"
done
$PYTHON experiments/phi3_posttrain/report.py --root="$ROOT" --out="$OUT" "${REPORT_FLAGS[@]}"
