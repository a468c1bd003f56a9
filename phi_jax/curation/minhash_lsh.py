"""Near-dup removal over shards: MinHash -> LSH band shuffle -> verify -> components -> filter.

The same clusters as `dedup.near_duplicates` (same shingles, the same datasketch MinHash
permutations and LSH bands, the same exact-Jaccard verification, single linkage), computed as
steps of the engine (`engine.Engine.map`) over files, with no in-memory index of the corpus:

1. signatures (one task per input shard): each document's shingle hashes (the first 8 bytes of
   the SHA-1 that datasketch's MinHash hashes; their low 32 bits feed the MinHash), its MinHash
   and its `b` band keys; band entries (key, doc, set hash, score) go to `P` partitions by key
   (the shuffle), the shingle hashes to a per-shard side file.
2. pairs (one task per partition): sorts its entries by key; documents sharing a band key are
   candidate pairs (identical shingle sets are joined to their first copy, so a band of k exact
   copies gives k - 1 pairs, not k^2; a band of more than `max_group` distinct sets pairs each
   member with the first and the next only). Pairs go to files by the first document's shard.
3. verify (one task per shard): the exact Jaccard of each candidate pair from the two shards'
   shingle hashes (two shards in memory at a time); pairs >= threshold are edges.
4. components (one process, `connected_components`): its memory grows with the number of
   duplicate documents, not of documents. Each cluster keeps one document by the same rule as
   `dedup.deduplicate`: the highest score (with use_scores), else and on ties the lowest global
   index (shard-major order).
5. filter (one task per shard): drops the removed documents, writes the kept shard and the
   shard's cluster report.

A document's global index ("gid") is shard << 32 | position in its shard, so shard-major order
is the corpus order. 64-bit shingle hashes make the Jaccard exact up to a hash collision
(~n^2 / 2^64 for n shingles).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import pathlib
import re
from typing import Any, Optional, Sequence

import numpy as np

from phi_jax.curation import dedup as dedup_lib
from phi_jax.curation import shards

GID_BITS = 32
BAND = np.dtype([("key", "<u8"), ("gid", "<u8"), ("set", "<u8"), ("score", "<f8")])
PAIR = np.dtype([("i", "<u8"), ("j", "<u8")])
EDGE = np.dtype([("i", "<u8"), ("j", "<u8"), ("sim", "<f8"), ("score_i", "<f8"),
                 ("score_j", "<f8")])
_TOKEN = re.compile(r"\w+|[^\w\s]")


def gid(shard: int, position: int) -> int:
  return (shard << GID_BITS) | position


def split_gid(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  g = np.asarray(g, np.uint64)
  return (g >> np.uint64(GID_BITS)).astype(np.int64), (g & np.uint64(2**GID_BITS - 1)).astype(
      np.int64)


class Signer:
  """Shingle hashes, MinHash and band keys of documents under a `DedupConfig`."""

  def __init__(self, config: dedup_lib.DedupConfig):
    from datasketch import MinHash, MinHashLSH  # pylint: disable=g-import-not-at-top
    config.validate()
    self.config = config
    proto = MinHash(num_perm=config.num_perm, seed=config.seed)
    self._minhash = functools.partial(MinHash, num_perm=config.num_perm, seed=config.seed,
                                      permutations=proto.permutations, scheme=proto.scheme,
                                      hashfunc=int)
    lsh = MinHashLSH(threshold=max(0.05, config.threshold - config.candidate_margin),
                     num_perm=config.num_perm)
    self.bands, self.rows = lsh.b, lsh.r
    self.ranges = list(lsh.hashranges)

  def hashes(self, text: str) -> np.ndarray:
    """[S] uint64, sorted unique: the 64-bit hashes of `dedup.shingles(text)` (the same shingles,
    built here without the intermediate set)."""
    toks, size = dedup_lib.tokens(text), self.config.shingle_size
    if not toks:
      return np.empty(0, np.uint64)
    grams = ([" ".join(toks)] if len(toks) <= size else
             [" ".join(toks[i:i + size]) for i in range(len(toks) - size + 1)])
    sha1 = hashlib.sha1
    raw = b"".join([sha1(g.encode("utf-8")).digest()[:8] for g in grams])
    return np.unique(np.frombuffer(raw, "<u8"))  # repeated shingles hash alike

  def minhash(self, hashes: np.ndarray) -> np.ndarray:
    """[num_perm] MinHash values; equal to datasketch's `MinHash.update_batch(shingles)`."""
    m = self._minhash()
    m.update_batch((hashes & np.uint64(0xFFFFFFFF)).tolist())
    return m.hashvalues

  def band_keys(self, values: np.ndarray) -> np.ndarray:
    """[bands] uint64: a hash of (band index, the band's MinHash values)."""
    out = np.empty(len(self.ranges), np.uint64)
    for b, (start, end) in enumerate(self.ranges):
      digest = hashlib.blake2b(values[start:end].tobytes(), digest_size=8,
                               salt=b.to_bytes(8, "little")).digest()
      out[b] = int.from_bytes(digest, "little")
    return out


