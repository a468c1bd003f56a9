#!/usr/bin/env bash
# DPO settings chosen on a DEVELOPMENT set, never on the reported one: one seed's SFT model and
# preference pairs (from run.sh's ROOT), one DPO run with the given settings, then report.py on
# 300 other held-out exercises (--eval_seed=7; none of its prompts is in the reported
# eval_seed=2024 set).
#
#   ROOT=workdirs/phi3_posttrain LR=1e-4 NLL=1.0 bash experiments/phi3_posttrain/dpo_dev.sh
#
# Writes ROOT/dev/lr=LR,nll=NLL/seed=SEED/{base,sft,prefs -> ROOT/seed=SEED/..., dpo, eval} and
# the report to ROOT/dev/lr=LR,nll=NLL/report/ (results.md). Resumable like run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
ROOT=${ROOT:-workdirs/phi3_posttrain}
SEED=${SEED:-0}
LR=${LR:-2e-5}
NLL=${NLL:-0.0}
ROOT=$(cd "$ROOT" && pwd)
SRC="$ROOT/seed=$SEED"
for stage in base sft prefs; do
  [ -e "$SRC/$stage" ] || { echo "no $SRC/$stage: run experiments/phi3_posttrain/run.sh first" >&2; exit 1; }
done
DEV="$ROOT/dev/lr=$LR,nll=$NLL"
W="$DEV/seed=$SEED"
mkdir -p "$W"
for stage in base sft prefs; do ln -sfn "$(readlink -f "$SRC/$stage")" "$W/$stage"; done
TOK=$($PYTHON -c 'import json, sys; print(json.load(open(sys.argv[1]))["data"]["tokenizer"])' \
    "$W/base/config.json")
[ -f "$W/dpo/summary.json" ] && grep -q '"stopped_by": null' "$W/dpo/summary.json" || \
  $PYTHON -m phi_jax.main --config=configs/phi3_posttrain.py:dpo,coder,init_from="$W/sft" \
      --workdir="$W/dpo" --config.seed="$SEED" --config.data.source_dir="$W/prefs/dataset" \
      --config.data.data_dir="$W/prefs/dataset/tfds" ${TOK:+--config.data.tokenizer="$TOK"} \
      --config.optimizer.learning_rate="$LR" --config.dpo.nll_weight="$NLL"
$PYTHON experiments/phi3_posttrain/report.py --root="$DEV" --out="$DEV/report" --eval_seed=7
