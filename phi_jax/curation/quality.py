"""The "educational value" filter of phi-1: model embeddings -> random forest -> keep the best.

phi-1 (arXiv 2306.11644, section 2.1) had GPT-4 label ~100k code files with their "educational
value for a student whose goal is to learn basic coding concepts", trained a random forest on the
output embeddings of a pretrained code model, and kept what it scored well (~35B -> ~6B tokens).

    embed = Embedder(cfg, params, tokenizer, layer=-1, max_len=512)    # a phi_jax model
    features = embed(texts)                                            # [N, D] float32
    labels = label_with_teacher(teacher, texts)                        # or a user's JSONL
    clf = train_classifier(features, labels, seed=0)                   # clf.metrics: held-out
    scores = clf.score(embed(all_texts))                               # P(educational) [N]
    keep = select(scores, top_fraction=0.3)
    write_dataset([...records...], scores, out_dir)                    # TFDS 'filtered_corpus'
    save_classifier(clf, 'clf.joblib'); clf = load_classifier('clf.joblib', embed.fingerprint)

Embeddings: the mean over a document's (first `max_len`) tokens of the residual stream after
layer `layer` (0-based; -1 = the last), before the final norm (`Transformer.apply(...,
return_hidden=True)` on the first layer + 1 layers). Documents are right-padded into fixed shape
buckets (batch_size x power-of-two lengths), padding gets segment id 0 (attends to nothing, and
nothing attends to it) and is left out of the mean: a document's embedding does not depend on
its batch or bucket. An empty document embeds as zeros.

Labels: `label_with_teacher` asks a teacher (`phi_jax.curation.teacher`) the phi-1 question and parses
yes/no or a 0-10 score; `heuristic_label` is a STAND-IN for those GPT-4 labels, for offline runs
and tests only: it scores docstring/comment density, documented functions, identifier length and
line length. It is not what phi-1 did and says nothing about true educational value.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import pathlib
import re
import tempfile
import time
import tokenize
from typing import Any, Optional, Sequence

import numpy as np

from phi_jax.data import files

PHI1_QUESTION = ("Determine its educational value for a student whose goal is to learn basic "
                 "coding concepts.")
TEACHER_PROMPT = """Here is a Python code file (possibly truncated):

```python
{code}
```

{question}
Reply with "yes" if it has high educational value or "no" if it does not, then a score from 0 \
(none) to 10 (excellent), e.g. "yes, 8/10".
Answer:"""


# ---- embeddings --------------------------------------------------------------------------------

def config_fingerprint(cfg: Any) -> str:
  """sha256 (16 hex) of a ModelConfig's fields."""
  payload = json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str)
  return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _buckets(max_len: int, smallest: int = 16) -> list[int]:
  out, n = [], smallest
  while n < max_len:
    out.append(n)
    n *= 2
  return out + [max_len]


class Embedder:
  """texts -> [N, D] float32 mean-pooled hidden states of a phi_jax model (see the module doc).

  Args:
    cfg, params: the model (`params['layers']` stacked on a leading layer axis).
    tokenizer: `.encode(str) -> list[int]`.
    layer: 0-based layer whose output is pooled; -1 = the last.
    max_len: tokens per document embedded (the first ones); capped at cfg.max_seq_len.
    batch_size: rows per jitted call (a short last batch is padded).
    progress: show a tqdm bar.
  """

  def __init__(self, cfg: Any, params: Any, tokenizer: Any, *, layer: int = -1,
               max_len: int = 512, batch_size: int = 8, progress: bool = False):
    import jax  # pylint: disable=g-import-not-at-top
    if not -cfg.num_layers <= layer < cfg.num_layers:
      raise ValueError(f"layer must be in [-{cfg.num_layers}, {cfg.num_layers}) for a "
                       f"{cfg.num_layers}-layer model, got {layer}")
    if max_len < 1 or batch_size < 1:
      raise ValueError(f"max_len and batch_size must be >= 1, got {max_len}, {batch_size}")
    self.layer = layer % cfg.num_layers
    self.max_len = min(max_len, cfg.max_seq_len)
    self.batch_size = batch_size
    self.tokenizer = tokenizer
    self.progress = progress
    self.model_fingerprint = config_fingerprint(cfg)
    self.fingerprint = f"{self.model_fingerprint}:layer{self.layer}:len{self.max_len}"
    self.description = (f"mean-pooled residual stream after layer {self.layer} of a "
                        f"{cfg.num_layers}-layer {cfg.name} model (first {self.max_len} tokens)")
    self.cfg = cfg.replace(num_layers=self.layer + 1)
    params = dict(params)
    params["layers"] = jax.tree.map(lambda x: x[:self.layer + 1], params["layers"])
    self.params = params
    self._pool = jax.jit(functools.partial(_pooled_hidden, self.cfg))

  def tokens(self, text: str) -> list[int]:
    return list(self.tokenizer.encode(text))[:self.max_len]

  def __call__(self, texts: Sequence[str]) -> np.ndarray:
    ids = [self.tokens(t) for t in texts]
    out = np.zeros((len(ids), self.cfg.d_model), np.float32)
    buckets = _buckets(self.max_len)
    by_bucket: dict[int, list[int]] = {}
    for i, row in enumerate(ids):
      if row:
        by_bucket.setdefault(next(b for b in buckets if b >= len(row)), []).append(i)
    batches = [(length, members[s:s + self.batch_size])
               for length, members in sorted(by_bucket.items())
               for s in range(0, len(members), self.batch_size)]
    if self.progress:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      batches = tqdm(batches, desc="embed", unit="batch")
    for length, members in batches:
      tokens = np.zeros((self.batch_size, length), np.int32)
      mask = np.zeros((self.batch_size, length), np.int32)
      for r, i in enumerate(members):
        tokens[r, :len(ids[i])] = ids[i]
        mask[r, :len(ids[i])] = 1
      pooled = np.asarray(self._pool(self.params, tokens, mask))
      out[members] = pooled[:len(members)]
    return out


