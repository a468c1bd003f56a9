#!/usr/bin/env bash
# DPO settings chosen on a DEVELOPMENT set, never on the reported one: one seed's SFT model and
# preference pairs (from run.sh's ROOT), one DPO run with the given settings, then report.py on
# 300 other held-out exercises (--eval_seed=7; none of its prompts is in the reported
# eval_seed=2024 set).
#
#   ROOT=workdirs/phi3_posttrain LR=1e-4 NLL=1.0 bash experiments/phi3_posttrain/dpo_dev.sh
#   ROOT=workdirs/phi3_posttrain PAIRS=4 GREEDY=1 bash experiments/phi3_posttrain/dpo_dev.sh
#
# Writes ROOT/dev/lr=LR,nll=NLL/seed=SEED/{base,sft,prefs -> ROOT/seed=SEED/..., dpo, eval} and
# the report to ROOT/dev/lr=LR,nll=NLL/report/ (results.md). With PAIRS=K (pairs per prompt) or
# GREEDY=1 (a failing greedy reply is the first rejected one: configs/data/preferences.py) the
# run makes its own pairs from the same SFT model: ROOT/dev/lr=LR,nll=NLL,pairs=K,greedy=G/.
# Resumable like run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python}
ROOT=${ROOT:-workdirs/phi3_posttrain}
SEED=${SEED:-0}
LR=${LR:-2e-5}
NLL=${NLL:-0.0}
PAIRS=${PAIRS:-1}
GREEDY=${GREEDY:-0}
ROOT=$(cd "$ROOT" && pwd)
SRC="$ROOT/seed=$SEED"
for stage in base sft prefs; do
  [ -e "$SRC/$stage" ] || { echo "no $SRC/$stage: run experiments/phi3_posttrain/run.sh first" >&2; exit 1; }
done
OWN_PAIRS=0
[[ $PAIRS != 1 || $GREEDY != 0 ]] && OWN_PAIRS=1
DEV="$ROOT/dev/lr=$LR,nll=$NLL"
[[ $OWN_PAIRS == 1 ]] && DEV="$DEV,pairs=$PAIRS,greedy=$GREEDY"
W="$DEV/seed=$SEED"
mkdir -p "$W"
LINKS=(base sft prefs)
[[ $OWN_PAIRS == 1 ]] && LINKS=(base sft)
for stage in "${LINKS[@]}"; do ln -sfn "$(readlink -f "$SRC/$stage")" "$W/$stage"; done
if [[ $OWN_PAIRS == 1 ]]; then
  VARIANT="pairs=$PAIRS"
  [[ $GREEDY != 0 ]] && VARIANT="$VARIANT,greedy"
  $PYTHON -m phi_jax.curation --workdir="$W/prefs" \
      --config=configs/data/preferences.py:model="$W/sft",seed=$SEED,$VARIANT
fi
TOK=$($PYTHON -c 'import json, sys; print(json.load(open(sys.argv[1]))["data"]["tokenizer"])' \
    "$W/base/config.json")
[ -f "$W/dpo/summary.json" ] && grep -q '"stopped_by": null' "$W/dpo/summary.json" || \
  $PYTHON -m phi_jax.main --config=configs/phi3_posttrain.py:dpo,coder,init_from="$W/sft" \
      --workdir="$W/dpo" --config.seed="$SEED" --config.data.source_dir="$W/prefs/dataset" \
      --config.data.data_dir="$W/prefs/dataset/tfds" ${TOK:+--config.data.tokenizer="$TOK"} \
      --config.optimizer.learning_rate="$LR" --config.dpo.nll_weight="$NLL"
$PYTHON experiments/phi3_posttrain/report.py --root="$DEV" --out="$DEV/report" --eval_seed=7