@dataclasses.dataclass(frozen=True)
class DedupJob:
  """Where a sharded dedup reads and writes, and how (picklable: shipped to the workers)."""

  input_dir: str            # the input shards (part-*-of-S.jsonl.gz)
  output_dir: str           # the kept shards, same names
  work_dir: str             # bucket / pair / edge / cluster files
  num_shards: int
  num_partitions: int
  config: dedup_lib.DedupConfig
  use_scores: bool = False
  max_group: int = 64


def _signer(config: dedup_lib.DedupConfig) -> Signer:
  return _cached_signer(config)


@functools.lru_cache(maxsize=4)
def _cached_signer(config: dedup_lib.DedupConfig) -> Signer:
  return Signer(config)


def signatures_task(rank: int, job: DedupJob) -> None:
  """Step 1 for input shard `rank` (module docstring)."""
  signer = _signer(job.config)
  work = pathlib.Path(job.work_dir)
  entries, offsets, values, gids, scores = [], [0], [], [], []
  all_scored = True
  for k, row in enumerate(shards.read_records(shards.shard_path(job.input_dir, rank,
                                                                job.num_shards))):
    h = signer.hashes(row.get("text", ""))
    score = row.get("score")
    all_scored &= isinstance(score, (int, float))
    if not len(h):
      continue  # no tokens: never a duplicate
    g = gid(rank, k)
    keys = signer.band_keys(signer.minhash(h))
    set_key = int.from_bytes(hashlib.blake2b(h.tobytes(), digest_size=8).digest(), "little")
    s = float(score) if isinstance(score, (int, float)) else 0.0
    block = np.empty(len(keys), BAND)
    block["key"], block["gid"], block["set"], block["score"] = keys, g, set_key, s
    entries.append(block)
    values.append(h)
    offsets.append(offsets[-1] + len(h))
    gids.append(g)
    scores.append(s)
  band = np.concatenate(entries) if entries else np.empty(0, BAND)
  part = (band["key"] % np.uint64(job.num_partitions)).astype(np.int64)
  for p in range(job.num_partitions):
    shards.save_array(work / "buckets" / f"p{p:05d}" / f"s{rank:05d}.npy", band[part == p])
  side = work / "sets" / f"s{rank:05d}"
  shards.save_array(side / "values.npy", np.concatenate(values) if values else
                    np.empty(0, np.uint64))
  shards.save_array(side / "offsets.npy", np.asarray(offsets, np.int64))
  shards.save_array(side / "gids.npy", np.asarray(gids, np.uint64))
  shards.save_array(side / "scores.npy", np.asarray(scores, np.float64))
  shards.write_json(side / "meta.json", {"all_scored": bool(all_scored)})


def _group_pairs(entries: np.ndarray, max_group: int) -> np.ndarray:
  """Candidate pairs (i < j) of band entries sorted by (key, gid)."""
  keys = entries["key"]
  if len(keys) < 2:
    return np.empty(0, PAIR)
  starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
  sizes = np.diff(np.r_[starts, len(keys)])
  out_i, out_j = [], []
  for start, size in zip(starts[sizes > 1], sizes[sizes > 1]):
    group = entries[start:start + size]
    first_of_set: dict[int, int] = {}
    reps = []
    for g, s in zip(group["gid"].tolist(), group["set"].tolist()):
      if s in first_of_set:  # an exact copy: joined to the first document with that set
        out_i.append(first_of_set[s])
        out_j.append(g)
      else:
        first_of_set[s] = g
        reps.append(g)
    if len(reps) <= max_group:
      for a in range(len(reps)):
        for b in range(a + 1, len(reps)):
          out_i.append(reps[a])
          out_j.append(reps[b])
    else:  # a huge band group: a star on the first member and a chain, not all pairs
      for a in range(1, len(reps)):
        out_i += [reps[0], reps[a - 1]]
        out_j += [reps[a], reps[a]]
  pairs = np.empty(len(out_i), PAIR)
  pairs["i"], pairs["j"] = out_i, out_j
  return pairs