def _pooled_hidden(cfg: Any, params: Any, tokens: Any, mask: Any) -> Any:
  """[B, T] tokens, [B, T] 0/1 mask -> [B, D] float32 mean of the hidden states where mask is 1."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from phi_jax.models import Transformer  # pylint: disable=g-import-not-at-top
  hidden = Transformer(cfg).apply({"params": params}, tokens, segment_ids=mask,
                                  return_hidden=True).astype(jnp.float32)  # [B, T, D]
  weights = mask.astype(jnp.float32)[..., None]
  return (hidden * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)


# ---- labels ------------------------------------------------------------------------------------

def teacher_prompt(text: str, max_chars: int = 6000) -> str:
  """The phi-1 question about one document (cut to max_chars)."""
  return TEACHER_PROMPT.format(code=text[:max_chars], question=PHI1_QUESTION)


_YES_NO = re.compile(r"^\W*(yes|no)\b")
_SCORE = re.compile(r"(?<![\w.])(10|\d(?:\.\d+)?)\s*(?:/\s*10|out of 10)")
_SCORE_WORD = re.compile(r"(?:score|rating|value)\D{0,20}?(10|\d(?:\.\d+)?)(?![\d.])")
_BARE = re.compile(r"^\W*(10|\d(?:\.\d+)?)(?![\d.])")


def parse_teacher_answer(answer: str, min_score: float = 5.0) -> int:
  """1 (educational) / 0 (not) / -1 (unparseable) from a teacher's answer.

  Reads, in order: a leading yes/no; a score written "7/10" or "7 out of 10"; "score: 7"; a
  leading bare number in 0..10. A score counts as 1 when >= min_score.
  """
  text = answer.strip().lower().replace("*", "")
  m = _YES_NO.match(text)
  if m:
    return int(m.group(1) == "yes")
  for pattern in (_SCORE, _SCORE_WORD, _BARE):
    m = pattern.search(text) if pattern is not _BARE else pattern.match(text)
    if m:
      score = float(m.group(1))
      if 0.0 <= score <= 10.0:
        return int(score >= min_score)
  return -1


def label_with_teacher(teacher: Any, texts: Sequence[str], *, batch_size: int = 32,
                       max_tokens: int = 16, min_score: float = 5.0,
                       max_chars: int = 6000) -> list[int]:
  """Asks `teacher` (an object with `.complete(prompts, *, max_tokens, temperature, stop)`) the
  phi-1 question about each text, greedily; returns 1 / 0 per text, or -1 where the answer could
  not be parsed (`train_classifier` drops those)."""
  complete = teacher.complete if hasattr(teacher, "complete") else teacher
  labels: list[int] = []
  for start in range(0, len(texts), batch_size):
    prompts = [teacher_prompt(t, max_chars) for t in texts[start:start + batch_size]]
    answers = complete(prompts, max_tokens=max_tokens, temperature=0.0, stop=["\n\n"])
    if len(answers) != len(prompts):
      raise ValueError(f"The teacher returned {len(answers)} answers for {len(prompts)} prompts")
    labels.extend(parse_teacher_answer(a, min_score) for a in answers)
  return labels


def heuristic_score(text: str) -> float:
  """STAND-IN for GPT-4's judgement (see the module doc), in [0, 1]: 0 for code that does not
  parse; else 0.4 x comment+docstring line density (saturating at 25% of lines) + 0.3 x share of
  documented functions/classes + 0.2 x mean identifier length (saturating at 6) + 0.1 x share of
  lines <= 100 characters."""
  try:
    tree = ast.parse(text)
  except (SyntaxError, ValueError, RecursionError, MemoryError):
    return 0.0
  lines = text.splitlines()
  nonblank = max(1, sum(1 for line in lines if line.strip()))
  doc_lines: set[int] = set()
  defs = documented = 0
  for node in ast.walk(tree):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
      if not isinstance(node, ast.Module):
        defs += 1
      body = node.body
      if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
          and isinstance(body[0].value.value, str)):
        documented += not isinstance(node, ast.Module)
        doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
  try:
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
      if tok.type == tokenize.COMMENT:
        doc_lines.add(tok.start[0])
  except (tokenize.TokenError, IndentationError, SyntaxError):
    pass
  names = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name)]
  names += [n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)]
  mean_len = float(np.mean([len(n) for n in names])) if names else 0.0
  short = sum(1 for line in lines if len(line) <= 100) / max(1, len(lines))
  density = min(len(doc_lines) / nonblank / 0.25, 1.0)
  documented_share = documented / defs if defs else 0.5
  return (0.4 * density + 0.3 * documented_share + 0.2 * min(mean_len / 6.0, 1.0) + 0.1 * short)


def heuristic_label(text: str, threshold: float = 0.7) -> int:
  """1 when `heuristic_score(text) >= threshold` (a STAND-IN label; see the module doc)."""
  return int(heuristic_score(text) >= threshold)


def read_labels(path: str | os.PathLike) -> tuple[list[str], list[int]]:
  """texts, labels from a JSONL of {"text": str, "label": 0/1 (or true/false)} per line."""
  texts, labels = [], []
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, 1):
      if not line.strip():
        continue
      row = json.loads(line)
      if not isinstance(row.get("text"), str) or row.get("label") not in (0, 1, True, False):
        raise ValueError(f"{path}:{n}: each line needs a string 'text' and a 0/1 'label'")
      texts.append(row["text"])
      labels.append(int(row["label"]))
  return texts, labels


# ---- the classifier ----------------------------------------------------------------------------

@dataclasses.dataclass
class QualityClassifier:
  """A fitted random forest and what it was trained on.

  metadata: 'embedder' (the Embedder fingerprint: model config hash, layer, max_len), 'feature_dim',
  'metrics' (held-out accuracy, roc_auc, ...), 'created', 'sklearn'.
  """

  forest: Any
  metadata: dict[str, Any]

  @property
  def metrics(self) -> dict[str, Any]:
    return self.metadata.get("metrics", {})

  def score(self, features: np.ndarray) -> np.ndarray:
    """P(label 1) per row of features [N, D] -> [N] float64."""
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or features.shape[1] != self.metadata["feature_dim"]:
      raise ValueError(f"features must be [N, {self.metadata['feature_dim']}], got "
                       f"{features.shape}: embed with the model the classifier was trained on")
    if len(features) == 0:
      return np.zeros((0,), np.float64)
    column = list(self.forest.classes_).index(1)
    return self.forest.predict_proba(features)[:, column]


def train_classifier(features: np.ndarray, labels: Sequence[int], *, test_fraction: float = 0.2,
                     seed: int = 0, n_estimators: int = 200, max_depth: Optional[int] = None,
                     min_samples_leaf: int = 1, refit: bool = True,
                     metadata: Optional[dict[str, Any]] = None) -> QualityClassifier:
  """Fits a random forest on features [N, D] and 0/1 labels (-1 = unlabelled: dropped).

  A stratified, seeded `test_fraction` split gives the held-out metrics (accuracy, ROC AUC, the
  majority-class baseline); with refit=True the returned forest is then refit on every labelled
  example (the metrics stay the held-out ones).
  """
  from sklearn.ensemble import RandomForestClassifier  # pylint: disable=g-import-not-at-top
  from sklearn.metrics import accuracy_score, roc_auc_score  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
  import sklearn  # pylint: disable=g-import-not-at-top
  features = np.asarray(features, np.float32)
  labels = np.asarray(labels, np.int64)
  if features.ndim != 2 or len(features) != len(labels):
    raise ValueError(f"Need features [N, D] and N labels, got {features.shape} and {labels.shape}")
  keep = labels >= 0
  features, labels = features[keep], labels[keep]
  counts = {c: int((labels == c).sum()) for c in (0, 1)}
  if set(np.unique(labels)) - {0, 1}:
    raise ValueError(f"labels must be 0, 1 (or -1 for unlabelled), got {sorted(set(labels))}")
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  n_test = math.ceil(test_fraction * len(labels))
  if min(counts.values()) < 2 or n_test < 2 or len(labels) - n_test < 2:
    raise ValueError(f"Need at least 2 examples of each label and 2 in each split for a "
                     f"stratified split, got {counts} (test_fraction {test_fraction}): label more "
                     "documents or use a labeller that finds both classes")

  def forest():
    return RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth,
                                  min_samples_leaf=min_samples_leaf, random_state=seed, n_jobs=1)

  x_train, x_test, y_train, y_test = train_test_split(
      features, labels, test_size=n_test, stratify=labels, random_state=seed)
  model = forest().fit(x_train, y_train)
  proba = model.predict_proba(x_test)[:, list(model.classes_).index(1)]
  metrics = {
      "accuracy": float(accuracy_score(y_test, (proba >= 0.5).astype(np.int64))),
      "roc_auc": float(roc_auc_score(y_test, proba)) if len(set(y_test)) == 2 else float("nan"),
      "majority_baseline": float(max(np.mean(y_test), 1 - np.mean(y_test))),
      "num_train": int(len(y_train)), "num_test": int(len(y_test)), "label_counts": counts,
      "test_fraction": test_fraction, "seed": seed, "refit_on_all": refit}
  if refit:
    model = forest().fit(features, labels)
  meta = dict(metadata or {})
  meta.update({"feature_dim": int(features.shape[1]), "metrics": metrics,
               "n_estimators": n_estimators, "sklearn": sklearn.__version__,
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
  return QualityClassifier(model, meta)


def save_classifier(classifier: QualityClassifier, path: str | os.PathLike) -> None:
  """joblib file at `path`, written to a temp file beside it and renamed into place."""
  import joblib  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
  os.close(fd)
  try:
    joblib.dump({"format": 1, "forest": classifier.forest, "metadata": classifier.metadata}, tmp)
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def load_classifier(path: str | os.PathLike,
                    expected_embedder: Optional[str] = None) -> QualityClassifier:
  """The classifier saved at `path`; with `expected_embedder` (an `Embedder.fingerprint`), raises
  if it was trained on another model's / layer's embeddings."""
  import joblib  # pylint: disable=g-import-not-at-top
  blob = joblib.load(path)
  if not isinstance(blob, dict) or blob.get("format") != 1:
    raise ValueError(f"{path} is not a phi_jax quality classifier (save_classifier writes them)")
  classifier = QualityClassifier(blob["forest"], blob["metadata"])
  trained_on = classifier.metadata.get("embedder")
  if expected_embedder is not None and trained_on != expected_embedder:
    raise ValueError(f"{path} was trained on embeddings {trained_on!r}, not {expected_embedder!r}"
                     ": use the same model, layer and max_len, or retrain")
  return classifier


# ---- selection and output ----------------------------------------------------------------------

def select(scores: Sequence[float], *, top_fraction: Optional[float] = None,
           threshold: Optional[float] = None) -> list[int]:
  """Sorted indices kept: the ceil(top_fraction * N) highest scores (ties: lower index first),
  or every score >= threshold. Exactly one of the two must be given."""
  scores = np.asarray(scores, np.float64)
  if (top_fraction is None) == (threshold is None):
    raise ValueError("Give exactly one of top_fraction and threshold")
  if threshold is not None:
    return [int(i) for i in np.nonzero(scores >= threshold)[0]]
  if not 0.0 <= top_fraction <= 1.0:
    raise ValueError(f"top_fraction must be in [0, 1], got {top_fraction}")
  k = math.ceil(top_fraction * len(scores) - 1e-9)
  order = np.lexsort((np.arange(len(scores)), -scores))  # by score desc, then index asc
  return sorted(int(i) for i in order[:k])


def write_dataset(records: Sequence[dict[str, Any]], scores: Optional[Sequence[float]],
                  out_dir: str | os.PathLike, *, data_dir: Optional[str | os.PathLike] = None,
                  validation_fraction: float = 0.02, build: bool = True) -> Any:
  """Writes records (dicts with 'text' and 'id'; scores added as 'score') to
  out_dir/records.jsonl atomically, then builds the TFDS dataset 'filtered_corpus' from it under
  data_dir (default out_dir/tfds). Returns the builder (None with build=False)."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  if scores is not None and len(scores) != len(records):
    raise ValueError(f"{len(scores)} scores for {len(records)} records")
  rows = []
  for k, record in enumerate(records):
    if not isinstance(record.get("text"), str) or not record.get("id"):
      raise ValueError(f"record {k} needs a string 'text' and an 'id', has {sorted(record)}")
    row = dict(record)
    if scores is not None:
      row["score"] = float(scores[k])
    rows.append(row)
  write_jsonl(out_dir / "records.jsonl", rows)
  if not build:
    return None
  from phi_jax.data import builders  # pylint: disable=g-import-not-at-top
  return builders.build("filtered_corpus", data_dir or out_dir / "tfds", source_dir=out_dir,
                        validation_fraction=validation_fraction)


def write_jsonl(path: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> None:
  """One JSON object per line, written to a temp file beside `path` and renamed into place."""
  with files.atomic_open(path) as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
