"""phi-1.5's three training mixtures at CPU scale: synthetic, synthetic + web, web only.

phi-1.5 (arXiv 2309.05463, section 2) trains the same model on: `phi-1.5`: 20% phi-1's data (code)
+ 80% new synthetic "textbook" data; `phi-1.5-web`: 40% filtered web + 20% code + 40% synthetic;
`phi-1.5-web-only`: 80% filtered web + 20% code (no synthetic). Offline stand-ins here:

  synthetic  word problems of the TRAIN templates with worked Python solutions
             (`evals.word_problems`) and procedural textbook sections with worked examples
             (`curation.mixture`: train-split exercises only, verified in the sandbox)
  code       phi-1's filtered code: this Python's standard library files that parse, ranked
             by `quality.heuristic_score` (the offline STAND-IN for phi-1's GPT-4 labels), the
             top half kept
  web        "filtered web": prose that is not web text but the nearest offline thing, Debian's
             python3.11-doc reST sources (/usr/share/doc/python3.11-doc/html/_sources), cut at
             blank lines into pieces, ranked by `prose_score` (a STAND-IN prose filter: share of
             lines that are sentences, not markup/tables/code), the top `web_keep` kept; 10% of
             the FILES are held out whole, for the held-out prose perplexity

    summary = build(out_dir, arm_bytes=4_000_000, seed=0)
    # out_dir/<arm>/records.jsonl (the `filtered_corpus` builder's input),
    # out_dir/heldout_web.jsonl, out_dir/summary.json (bytes per source per arm)

Arms draw from each source in one shuffled order, so the synthetic part of `phi-1.5-web` is a
prefix of `phi-1.5`'s; every arm has `arm_bytes` bytes (as close as whole documents allow).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import random
import re
import sys
from typing import Any, Optional

from phi_jax.curation import quality
from phi_jax.curation.stages import write_json

ARMS = {  # share of each arm's bytes by source (the paper's token shares)
    "phi-1.5": {"synthetic": 0.8, "code": 0.2},
    "phi-1.5-web": {"synthetic": 0.4, "web": 0.4, "code": 0.2},
    "phi-1.5-web-only": {"web": 0.8, "code": 0.2},
}
WEB_DIR = pathlib.Path("/usr/share/doc/python3.11-doc/html/_sources")
_MARKUP = re.compile(r"^\s*(\.\. |:[a-z]+:|[=\-~^*#+`]{3,}\s*$|\+[-=+]+\+|\|)")


def prose_score(text: str) -> float:
  """STAND-IN prose quality in [0, 1]: the share of non-blank lines that read as sentences (start
  with a letter, are not reST markup, directives, tables or indented code), times a length term
  that favours pieces of 300+ characters. Not a trained filter: says nothing about truth."""
  lines = [line for line in text.splitlines() if line.strip()]
  if not lines:
    return 0.0
  prose = sum(1 for line in lines if not _MARKUP.match(line) and not line.startswith("   ")
              and line.strip()[0].isalpha() and len(line.split()) >= 4)
  return prose / len(lines) * min(1.0, len(text) / 300)


def _held_out(relpath: str, fraction: float = 0.1) -> bool:
  digest = hashlib.sha256(f"phi15-web:{relpath}".encode()).digest()
  return int.from_bytes(digest[:8], "big") / 2 ** 64 < fraction


def _pieces(text: str, max_chars: int = 3000) -> list[str]:
  """Consecutive paragraphs up to `max_chars` (a longer paragraph stays whole)."""
  out, current = [], ""
  for para in text.split("\n\n"):
    if current and len(current) + len(para) + 2 > max_chars:
      out.append(current)
      current = ""
    current = f"{current}\n\n{para}" if current else para
  if current.strip():
    out.append(current)
  return out


def web_documents(web_dir: pathlib.Path = WEB_DIR, keep: float = 0.6
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
  """(train, held_out) web pieces: held-out files whole-file apart; train pieces filtered."""
  files = sorted(web_dir.rglob("*.rst.txt"))
  if not files:
    raise ValueError(f"no .rst.txt files under {web_dir}: install Debian's python3.11-doc "
                     "(apt-get install python3.11-doc) or pass web_dir")
  train, held = [], []
  for path in files:
    rel = str(path.relative_to(web_dir))
    for k, piece in enumerate(_pieces(path.read_text(encoding="utf-8", errors="replace"))):
      record = {"id": f"web:{rel}:{k}", "text": piece, "source": "web",
                "score": prose_score(piece)}
      (held if _held_out(rel) else train).append(record)
  train.sort(key=lambda r: -r["score"])
  train = train[:int(len(train) * keep)]
  held = [r for r in held if r["score"] > 0.5]  # held-out prose: pieces that are mostly prose
  return train, held


def code_documents(max_files: int = 0, keep: float = 0.5,
                   max_chars: int = 20_000) -> list[dict[str, Any]]:
  """The standard library's .py files that parse, the top `keep` by heuristic_score."""
  root = pathlib.Path(sys.modules["json"].__file__).resolve().parents[1]
  files = sorted(p for p in root.glob("*.py"))
  files += sorted(p for p in root.glob("*/*.py") if "test" not in p.parts[-2])
  if max_files:
    files = files[:max_files]
  records = []
  for path in files:
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip() or len(text) > max_chars:
      continue
    score = quality.heuristic_score(text)
    if score > 0:
      records.append({"id": f"code:{path.relative_to(root)}", "text": text, "source": "code",
                      "score": score})
  records.sort(key=lambda r: -r["score"])
  return records[:max(1, int(len(records) * keep))]


