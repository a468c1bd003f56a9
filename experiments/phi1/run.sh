#!/usr/bin/env bash
# phi-1's data ablation (Figure 2.1 of "Textbooks Are All You Need") at CPU scale; RESULTS.md.
#
# The same tiny model (configs/phi1_ablation.py), the same tokenizer and the same number of
# training tokens on three pretraining sets, each then fine-tuned on procedural exercises:
#   unfiltered  the stdlib's .py files (code_corpus train split)       ~ The Stack+
#   filtered    those files -> dedup -> quality classifier (heuristic STAND-IN labels, random
#               forest on the unfiltered model's embeddings) -> decontam  ~ filtered code
#   textbook    filtered + procedural textbooks (a STAND-IN for GPT-3.5's; not LLM text)
#                                                                       ~ CodeTextbook
# and evaluated on held-out procedural exercises (pass@1, greedy) and held-out stdlib files
# (loss) by evaluate.py.
#
#   bash experiments/phi1/run.sh          # ~1-1.5 hours on a shared 2-core CPU
#   PRETRAIN_STEPS=2000 FINETUNE_STEPS=500 ROOT=workdirs/phi1_big bash experiments/phi1/run.sh
#
# Resumable: a training stage whose workdir has summary.json, and a data stage whose output
# exists, is skipped (an interrupted training run resumes from its newest checkpoint; the
# `python -m phi_jax.curation` pipelines skip their finished stages themselves). Wall time of each
# stage is appended to $ROOT/wall_times.tsv (a rerun adds short lines for the two data pipelines,
# which then only check their markers). STOP_AFTER=<stage> stops after that stage.
set -euo pipefail
cd "$(dirname "$0")/../.."

ROOT=${ROOT:-workdirs/phi1_ablation}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-300}      # x 8 x 256 tokens, the same for every arm
FINETUNE_STEPS=${FINETUNE_STEPS:-120}      # x 8 x 256 tokens (prompt_completion rows)
N_EXERCISES=${N_EXERCISES:-2000}           # procedural train-split exercises to fine-tune on
TEXTBOOK_FRACTION=${TEXTBOOK_FRACTION:-0.2}  # textbooks' share of the textbook arm's bytes
N_EVAL=${N_EVAL:-200}                      # held-out exercises per split (test, validation)
STOP_AFTER=${STOP_AFTER:-}
PYTHON=${PYTHON:-python}
TFDS=$ROOT/tfds                            # code_corpus and the training datasets
TOKENIZER=$ROOT/pretrain_unfiltered/tokenizer/sp.model  # trained once, shared by every arm
CONFIG=configs/phi1_ablation.py
mkdir -p "$ROOT/data"

timed() {  # timed NAME COMMAND...: run it, log its wall time, stop if STOP_AFTER=NAME
  local name=$1; shift
  echo "== $name"
  local start=$SECONDS
  "$@"
  printf '%s\t%d\n' "$name" $((SECONDS - start)) >> "$ROOT/wall_times.tsv"
  if [[ $STOP_AFTER == "$name" ]]; then echo "== stopping after $name"; exit 0; fi
}

train() {  # train NAME WORKDIR ARGS...: phi_jax.main unless WORKDIR/summary.json exists
  local name=$1 workdir=$2; shift 2
  if [[ -f $workdir/summary.json ]]; then
    echo "== $name: done ($workdir/summary.json exists)"
  else
    timed "$name" "$PYTHON" -m phi_jax.main "$@" --workdir="$workdir"
  fi
}

# ---- (a) unfiltered: the stdlib as is; its run also trains the shared tokenizer -------------
train pretrain_unfiltered "$ROOT/pretrain_unfiltered" --config=$CONFIG:stage=pretrain \
  --config.data.dataset=code_corpus --config.data.validation_fraction=0.05 \
  --config.data.data_dir="$TFDS" --config.total_steps="$PRETRAIN_STEPS"

