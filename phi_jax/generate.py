"""Generate text from any model folder: a training workdir, a converted phi_jax checkpoint or a
Hugging Face folder (told apart by their contents; see phi_jax/convert/load.py).

    python -m phi_jax.generate --model=workdirs/quickstart --prompt='def fib(n):'
    python -m phi_jax.generate --model=/models/phi-2 --prompt='def fib(n):' --max_new_tokens=64
    python -m phi_jax.generate --model=/ckpt/phi-2 --tokenizer=/models/phi-2 --prompt=... \
        --temperature=0.8 --top_p=0.95 --seed=1

The tokenizer is the folder's own (a workdir's tokenizer/sp.model, a folder's tokenizer.model /
tokenizer.json) unless --tokenizer names a file or folder. --step picks a workdir's checkpoint
(default: the newest). --hf_dir, --ckpt_dir and --workdir are older names of --model. Several
--prompt flags decode as one batch.

Chat models (phi-3, phi-3.5, phi-4-mini): --chat renders each --prompt as a user message (after
--system=TEXT if given) with the chat template and the assistant header, stops at any of the
model's end ids (generation_config.json / config.json eos_token_id, the tokenizer's EOS, the
template's '<|end|>') and prints the assistant's reply. The template is the model folder's (or the
--tokenizer folder's) chat_template, or a built-in one: --chat_template=phi-3 / phi-4-mini.

    python -m phi_jax.generate --model=/models/phi-3-mini --chat --prompt='Write fib in Python'

SkipDecode: --skip=MAX,MIN,WARMUP,DECAY_LEN (a SkipSchedule's layers), or --skip_speedup=S with
--skip_warmup and --skip_decay_len (SkipSchedule.for_speedup). Best with a model fine-tuned with
the same schedule (configs/skipdecode.py); --stats prints the layers run per token.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Optional, Sequence

import jax

from phi_jax import chat
from phi_jax.convert import load
from phi_jax.decoding import generate
from phi_jax.decoding.skipdecode import SkipSchedule


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m phi_jax.generate", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--model", help="a training workdir, phi_jax checkpoint or HF folder")
  for alias in ("--hf_dir", "--ckpt_dir", "--workdir"):
    source.add_argument(alias, dest="model", help="same as --model (older name)")
  parser.add_argument("--step", type=int, default=None,
                      help="a workdir's checkpoint step (default: the newest)")
  parser.add_argument("--tokenizer", help="tokenizer file or folder (default: the model's own)")
  parser.add_argument("--prompt", action="append", required=True, help="repeat for a batch")
  parser.add_argument("--max_new_tokens", type=int, default=64)
  parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
  parser.add_argument("--top_k", type=int, default=None)
  parser.add_argument("--top_p", type=float, default=None)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--add_bos", action="store_true", help="prepend BOS (SentencePiece only)")
  parser.add_argument("--no_eos", action="store_true", help="do not stop at the EOS token")
  parser.add_argument("--chat", action="store_true",
                      help="each --prompt is a user message; print the assistant's reply")
  parser.add_argument("--system", default=None, help="--chat: a system message before it")
  parser.add_argument("--chat_template", default=None,
                      help="--chat: a built-in template (phi-3, phi-4-mini), a folder or a .jinja "
                           "file (default: the model's or tokenizer folder's own)")
  parser.add_argument("--skip", default=None, help="SkipDecode: MAX,MIN,WARMUP,DECAY_LEN layers")
  parser.add_argument("--skip_speedup", type=float, default=None,
                      help="SkipDecode: the schedule with this nominal speedup")
  parser.add_argument("--skip_warmup", type=int, default=1)
  parser.add_argument("--skip_decay_len", type=int, default=None,
                      help="default: --max_new_tokens")
  parser.add_argument("--stats", action="store_true", help="print the layers run per token")
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                      help="compute dtype")
  return parser.parse_args(argv)


def _schedule(args: argparse.Namespace, num_layers: int) -> Optional[SkipSchedule]:
  if args.skip and args.skip_speedup:
    raise ValueError("give --skip or --skip_speedup, not both")
  decay_len = args.skip_decay_len or args.max_new_tokens
  if args.skip_speedup:
    return SkipSchedule.for_speedup(num_layers, args.skip_speedup, args.skip_warmup, decay_len)
  if args.skip:
    parts = args.skip.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
      raise ValueError(f"--skip={args.skip!r}: expected four integers MAX,MIN,WARMUP,DECAY_LEN")
    mx, mn, w, d = (int(p) for p in parts)
    return SkipSchedule(num_layers, mx, mn, w, d)
  return None


def _chat_inputs(args: argparse.Namespace, tok, cfg_eos: Optional[int]):
  """--chat: (template, end ids or None (--no_eos), prompt ids per --prompt)."""
  folders = [args.model]
  if args.tokenizer:
    tok_path = pathlib.Path(args.tokenizer)
    folders.append(str(tok_path if tok_path.is_dir() else tok_path.parent))
  template = args.chat_template
  if template is None:
    template = next((f for f in folders if _has_template(f)), args.model)
  template = chat.load_template(template)  # ValueError naming the built-ins if there is none
  eos = None
  if not args.no_eos:
    eos = list(dict.fromkeys(i for f in folders for i in chat.end_ids(f, tok, template)))
    eos = eos or ([cfg_eos] if cfg_eos is not None else None)
  head = [{"role": "system", "content": args.system}] if args.system is not None else []
  prompts = [chat.encode_prompt(head + [{"role": "user", "content": p}], template, tok)
             for p in args.prompt]
  return template, eos, prompts


def _has_template(folder: str) -> bool:
  try:
    chat.load_template(folder)
    return True
  except ValueError:
    return False


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  try:
    model = load.load_model(args.model, tokenizer=args.tokenizer, step=args.step,
                            add_bos=args.add_bos, require_tokenizer=True)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  cfg, params, tok = model.cfg.replace(dtype=args.dtype), model.params, model.tokenizer
  print(f"[{model.format} {model.path}" + (f" step {model.step}" if model.step is not None else "")
        + f"; tokenizer {model.tokenizer_source}]", file=sys.stderr)
  try:
    skip = _schedule(args, cfg.num_layers)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  eos = None if args.no_eos else (tok.eos_id if tok.eos_id is not None else cfg.eos_id)
  if args.chat:
    try:
      template, eos, prompts = _chat_inputs(args, tok, cfg.eos_id)
    except ValueError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    print(f"[chat template {template.name}; end ids {eos}]", file=sys.stderr)
  else:
    prompts = [tok.encode(p) for p in args.prompt]
  start = time.perf_counter()
  try:
    outs = generate(cfg, params, prompts, max_new_tokens=args.max_new_tokens,
                    temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                    eos_id=eos, rng=jax.random.key(args.seed), skip=skip,
                    return_stats=args.stats)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  seconds = time.perf_counter() - start
  if args.stats:
    outs, stats = outs
    print(f"[layers per token: {stats['layers_per_token']}; mean {stats['mean_layers']:.2f} of "
          f"{cfg.num_layers}]", file=sys.stderr)
  for ids, out in zip(prompts, outs):
    if args.chat:  # the reply alone, without the end id that stopped it
      print(tok.decode(out[:-1] if eos and out and out[-1] in eos else out))
    else:
      print(tok.decode(ids + out))
    print("-" * 40)
  n = sum(len(o) for o in outs)
  print(f"[{n} tokens in {seconds:.2f}s including compilation]", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