def pairs_task(rank: int, job: DedupJob) -> None:
  """Step 2 for band partition `rank`."""
  work = pathlib.Path(job.work_dir)
  folder = work / "buckets" / f"p{rank:05d}"
  parts = [shards.load_array(folder / f"s{s:05d}.npy") for s in range(job.num_shards)]
  entries = np.concatenate(parts) if parts else np.empty(0, BAND)
  entries = entries[np.lexsort((entries["gid"], entries["key"]))]
  pairs = _group_pairs(entries, job.max_group)
  shard_i, _ = split_gid(pairs["i"])
  for s in range(job.num_shards):
    shards.save_array(work / "pairs" / f"s{s:05d}" / f"p{rank:05d}.npy", pairs[shard_i == s])


class _Sets:
  """One shard's shingle hashes (side files of step 1), looked up by gid."""

  def __init__(self, work: pathlib.Path, shard: int):
    side = work / "sets" / f"s{shard:05d}"
    self.values = shards.load_array(side / "values.npy")
    self.offsets = shards.load_array(side / "offsets.npy")
    gids = shards.load_array(side / "gids.npy")
    self.scores = shards.load_array(side / "scores.npy")
    self.row = {int(g): r for r, g in enumerate(gids.tolist())}

  def get(self, g: int) -> tuple[np.ndarray, float]:
    r = self.row[g]
    return self.values[self.offsets[r]:self.offsets[r + 1]], float(self.scores[r])


def verify_task(rank: int, job: DedupJob) -> None:
  """Step 3 for the pairs whose first document is in shard `rank`."""
  work = pathlib.Path(job.work_dir)
  folder = work / "pairs" / f"s{rank:05d}"
  parts = [shards.load_array(folder / f"p{p:05d}.npy") for p in range(job.num_partitions)]
  pairs = np.concatenate(parts) if parts else np.empty(0, PAIR)
  pairs = np.unique(pairs)  # the same pair from several bands
  shard_j, _ = split_gid(pairs["j"])
  pairs, shard_j = pairs[np.argsort(shard_j, kind="stable")], np.sort(shard_j, kind="stable")
  mine = _Sets(work, rank)
  other: Optional[_Sets] = None
  edges = []
  for (i, j), sj in zip(pairs.tolist(), shard_j.tolist()):
    if sj == rank:
      theirs = mine
    else:
      if other is None or other.shard != sj:
        other = _Sets(work, sj)
        other.shard = sj  # type: ignore[attr-defined]
      theirs = other
    a, score_i = mine.get(i)
    b, score_j = theirs.get(j)
    inter = np.intersect1d(a, b, assume_unique=True).size
    sim = inter / (len(a) + len(b) - inter)
    if sim >= job.config.threshold:
      edges.append((i, j, sim, score_i, score_j))
  shards.save_array(work / "edges" / f"s{rank:05d}.npy", np.array(edges, EDGE))


def components(job: DedupJob) -> dict[str, Any]:
  """Step 4 (in the calling process): clusters and what each keeps; returns counts."""
  from scipy.sparse import coo_matrix  # pylint: disable=g-import-not-at-top
  from scipy.sparse.csgraph import connected_components  # pylint: disable=g-import-not-at-top
  work = pathlib.Path(job.work_dir)
  edges = np.concatenate([shards.load_array(work / "edges" / f"s{s:05d}.npy")
                          for s in range(job.num_shards)])
  use_scores = job.use_scores and all(
      shards.read_json(work / "sets" / f"s{s:05d}" / "meta.json")["all_scored"]
      for s in range(job.num_shards))
  nodes, inverse = np.unique(np.concatenate([edges["i"], edges["j"]]), return_inverse=True)
  score = np.zeros(len(nodes), np.float64)
  score[inverse[:len(edges)]] = edges["score_i"]
  score[inverse[len(edges):]] = edges["score_j"]
  if use_scores and np.isnan(score).any():
    raise ValueError("dedup.use_scores: some documents' scores are NaN")
  graph = coo_matrix((np.ones(len(edges)), (inverse[:len(edges)], inverse[len(edges):])),
                     shape=(len(nodes), len(nodes)))
  _, label = connected_components(graph, directed=False) if len(nodes) else (0, np.zeros(0, int))
  # Keep per cluster: highest score (use_scores), then lowest gid; nodes are sorted by gid.
  order = np.lexsort((nodes, -score if use_scores else np.zeros(len(nodes)), label))
  first = np.r_[True, label[order][1:] != label[order][:-1]] if len(order) else np.zeros(0, bool)
  kept_node = np.empty(label.max() + 1 if len(label) else 0, np.int64)
  kept_node[label[order][first]] = order[first]
  kept_gid = nodes[kept_node[label]]
  cluster_id = nodes[_first_member(label)]  # a cluster is named by its lowest gid
  shard_of, position = split_gid(nodes)
  for s in range(job.num_shards):
    here = shard_of == s
    table = np.zeros((int(here.sum()), 3), np.uint64)
    table[:, 0], table[:, 1], table[:, 2] = position[here], cluster_id[here], kept_gid[here]
    shards.save_array(work / "clusters" / f"s{s:05d}.npy", table)
  return {"clusters": int(label.max() + 1) if len(label) else 0,
          "removed": int(len(nodes) - (label.max() + 1 if len(label) else 0)),
          "edges": int(len(edges)), "used_scores": bool(use_scores)}