# ---- data: the filtered subset, procedural textbooks, the mixture, the exercises -------------
# The filter reads exactly (a)'s training files: code_corpus's validation split stays held out.
if [[ ! -f $ROOT/data/stdlib_train/records.jsonl ]]; then
  timed export_train "$PYTHON" experiments/phi1/prepare_data.py export \
    --data_dir="$TFDS" --validation_fraction=0.05 --out="$ROOT/data/stdlib_train"
fi
timed filter "$PYTHON" -m phi_jax.curation --config=configs/data/stdlib_filtered.py \
  --workdir="$ROOT/data/filtered" --config.progress=False --config.tokenizer="$TOKENIZER" \
  --config.source.kind=jsonl --config.source.path="$ROOT/data/stdlib_train/records.jsonl" \
  --config.quality.model.kind=run --config.quality.model.path="$ROOT/pretrain_unfiltered" \
  --config.quality.max_len=512 --config.quality.keep_fraction=0.5
if [[ ! -f $ROOT/data/textbooks/stats.json ]]; then
  timed textbooks "$PYTHON" experiments/phi1/prepare_data.py textbooks \
    --filtered="$ROOT/data/filtered/dataset" --fraction="$TEXTBOOK_FRACTION" \
    --out="$ROOT/data/textbooks"
fi
if [[ ! -f $ROOT/data/code_textbook/records.jsonl ]]; then
  timed mix "$PYTHON" experiments/phi1/prepare_data.py mix \
    --filtered="$ROOT/data/filtered/dataset" --textbooks="$ROOT/data/textbooks" \
    --out="$ROOT/data/code_textbook"
fi
timed exercises "$PYTHON" -m phi_jax.curation --config=configs/data/synthetic_exercises.py \
  --workdir="$ROOT/data/exercises" --config.progress=False --config.tokenizer="$TOKENIZER" \
  --config.synthetic.n="$N_EXERCISES"

# ---- (b) filtered and (c) filtered + textbooks: same model, tokenizer, tokens ---------------
train pretrain_filtered "$ROOT/pretrain_filtered" --config=$CONFIG:stage=pretrain \
  --config.data.dataset=filtered_corpus --config.data.source_dir="$ROOT/data/filtered/dataset" \
  --config.data.validation_fraction=0.02 --config.data.data_dir="$TFDS" \
  --config.data.tokenizer="$TOKENIZER" --config.total_steps="$PRETRAIN_STEPS"
train pretrain_textbook "$ROOT/pretrain_textbook" --config=$CONFIG:stage=pretrain \
  --config.data.dataset=filtered_corpus --config.data.source_dir="$ROOT/data/code_textbook" \
  --config.data.validation_fraction=0.02 --config.data.data_dir="$TFDS" \
  --config.data.tokenizer="$TOKENIZER" --config.total_steps="$PRETRAIN_STEPS"

# ---- fine-tune each on the procedural train-split exercises (loss on the body only) ---------
for ARM in unfiltered filtered textbook; do
  train "finetune_$ARM" "$ROOT/finetune_$ARM" --config=$CONFIG:stage=finetune \
    --config.init_from="$ROOT/pretrain_$ARM" \
    --config.data.source_dir="$ROOT/data/exercises/dataset" \
    --config.data.data_dir="$ROOT/data/exercises/dataset/tfds" \
    --config.data.tokenizer="$TOKENIZER" --config.total_steps="$FINETUNE_STEPS"
done

# ---- evaluate all six models; the table and the figure ----------------------------------------
if [[ -f $ROOT/results.json ]]; then
  echo "== evaluate: done ($ROOT/results.json exists)"
else
  timed evaluate "$PYTHON" experiments/phi1/evaluate.py --root="$ROOT" --n_eval="$N_EVAL" \
    --tokenizer="$TOKENIZER" --out="$ROOT/results.json"
fi
cp "$ROOT/results.json" experiments/phi1/results.json
cp "$ROOT/wall_times.tsv" experiments/phi1/wall_times.tsv
"$PYTHON" experiments/phi1/report.py experiments/phi1/results.json \
  --figure=experiments/phi1/figure_2_1.png --table=experiments/phi1/results_table.md
