"""phi-3's scaling at CPU scale: a fitted law L(N, D) per data mixture, raw code vs textbooks.

"Phi-3 Technical Report" (Abdin et al., arXiv 2404.14219, section 2) argues for training in the
"data optimal regime": with better (filtered + synthetic) data, a model of a given size reaches a
lower loss for the same compute. Here that claim is measured on what this machine can train: the
phi-3-mini block (serial, SwiGLU, RMSNorm, full rotary) at five widths/depths x three token
budgets, on two mixtures, each fit by Chinchilla's law (Hoffmann et al., arXiv 2203.15556, eq. 2)
L(N, D) = E + A / N^alpha + B / D^beta (N: non-embedding parameters, D: training tokens).

    bash experiments/phi3_scaling/run.sh DIR      # the sweep (resumable) + the analysis

or its two steps:

    python -m phi_jax.sweep --config=configs/phi3_scaling.py --workdir=DIR --parallel=2 \\
        --fit=eval_loss --fit_by=mixture --fit_points=final
    python experiments/phi3_scaling/analyse.py DIR

The mixtures (`mixture=` in each run's slug): `raw`: this Python's standard library as is
(`code_corpus`, files up to 12 KB: `RAW_DATA`); `textbook`: the tiny coder's textbook-quality
mixture (`curation.mixture`: verified procedural exercises, binding drills, procedural textbook
sections; decontaminated),
trained as plain documents (data.format 'lm', every token counts, as for raw). `prepare()` makes
the mixture and ONE SentencePiece tokenizer on equal shares of both (so a token is the same unit in
both) in DIR before any run starts. Each run's held-out loss is on its own mixture's held-out
split; experiments/phi3_scaling/analyse.py also scores every run on both held-out sets.

Sizes (the mini block; head_dim 16; mlp_dim ~ 8/3 d_model as phi-3-mini's 8192/3072): the
default ladder (`WIDTH_SIZES`) keeps the depth at 4 layers and changes the width, as phi-3-mini
-> small does (3072 -> 4096 wide, 32 layers each): w32 0.047M, w48 0.11M, w64 0.2M, w96 0.44M,
w128 0.78M non-embedding parameters. Budgets (`BUDGETS`): 307,200, 614,400 and 921,600 tokens
(300 / 600 / 900 steps of 8 x 128), one run per budget with a cosine decay to 0.1x at its end
(Chinchilla's protocol), evaluated once at the end: 0.39 to 19.6 tokens per parameter. Each
size's peak rate is the measured rule `RATE_RULE` (lr = 4.071 N^-0.528, from the rate search
`:tune,ladder=mixed` and experiments/phi3_scaling/tune_lr.py). The held-out size (w192: 192 x 4, 1.77M
parameters, 2.3x w128, 614,400 tokens, per mixture) is not in the fit: the fit predicts its loss.
The paper's range is 3.8B-14B parameters and 3.3T-4.8T tokens; the issue suggested 0.2M-20M
parameters; this grid (32 runs) is what two cores train in about 45 minutes.

`:ladder=mixed` is the ladder of 2026-12-02 (`SIZES`: width and depth changing together, 48 x 2
... 128 x 4, held out 160 x 5; `LEARNING_RATES`, the same rule at those sizes): its deeper model
of a width (64 x 4 against 64 x 2) sits above the fitted law at every budget, a shape effect the
law has no term for, and the fit missed its holdout by +5.7% (experiments/phi3_scaling/RESULTS.md).

Variants: `:size=NAME,mixture=raw|textbook,tokens=N` is one run (the sweep passes the same as
overrides; `tokens` sets total_steps = tokens / (batch_size x seq_len)); `:smoke` shrinks
everything for tests (`sweep('smoke')`, `prepare('smoke', DIR)`).
"""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections

from phi_jax.config_args import parse_arg
from phi_jax.train import config_base