def synthetic_documents(n_word_problems: int, n_textbooks: int, seed: int = 0
                        ) -> list[dict[str, Any]]:
  """Worked word problems (train templates) and verified textbook sections."""
  from phi_jax.curation import mixture  # pylint: disable=g-import-not-at-top
  from phi_jax.evals import word_problems  # pylint: disable=g-import-not-at-top
  records = [{"id": f"wp:{p.id}", "text": p.text, "source": "synthetic", "kind": "word_problem"}
             for p in word_problems.make(n_word_problems, split="train", seed=seed)]
  if n_textbooks:
    sections, _ = mixture.make(0, n_textbooks, 0, seed=seed)
    by_section: dict[str, list[str]] = {}
    for r in sections:
      by_section.setdefault(r["split_key"], []).append(r["text"])
    records += [{"id": f"textbook:{key}", "text": "\n\n".join(parts), "source": "synthetic",
                 "kind": "textbook"} for key, parts in sorted(by_section.items())]
  return records


def _take(records: list[dict[str, Any]], budget: int, source: str) -> list[dict[str, Any]]:
  out, used = [], 0
  for r in records:
    if used >= budget:
      break
    out.append(r)
    used += len(r["text"].encode("utf-8"))
  if used < budget:
    more = {"synthetic": "raise n_word_problems / n_textbooks", "code": "raise code_max_files "
            "(0 = all)", "web": "point web_dir at more prose"}[source]
    raise ValueError(f"the {source} source has {used:,} bytes, an arm needs {budget:,} of it: "
                     f"{more}, or lower arm_bytes")
  return out


def build(out_dir: str | pathlib.Path, *, arm_bytes: int = 4_000_000, n_word_problems: int = 7000,
          n_textbooks: int = 700, seed: int = 0, web_dir: Optional[pathlib.Path] = None,
          code_max_files: int = 0) -> dict[str, Any]:
  """Writes out_dir/<arm>/records.jsonl for every arm, out_dir/heldout_web.jsonl and
  out_dir/summary.json; returns the summary. Skips the work when summary.json has these
  settings."""
  out = pathlib.Path(out_dir)
  settings = {"arm_bytes": arm_bytes, "n_word_problems": n_word_problems,
              "n_textbooks": n_textbooks, "seed": seed, "code_max_files": code_max_files,
              "web_dir": str(web_dir or WEB_DIR)}
  summary_path = out / "summary.json"
  if summary_path.exists():
    summary = json.loads(summary_path.read_text())
    if summary.get("settings") == settings:
      return summary
  web, held = web_documents(web_dir or WEB_DIR)
  sources = {"web": web, "code": code_documents(code_max_files),
             "synthetic": synthetic_documents(n_word_problems, n_textbooks, seed)}
  rng = random.Random(f"phi15:{seed}")
  for records in sources.values():
    rng.shuffle(records)
  summary: dict[str, Any] = {"settings": settings, "arms": {},
                             "available_bytes": {k: sum(len(r["text"].encode()) for r in v)
                                                 for k, v in sources.items()}}
  for arm, shares in ARMS.items():
    records = []
    for source, share in shares.items():
      records += _take(sources[source], int(arm_bytes * share), source)
    rng.shuffle(records)
    (out / arm).mkdir(parents=True, exist_ok=True)
    quality.write_jsonl(out / arm / "records.jsonl", records)
    summary["arms"][arm] = {s: sum(len(r["text"].encode()) for r in records if r["source"] == s)
                            for s in shares}
  quality.write_jsonl(out / "heldout_web.jsonl", held)
  summary["heldout_web"] = {"documents": len(held),
                            "bytes": sum(len(r["text"].encode()) for r in held)}
  write_json(summary_path, summary)
  return summary
