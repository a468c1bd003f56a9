"""Data steps of the phi-1 ablation (run.sh) that `python -m phi_jax.curation` does not cover.

    python experiments/phi1/prepare_data.py export --data_dir=TFDS --validation_fraction=0.05 \\
        --out=ROOT/data/stdlib_train
        code_corpus's TRAIN split (the unfiltered arm's training files) -> OUT/records.jsonl, the
        source of the filter pipeline: its validation split stays held out from every arm.
    python experiments/phi1/prepare_data.py textbooks --filtered=ROOT/data/filtered/dataset \\
        --fraction=0.2 --out=ROOT/data/textbooks
        procedural textbooks (phi_jax.curation.procedural_textbook: a STAND-IN for GPT-3.5's, not
        LLM text) through phi_jax.curation.synthetic.generate_textbooks, as many as make `fraction`
        of the mixture's bytes: n = ceil(filtered bytes x fraction / (1 - fraction) / mean
        textbook bytes), the mean measured on the first 32 prompts.
    python experiments/phi1/prepare_data.py mix --filtered=... --textbooks=... --out=ROOT/data/code_textbook
        filtered code + textbooks -> OUT/records.jsonl (ids prefixed 'code:' / 'textbook:'),
        read by the `filtered_corpus` builder; OUT/mix.json has the counts.

Every output is written to a temp file and renamed into place.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import sys
from typing import Any, Iterable

from phi_jax.data import builders
from phi_jax.curation import procedural_textbook, synthetic
from phi_jax.data.builders.synthetic import read_records

TEXTBOOK_SEED = 0


def _write_jsonl(path: pathlib.Path, rows: Iterable[dict[str, Any]]) -> int:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  n = 0
  with tmp.open("w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, ensure_ascii=False) + "\n")
      n += 1
  os.replace(tmp, path)
  return n


def _write_json(path: pathlib.Path, value: Any) -> None:
  tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
  tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
  os.replace(tmp, path)


def _bytes(records: Iterable[dict[str, Any]]) -> int:
  return sum(len(r["text"].encode("utf-8")) for r in records)


def export(data_dir: str, validation_fraction: float, out: pathlib.Path) -> dict[str, Any]:
  builder = builders.build("code_corpus", data_dir, validation_fraction=validation_fraction)
  source = builder.as_data_source("train")
  rows = []
  for i in range(len(source)):
    path = source[i]["path"].decode("utf-8")
    rows.append({"id": path, "text": source[i]["text"].decode("utf-8"), "path": path})
  rows.sort(key=lambda r: r["id"])
  n = _write_jsonl(out / "records.jsonl", rows)
  info = {"documents": n, "bytes": _bytes(rows), "validation_fraction": validation_fraction,
          "held_out_documents": len(builder.as_data_source("validation"))}
  print(f"exported {n} training files ({info['bytes'] / 1e6:.2f} MB) to {out}")
  return info


def textbooks(filtered: pathlib.Path, fraction: float, out: pathlib.Path) -> dict[str, Any]:
  if not 0 < fraction < 1:
    raise ValueError(f"--fraction must be in (0, 1), got {fraction}")
  code_bytes = _bytes(read_records(filtered))
  target = code_bytes * fraction / (1 - fraction)
  probe = synthetic.textbook_prompts(32, TEXTBOOK_SEED)
  teacher = procedural_textbook.ProceduralTextbookTeacher(seed=TEXTBOOK_SEED)
  answers = teacher.complete([p.prompt for p in probe], max_tokens=1500, temperature=0.0)
  mean = sum(len(a.encode("utf-8")) for a in answers) / len(answers)
  n = max(2, math.ceil(target / mean))
  stats = synthetic.generate_textbooks(teacher, n, TEXTBOOK_SEED, out, build=False)
  print(f"{stats.kept} procedural textbooks kept of {n} ({stats.rejected or 'none rejected'}) "
        f"for {target / 1e6:.2f} MB next to {code_bytes / 1e6:.2f} MB of filtered code")
  return stats.to_dict()


def mix(filtered: pathlib.Path, textbook_dir: pathlib.Path, out: pathlib.Path) -> dict[str, Any]:
  code = read_records(filtered)
  books = read_records(textbook_dir)
  rows = [dict(r, id=f"code:{r['id']}", source="filtered_code") for r in code]
  rows += [dict(r, id=f"textbook:{r['id']}", source="procedural_textbook") for r in books]
  _write_jsonl(out / "records.jsonl", rows)
  info = {"code_documents": len(code), "code_bytes": _bytes(code),
          "textbook_documents": len(books), "textbook_bytes": _bytes(books)}
  info["textbook_byte_fraction"] = info["textbook_bytes"] / (info["code_bytes"] +
                                                             info["textbook_bytes"])
  _write_json(out / "mix.json", info)
  print(f"mixture: {json.dumps(info)}")
  return info


def main(argv: list[str]) -> None:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  p = sub.add_parser("export")
  p.add_argument("--data_dir", required=True)
  p.add_argument("--validation_fraction", type=float, required=True)
  p.add_argument("--out", type=pathlib.Path, required=True)
  p = sub.add_parser("textbooks")
  p.add_argument("--filtered", type=pathlib.Path, required=True)
  p.add_argument("--fraction", type=float, required=True)
  p.add_argument("--out", type=pathlib.Path, required=True)
  p = sub.add_parser("mix")
  p.add_argument("--filtered", type=pathlib.Path, required=True)
  p.add_argument("--textbooks", type=pathlib.Path, required=True)
  p.add_argument("--out", type=pathlib.Path, required=True)
  args = parser.parse_args(argv)
  if args.command == "export":
    export(args.data_dir, args.validation_fraction, args.out)
  elif args.command == "textbooks":
    textbooks(args.filtered, args.fraction, args.out)
  else:
    mix(args.filtered, args.textbooks, args.out)


if __name__ == "__main__":
  main(sys.argv[1:])