HEAD_DIM = 16
# name: (d_model, num_layers); mlp_dim = 8/3 d_model rounded to 16 (phi-3-mini: 8192 / 3072)
SIZES = {"xs": (48, 2), "s": (64, 2), "m": (64, 4), "l": (96, 4), "xl": (128, 4)}
HOLDOUT_SIZES = {"xxl": (160, 5)}
# The default ladder: constant depth, width alone changing N (module docstring); SIZES above is
# `:ladder=mixed`.
WIDTH_SIZES = {"w32": (32, 4), "w48": (48, 4), "w64": (64, 4), "w96": (96, 4), "w128": (128, 4)}
WIDTH_HOLDOUT_SIZES = {"w192": (192, 4)}
TOKENS_PER_STEP = 8 * 128
# The budgets: one run each, its learning rate decayed to the end of that budget (Chinchilla's
# protocol). 300, 600 and 900 steps.
BUDGETS = (307_200, 614_400, 921_600)
RUN_TOKENS = BUDGETS[-1]  # a single run's default
HOLDOUT_TOKENS = BUDGETS[1]  # 614,400
WARMUP_STEPS = 20
# The peak rate of each size, decayed by a cosine to a tenth of it at the end of each budget. The
# rates come from a measured rule: `sweep('tune')` trains every fitted size at TUNE_RATES (textbook
# mixture, middle budget), experiments/phi3_scaling/tune_lr.py takes each size's best rate and
# fits lr = c N^k to them; LEARNING_RATES is that rule at every size, the held-out xxl included
# (an extrapolation: xxl was not searched). Three earlier sweeps (2026-12-02, RESULTS.md) used one
# rate rule for all sizes (sqrt(96 / d_model) x 5e-3, then 5e-3 everywhere, constant and then
# cosine): the wide models lagged at rates too high for them, and the fit missed the held-out
# size by 7%, 11% and 12%.
LEARNING_RATE = 5e-3  # a single run's default (:size=..., outside the grid)
# tune_lr.py on the search of 2026-12-02 (experiments/phi3_scaling/lr_tuning.json): lr = c N^k
RATE_RULE = (4.071313655646454, -0.5280349808987296)  # (c, k)
TUNE_RATES = (1.25e-3, 2.5e-3, 5e-3, 1e-2, 2e-2)  # `sweep("tune")`: the peak-rate search per size
EVAL_BATCHES = 64  # 65,536 held-out tokens per evaluation
# Files up to 12 KB (~4k tokens), 5% held out: rows are packed from shuffled files, so with the
# default 1 MB limit one large file filled several consecutive batches and the held-out loss of
# raw ROSE with training (measured: 5.78 -> 5.88 -> 6.29 at size s); small files mix in a batch.
RAW_DATA = dict(max_bytes=12_000, validation_fraction=0.05)
MIXTURE = dict(n_exercises=30_000, n_drills=15_000, n_textbooks=300, seed=0)
SMOKE_MIXTURE = dict(n_exercises=300, n_drills=100, n_textbooks=6, seed=0)


