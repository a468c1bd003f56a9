"""Near-duplicate removal: MinHash LSH over token shingles, union-find clusters, one kept per cluster.

    clusters = near_duplicates(texts, threshold=0.8)     # [[0, 3], [5, 9, 12]]: sorted indices
    kept, report = deduplicate(texts, threshold=0.8)     # report: what each cluster kept and dropped

How (the usual web-scale recipe, at this codebase's scale):
1. A document's tokens are `\\w+` runs and single punctuation characters, lower-cased; its shingles
   are the sets of `shingle_size` consecutive tokens. A document shorter than one shingle is one
   shingle of all its tokens; a document with no tokens (empty / whitespace) is never a duplicate.
2. A MinHash of `num_perm` permutations (datasketch, seeded: same input -> same clusters) per
   document goes into an LSH index whose bands are tuned for `threshold - candidate_margin`, so pairs
   near the threshold still become candidates (fewer misses, more pairs to verify).
3. Each candidate pair is verified: its Jaccard similarity, exact on the shingle sets by default
   (`verify='exact'`) or the MinHash estimate (`verify='estimate'`, no sets kept), must be
   >= `threshold`. Verified pairs are joined with union-find; a cluster is a connected component,
   so two members may be less similar to each other than to a third (single linkage).
4. Each cluster keeps one document: the highest `scores[i]` when scores are given, else (and on
   ties) the lowest index.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Any, Optional, Sequence

from datasketch import MinHash, MinHashLSH
import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclasses.dataclass(frozen=True)
class DedupConfig:
  """Knobs of near-duplicate detection.

  Attributes:
    threshold: Jaccard similarity of shingle sets at or above which two documents are duplicates.
    num_perm: MinHash permutations (more: better estimates and LSH recall, slower).
    shingle_size: tokens per shingle.
    seed: MinHash seed.
    candidate_margin: LSH bands are tuned for `threshold - candidate_margin` (verification applies
      the real threshold).
    verify: 'exact' (Jaccard of the shingle sets) or 'estimate' (MinHash estimate).
  """

  threshold: float = 0.8
  num_perm: int = 128
  shingle_size: int = 5
  seed: int = 0
  candidate_margin: float = 0.1
  verify: str = "exact"

  def validate(self) -> None:
    if not 0.0 < self.threshold <= 1.0:
      raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
    if self.num_perm < 16:
      raise ValueError(f"num_perm must be >= 16, got {self.num_perm}")
    if self.shingle_size < 1:
      raise ValueError(f"shingle_size must be >= 1, got {self.shingle_size}")
    if not 0.0 <= self.candidate_margin < 1.0:
      raise ValueError(f"candidate_margin must be in [0, 1), got {self.candidate_margin}")
    if self.verify not in ("exact", "estimate"):
      raise ValueError(f"verify must be 'exact' or 'estimate', got {self.verify!r}")


def tokens(text: str) -> list[str]:
  """Lower-cased word runs and single punctuation characters; whitespace dropped."""
  return _TOKEN.findall(text.lower())


def shingles(text: str, size: int = 5) -> set[bytes]:
  """The set of `size`-token shingles of `text` (UTF-8 bytes, tokens joined by a space)."""
  toks = tokens(text)
  if not toks:
    return set()
  if len(toks) <= size:
    return {" ".join(toks).encode("utf-8")}
  return {" ".join(toks[i:i + size]).encode("utf-8") for i in range(len(toks) - size + 1)}


def jaccard(a: set[Any], b: set[Any]) -> float:
  """|a & b| / |a | b| (0 for two empty sets)."""
  if not a and not b:
    return 0.0
  return len(a & b) / len(a | b)


class _UnionFind:
  """Disjoint sets over 0..n-1; the root of a set is its smallest member."""

  def __init__(self, n: int):
    self.parent = list(range(n))

  def find(self, i: int) -> int:
    root = i
    while self.parent[root] != root:
      root = self.parent[root]
    while self.parent[i] != root:  # path compression
      self.parent[i], i = root, self.parent[i]
    return root

  def union(self, i: int, j: int) -> None:
    ri, rj = self.find(i), self.find(j)
    if ri != rj:
      self.parent[max(ri, rj)] = min(ri, rj)


def _minhash(shingle_set: set[bytes], config: DedupConfig) -> MinHash:
  m = MinHash(num_perm=config.num_perm, seed=config.seed)
  m.update_batch(sorted(shingle_set))
  return m


def _similar_pairs(texts: Sequence[str], config: DedupConfig,
                   progress: bool = False) -> dict[tuple[int, int], float]:
  """{(i, j): similarity} for verified pairs i < j."""
  config.validate()
  sets = [shingles(t, config.shingle_size) for t in texts]
  lsh = MinHashLSH(threshold=max(0.05, config.threshold - config.candidate_margin),
                   num_perm=config.num_perm)
  hashes: dict[int, MinHash] = {}
  exact_copies: dict[str, int] = {}  # identical shingle sets skip the LSH query
  pairs: dict[tuple[int, int], float] = {}
  order = range(len(texts))
  if progress:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    order = tqdm(order, desc="dedup", unit="doc")
  for i in order:
    if not sets[i]:
      continue
    key = hashlib.sha256(b"\n".join(sorted(sets[i]))).hexdigest()
    if key in exact_copies:
      pairs[(exact_copies[key], i)] = 1.0
      continue
    exact_copies[key] = i
    m = _minhash(sets[i], config)
    for j in sorted(lsh.query(m)):
      if config.verify == "exact":
        sim = jaccard(sets[i], sets[j])
      else:
        sim = float(m.jaccard(hashes[j]))
      if sim >= config.threshold:
        pairs[(j, i)] = sim
    lsh.insert(i, m)
    hashes[i] = m
  return pairs


def _clusters(n: int, pairs: dict[tuple[int, int], float]) -> list[list[int]]:
  uf = _UnionFind(n)
  for i, j in sorted(pairs):
    uf.union(i, j)
  groups: dict[int, list[int]] = {}
  for i in sorted({k for pair in pairs for k in pair}):
    groups.setdefault(uf.find(i), []).append(i)
  return sorted(sorted(g) for g in groups.values() if len(g) > 1)


def near_duplicates(texts: list[str], threshold: float = 0.8, **kwargs: Any) -> list[list[int]]:
  """Clusters of near-duplicate documents: lists of >= 2 indices, each sorted, sorted by first.

  kwargs: the other `DedupConfig` fields (num_perm, shingle_size, seed, candidate_margin, verify).
  """
  config = DedupConfig(threshold=threshold, **kwargs)
  return _clusters(len(texts), _similar_pairs(texts, config))


def deduplicate(texts: Sequence[str], threshold: float = 0.8, *,
                scores: Optional[Sequence[float]] = None, ids: Optional[Sequence[str]] = None,
                progress: bool = False, **kwargs: Any) -> tuple[list[int], dict[str, Any]]:
  """(kept indices in order, report): one document per near-duplicate cluster survives.

  Args:
    texts: the documents.
    threshold: Jaccard threshold (see `DedupConfig`); kwargs: its other fields.
    scores: optional quality score per document; a cluster keeps its highest-scoring member
      (the lowest index on ties). Without scores it keeps its lowest index.
    ids: optional names for the documents, copied into the report.
    progress: show a tqdm bar.

  Returns:
    kept: sorted indices of the documents to keep (everything outside a cluster, plus one per
      cluster). report: JSON-ready `{'config', 'num_documents', 'num_kept', 'num_removed',
      'clusters': [{'members', 'kept', 'removed', 'similarity_to_kept', 'ids'?}]}`, where
      `similarity_to_kept[k]` is member k's Jaccard similarity (exact, or the verify mode's) to the
      kept document.
  """
  config = DedupConfig(threshold=threshold, **kwargs)
  n = len(texts)
  if scores is not None and len(scores) != n:
    raise ValueError(f"scores has {len(scores)} entries for {n} texts")
  if ids is not None and len(ids) != n:
    raise ValueError(f"ids has {len(ids)} entries for {n} texts")
  pairs = _similar_pairs(texts, config, progress=progress)
  clusters = _clusters(n, pairs)
  removed: set[int] = set()
  entries = []
  for members in clusters:
    if scores is not None:
      values = np.asarray([float(scores[i]) for i in members])
      if np.isnan(values).any():
        raise ValueError(f"scores of documents {members} contain NaN")
      keep = members[int(np.argmax(values))]  # argmax returns the first (lowest index) maximum
    else:
      keep = members[0]
    sets = {i: shingles(texts[i], config.shingle_size) for i in members}
    similarity = [1.0 if i == keep else
                  pairs.get((min(i, keep), max(i, keep)), round(jaccard(sets[i], sets[keep]), 6))
                  for i in members]
    entry: dict[str, Any] = {"members": members, "kept": keep,
                             "removed": [i for i in members if i != keep],
                             "similarity_to_kept": [round(float(s), 6) for s in similarity]}
    if ids is not None:
      entry["ids"] = [ids[i] for i in members]
    entries.append(entry)
    removed.update(entry["removed"])
  kept = [i for i in range(n) if i not in removed]
  report = {"config": dataclasses.asdict(config), "num_documents": n, "num_kept": len(kept),
            "num_removed": len(removed), "clusters": entries}
  return kept, report