def _first_member(label: np.ndarray) -> np.ndarray:
  """For each node, the index of the first (lowest) node of its component."""
  first = np.full(label.max() + 1 if len(label) else 0, -1, np.int64)
  for n in range(len(label) - 1, -1, -1):
    first[label[n]] = n
  return first[label]


def filter_task(rank: int, job: DedupJob) -> None:
  """Step 5 for shard `rank`: the kept documents and the shard's cluster report."""
  work = pathlib.Path(job.work_dir)
  table = shards.load_array(work / "clusters" / f"s{rank:05d}.npy")
  member = {int(k): (int(c), int(kg)) for k, c, kg in table.tolist()}
  report, counts = [], {"documents": 0, "whitespace_tokens": 0, "bytes": 0}

  def kept():
    for k, row in enumerate(shards.read_records(shards.shard_path(job.input_dir, rank,
                                                                  job.num_shards))):
      if k in member:
        cluster, keep = member[k]
        g = gid(rank, k)
        report.append({"id": row["id"], "gid": g, "cluster": cluster, "kept_gid": keep,
                       "kept": keep == g})
        if keep != g:
          continue
      counts["documents"] += 1
      counts["whitespace_tokens"] += len(row.get("text", "").split())
      counts["bytes"] += len(row.get("text", "").encode("utf-8"))
      yield row

  shards.write_records(shards.shard_path(job.output_dir, rank, job.num_shards), kept())
  shards.write_records(work / "report" / shards.shard_name(rank, job.num_shards), report)
  shards.write_json(pathlib.Path(job.output_dir) / "_counts" / f"s{rank:05d}.json", counts)


def run(job: DedupJob, engine: Any, tasks_dir: str | pathlib.Path) -> dict[str, Any]:
  """All five steps on `engine`; finished ranks of an earlier run are skipped."""
  tasks_dir = pathlib.Path(tasks_dir)
  engine.map("dedup.signatures", functools.partial(signatures_task, job=job), job.num_shards,
             tasks_dir / "signatures")
  engine.map("dedup.pairs", functools.partial(pairs_task, job=job), job.num_partitions,
             tasks_dir / "pairs")
  engine.map("dedup.verify", functools.partial(verify_task, job=job), job.num_shards,
             tasks_dir / "verify")
  info = components(job)
  engine.map("dedup.filter", functools.partial(filter_task, job=job), job.num_shards,
             tasks_dir / "filter")
  return info


def read_clusters(job: DedupJob) -> list[list[int]]:
  """The clusters as sorted lists of gids, sorted by first member (as `near_duplicates`)."""
  groups: dict[int, list[int]] = {}
  for s in range(job.num_shards):
    for row in shards.read_records(pathlib.Path(job.work_dir) / "report" /
                                   shards.shard_name(s, job.num_shards)):
      groups.setdefault(row["cluster"], []).append(row["gid"])
  return sorted(sorted(g) for g in groups.values())


def near_duplicates(texts: Sequence[str], workdir: str | pathlib.Path, engine: Any, *,
                    num_shards: int = 3, num_partitions: int = 2, threshold: float = 0.8,
                    **kwargs: Any) -> list[list[int]]:
  """`dedup.near_duplicates` run over `num_shards` shards of `texts` (contiguous blocks), with
  the clusters mapped back to indices of `texts`: for tests and small inputs."""
  workdir = pathlib.Path(workdir)
  bounds = np.linspace(0, len(texts), num_shards + 1).astype(int)
  index_of = {}
  for s in range(num_shards):
    rows = [{"id": str(n), "text": texts[n]} for n in range(bounds[s], bounds[s + 1])]
    for k, n in enumerate(range(bounds[s], bounds[s + 1])):
      index_of[gid(s, k)] = n
    shards.write_records(shards.shard_path(workdir / "in", s, num_shards), rows)
  job = DedupJob(str(workdir / "in"), str(workdir / "out"), str(workdir / "work"), num_shards,
                 num_partitions, dedup_lib.DedupConfig(threshold=threshold, **kwargs))
  run(job, engine, workdir / "_tasks")
  return [[index_of[g] for g in c] for c in read_clusters(job)]