def size_fields(d_model: int, num_layers: int) -> dict[str, Any]:
  """ModelConfig fields of one size of the mini block."""
  return dict(d_model=d_model, num_layers=num_layers, num_heads=d_model // HEAD_DIM,
              num_kv_heads=d_model // HEAD_DIM, mlp_dim=16 * round(8 * d_model / 3 / 16))


def non_embedding_params(d_model: int, num_layers: int) -> int:
  """N of one size: per layer q, k, v, o (d x d each) and the SwiGLU MLP (3 x d x mlp_dim)."""
  return num_layers * (4 * d_model ** 2 + 3 * d_model * size_fields(d_model, num_layers)["mlp_dim"])


def rule_rate(d_model: int, num_layers: int) -> float:
  """RATE_RULE at one size, to 3 significant digits (as LEARNING_RATES lists it)."""
  c, k = RATE_RULE
  return float(f"{c * non_embedding_params(d_model, num_layers) ** k:.3g}")


# The rule at every size of the mixed ladder, its held-out xxl included (lr_tuning.json's `rates`)
LEARNING_RATES = {name: rule_rate(*shape) for name, shape in {**SIZES, **HOLDOUT_SIZES}.items()}
# name: (fitted sizes, held-out size, peak rate per size) of each ladder
LADDERS = {
    "mixed": (SIZES, HOLDOUT_SIZES, LEARNING_RATES),
    "width": (WIDTH_SIZES, WIDTH_HOLDOUT_SIZES,
              {name: rule_rate(*shape)
               for name, shape in {**WIDTH_SIZES, **WIDTH_HOLDOUT_SIZES}.items()}),
}


def get_config(arg: str = "") -> ml_collections.ConfigDict:
  """One run of the grid: `size`, `mixture`, `tokens` (see the module doc); `smoke` for tests."""
  v = parse_arg(arg, {"size": "w64", "mixture": "raw", "tokens": str(RUN_TOKENS), "smoke": False,
                      "tune": False, "ladder": "width"})  # tune, ladder: only sweep() reads them
  sizes = {**SIZES, **HOLDOUT_SIZES, **WIDTH_SIZES, **WIDTH_HOLDOUT_SIZES}
  if v["size"] not in sizes:
    raise ValueError(f"size={v['size']!r}: choose one of {sorted(sizes)}")
  if v["mixture"] not in ("raw", "textbook"):
    raise ValueError(f"mixture={v['mixture']!r}: choose raw or textbook")
  d_model, layers = sizes[v["size"]]

  c = config_base.get_config()
  c.seed = 0
  c.log_every, c.log_every_fraction = 20, 0.0
  c.eval_every, c.eval_every_fraction = 0, 1.0  # once, at the end of the budget
  c.checkpoint_every, c.checkpoint_every_fraction = 0, 1 / 3
  c.keep_checkpoints = 1
  c.grad_accum = 1
  c.report = False
  c.mesh.update(data=-1, fsdp=1, tensor=1)
  c.model = config_base.model(
      "phi-3-mini-4k", vocab_size=-1, max_seq_len=512, sliding_window=None, dtype="float32",
      param_dtype="float32", remat_policy="none", tie_embeddings=True, attention_impl="xla",
      bos_id=None, eos_id=None, pad_id=None, **size_fields(d_model, layers))
  c.data.update(dataset="code_corpus", source_dir="", validation_fraction=0.02, data_dir="",
                tokenizer="", tokenizer_vocab_size=1024, tokenizer_train_bytes=4_000_000,
                seq_len=128, batch_size=8, eval_batches=EVAL_BATCHES, worker_count=0)
  c.optimizer.update(learning_rate=LEARNING_RATE, schedule="cosine",
                     warmup_steps=WARMUP_STEPS, warmup_fraction=0.0, decay_steps=0,
                     end_lr_fraction=0.1, b1=0.9, b2=0.95,
                     eps=1e-8, weight_decay=0.1, grad_clip_norm=1.0)
  tokens_per_step = c.data.batch_size * c.data.seq_len  # 8 x 128 = 1,024
  c.total_steps = -(-int(float(v["tokens"])) // tokens_per_step)
  if v["mixture"] == "textbook":  # prepare() makes it; sweep() points source_dir at it
    c.data.update(dataset="synthetic_exercises", format="lm")
  else:  # (the sweep's textbook runs set max_bytes and validation_fraction back)
    c.data.update(RAW_DATA)
  if v["smoke"]:
    c.data.update(tokenizer_vocab_size=256, tokenizer_train_bytes=200_000, seq_len=32,
                  batch_size=4, eval_batches=2, max_files=20)
    c.total_steps = -(-int(float(v["tokens"])) // (4 * 32))
    c.log_every, c.checkpoint_every, c.checkpoint_every_fraction = 2, 4, 0.0
    c.optimizer.warmup_steps = 2
    c.model.update(d_model=32, num_layers=2, num_heads=2, num_kv_heads=2, mlp_dim=80)
  return c


def sweep(arg: str = "") -> list[dict[str, Any]]:
  """The grid: every size x budget x mixture, plus the held-out size per mixture (tag
  holdout=true: the sweep's fit leaves it out and predicts it)."""
  from phi_jax import sweep as sweeps  # pylint: disable=g-import-not-at-top
  v = parse_arg(arg, {"smoke": False, "tune": False, "ladder": "width"})
  if v["ladder"] not in LADDERS:
    raise ValueError(f"ladder={v['ladder']!r}: choose one of {sorted(LADDERS)}")
  fitted_sizes, holdout_sizes, rates = LADDERS[v["ladder"]]
  mixtures = {
      "raw": {"data.dataset": "code_corpus", **{f"data.{k}": val for k, val in RAW_DATA.items()}},
      "textbook": {"data.dataset": "synthetic_exercises", "data.max_bytes": 0,
                   "data.validation_fraction": 0.02,
                   "data.source_dir": "{workdir}/mixture/dataset"},
  }
  sizes = {name: {f"model.{k}": val for k, val in size_fields(*shape).items()}
           | {"optimizer.learning_rate": rates[name]}
           for name, shape in fitted_sizes.items()}
  budgets = (512, 1_024) if v["smoke"] else BUDGETS
  if v["smoke"]:
    sizes = dict(list(sizes.items())[:2])
  if v["tune"]:  # the peak-rate search: each fitted size x TUNE_RATES, textbook, middle budget
    runs = sweeps.grid(size=sizes, lr={f"{lr:g}": {"optimizer.learning_rate": lr}
                                       for lr in TUNE_RATES},
                       tokens=(512 if v["smoke"] else HOLDOUT_TOKENS,))
    for run in runs:
      run.update(mixtures["textbook"], **{"data.tokenizer": "{workdir}/tokenizer/sp.model"})
      run[sweeps.TAGS]["mixture"] = "textbook"
    return runs
  # cheapest first, the two mixtures side by side: if time runs out, both have the same runs
  runs = sweeps.grid(mixture=mixtures, size=sizes, tokens=budgets)
  # Order (for a sweep cut short): both mixtures' three smallest sizes, then the textbook
  # mixture's two largest and its holdout (the headline), then the raw mixture's.
  order = list(sizes)
  late = order[-2:]

  def rank(run):
    tags = run[sweeps.TAGS]
    big = tags["size"] in late
    return (big and tags["mixture"] == "raw", big, order.index(tags["size"]), tags["mixture"])

  runs.sort(key=rank)
  (held_name, shape), = holdout_sizes.items()
  holdout = {f"model.{k}": val for k, val in size_fields(*shape).items()}
  holdout["optimizer.learning_rate"] = rates[held_name]
  held = sweeps.grid(mixture=mixtures, size={held_name: holdout},
                     tokens=(512 if v["smoke"] else HOLDOUT_TOKENS,))
  for run in held:
    run[sweeps.TAGS]["holdout"] = True
  textbook_holdout = [r for r in held if r[sweeps.TAGS]["mixture"] == "textbook"]
  raw_holdout = [r for r in held if r[sweeps.TAGS]["mixture"] == "raw"]
  raw_last = [r for r in runs if r[sweeps.TAGS]["size"] in late
              and r[sweeps.TAGS]["mixture"] == "raw"]
  runs = [r for r in runs if r not in raw_last] + textbook_holdout + raw_last + raw_holdout
  for run in runs:
    run["data.tokenizer"] = "{workdir}/tokenizer/sp.model"
    if v["smoke"]:
      run.update({"data.tokenizer_vocab_size": 256, "data.seq_len": 32, "data.batch_size": 4,
                  "data.eval_batches": 2, "data.max_files": 20})
  return runs


def prepare(arg: str, workdir: pathlib.Path) -> None:
  """Makes what the runs share, once: the textbook mixture in DIR/mixture and one tokenizer in
  DIR/tokenizer/sp.model on equal shares of both mixtures' training text."""
  from phi_jax.curation import mixture as mixtures  # pylint: disable=g-import-not-at-top
  from phi_jax.curation import stages  # pylint: disable=g-import-not-at-top
  from phi_jax.data import builders  # pylint: disable=g-import-not-at-top
  from phi_jax.data import tokenizer as tokenizers  # pylint: disable=g-import-not-at-top
  from phi_jax.train import inputs  # pylint: disable=g-import-not-at-top
  v = parse_arg(arg, {"smoke": False, "tune": False, "ladder": "width"})
  workdir = pathlib.Path(workdir)
  m = SMOKE_MIXTURE if v["smoke"] else MIXTURE
  pipeline = mixtures.pipeline_config(m["n_exercises"], m["n_textbooks"], m["n_drills"],
                                      seed=m["seed"])
  summary = stages.run(pipeline, workdir / "mixture", progress=False, log=print)
  source = (summary.get("train_config") or {}).get("data.source_dir")
  expected = str(workdir / "mixture" / "dataset")
  if source and pathlib.Path(source).resolve() != pathlib.Path(expected).resolve():
    raise ValueError(f"the mixture's dataset is in {source}, not {expected}: update sweep()")
  model = workdir / "tokenizer" / "sp.model"
  if model.exists():
    return
  config = get_config(arg)
  share = config.data.tokenizer_train_bytes // 2
  texts = []
  for mixture in ("raw", "textbook"):  # the builder arguments the runs use (the same dataset)
    data = get_config(f"{arg},mixture={mixture}" if arg else f"mixture={mixture}").data
    if mixture == "textbook":
      data.source_dir = expected
    kwargs = inputs._builder_kwargs(data)  # pylint: disable=protected-access
    source = builders.build(data.dataset, str(workdir / "data"), **kwargs).as_data_source("train")
    texts += builders.leading_texts(source, share)
  print(f"[prepare] one SentencePiece tokenizer ({config.data.tokenizer_vocab_size} tokens) on "
        f"{sum(len(t) for t in texts) / 1e6:.1f} MB: equal shares of raw and textbook", flush=True)
  model.parent.mkdir(parents=True, exist_ok=True)
  tokenizers.train_sentencepiece(texts, workdir / "tokenizer" / "sp",
                                 vocab_size=config.data.tokenizer_vocab_size)
