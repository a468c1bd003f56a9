"""One loader for every model folder phi_jax reads: what `generate`, `eval`, fine-tuning's
`init_from`, the local teacher and the data stages all call.

    m = load.load_model('workdirs/quickstart')                 # format detected from the folder
    m = load.load_model('/models/phi-2', tokenizer='/models/phi-2/tokenizer.json')
    logits = Transformer(m.cfg).apply({'params': m.params}, tokens)
    m.format, m.step, m.tokenizer, m.meta()                   # 'workdir' 6 <SentencePiece...> {...}

The three formats, told apart by the folder's contents (FORMATS):

  workdir      a training run of `python -m phi_jax.main`: model_config.json + checkpoints/<step>/
               (orbax; only state.params is read). Newest step by default, or `step=`. Its
               tokenizer: tokenizer/sp.model, else the run's config.json data.tokenizer, else
               the tokenizer of the run's own init_from.
  checkpoint   a converted phi_jax checkpoint (`python -m phi_jax.convert.hf`,
               `checkpoint_io.save_model`): config.json (a ModelConfig) + params/ (orbax).
  hf           a Hugging Face phi / phi3 folder: config.json + model.safetensors (or shards with
               model.safetensors.index.json); read by `phi_jax.convert.hf.load`.

A checkpoint or HF folder's tokenizer is its tokenizer.model / tokenizer.json, if any. `tokenizer=`
(a file, a folder or a loaded tokenizer) overrides every one of these. Params come back as host
numpy arrays, cast to `param_dtype` (default float32; None keeps the stored dtype).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
from typing import Any, Optional

import numpy as np

from phi_jax.convert import checkpoint_io
from phi_jax.data import tokenizer as tokenizers
from phi_jax.models.config import DTYPES, ModelConfig

FORMATS = ("workdir", "checkpoint", "hf")
WORKDIR_CONFIG = "model_config.json"  # the ModelConfig a training run writes
WORKDIR_CHECKPOINTS = "checkpoints"
WORKDIR_TOKENIZER = ("tokenizer", "sp.model")
RUN_CONFIG = "config.json"  # the run's ml_collections config, as JSON
_HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
_TOKENIZER_FILES = ("tokenizer.model", "tokenizer.json")

FORMAT_HELP = (
    "a training workdir (model_config.json + checkpoints/, written by python -m phi_jax.main), "
    "a phi_jax checkpoint (config.json + params/, written by python -m phi_jax.convert.hf or "
    "checkpoint_io.save_model), or a Hugging Face folder (config.json + model.safetensors or "
    "model.safetensors.index.json)")


@dataclasses.dataclass
class LoadedModel:
  """A model read by `load_model`. params: nested dict of numpy arrays (Transformer(cfg)'s tree);
  step: the checkpoint step of a workdir (None for the other formats); run_config: a workdir's
  config.json as a dict ({} otherwise); tokenizer_source: where the tokenizer came from."""
  cfg: ModelConfig
  params: Any
  tokenizer: Optional[Any]
  format: str
  path: pathlib.Path
  step: Optional[int] = None
  run_config: dict[str, Any] = dataclasses.field(default_factory=dict)
  tokenizer_source: Optional[str] = None

  def meta(self) -> dict[str, Any]:
    """JSON-ready provenance: model path, format, step (workdir), tokenizer source."""
    out: dict[str, Any] = {"model": str(self.path), "format": self.format}
    if self.step is not None:
      out["step"] = self.step
    if self.tokenizer_source:
      out["tokenizer"] = self.tokenizer_source
    return out


def detect(path: str | os.PathLike) -> str:
  """'workdir', 'checkpoint' or 'hf' from the folder's contents; ValueError naming all three."""
  path = pathlib.Path(path)
  if not path.is_dir():
    what = "is a file, not a folder" if path.exists() else "does not exist"
    raise ValueError(f"model path {path} {what}; expected {FORMAT_HELP}")
  if (path / WORKDIR_CONFIG).is_file() and (path / WORKDIR_CHECKPOINTS).is_dir():
    return "workdir"
  if (path / "config.json").is_file() and (path / checkpoint_io.PARAMS_DIR).is_dir():
    return "checkpoint"
  if (path / "config.json").is_file() and any((path / f).is_file() for f in _HF_WEIGHTS):
    return "hf"
  hint = ""
  if path.name == WORKDIR_CHECKPOINTS or (path.parent.name == WORKDIR_CHECKPOINTS
                                          and path.name.isdigit()):
    hint = " (this looks like a run's checkpoints folder: pass the workdir, and step= for a step)"
  elif (path / WORKDIR_CONFIG).is_file():
    hint = f" ({WORKDIR_CONFIG} is here but not {WORKDIR_CHECKPOINTS}/: has the run saved yet?)"
  elif (path / "config.json").is_file():
    hint = (" (config.json is here but neither params/ nor model.safetensors: a HF folder saved "
            "as pytorch_model.bin must be re-saved with safetensors)")
  found = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
  shown = ", ".join(found[:12]) + (", ..." if len(found) > 12 else "") or "nothing"
  raise ValueError(f"{path} is not a model folder phi_jax can read{hint}. Expected {FORMAT_HELP}. "
                   f"Found: {shown}")


# ---- training workdirs ---------------------------------------------------------------------------

def workdir_steps(workdir: str | os.PathLike) -> list[int]:
  """The finalized checkpoint steps of a training workdir, ascending."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = pathlib.Path(workdir).absolute() / WORKDIR_CHECKPOINTS
  if not directory.is_dir():
    return []
  return sorted(ocp.utils.checkpoint_steps(directory))  # interrupted saves (*-tmp-*) excluded


def _restore_params(state_dir: pathlib.Path) -> Any:
  """state.params of one saved train state, as numpy arrays (the optimizer state is not read)."""
  import jax  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  absl_logger = logging.getLogger("absl")  # orbax warns that state/ has no step metadata file
  level = absl_logger.level
  absl_logger.setLevel(max(level, logging.ERROR))
  try:
    with ocp.PyTreeCheckpointer() as ckptr:
      meta = ckptr.metadata(state_dir)
      tree = getattr(getattr(meta, "item_metadata", None), "tree", None) or meta
      if "params" not in tree:
        raise ValueError(f"{state_dir} holds no params (keys: {sorted(tree)})")
      item = {"params": tree["params"]}
      args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
      out = ckptr.restore(state_dir, args=ocp.args.PyTreeRestore(
          item=item, restore_args=args, partial_restore=True))
  finally:
    absl_logger.setLevel(level)
  return out["params"]


def load_workdir_params(workdir: str | os.PathLike, step: Optional[int] = None
                        ) -> tuple[ModelConfig, Any, int]:
  """(cfg, params, step) of a training workdir: `step`, or the newest readable checkpoint (an
  unreadable newest one is reported with a warning and the previous one is used)."""
  workdir = pathlib.Path(workdir).absolute()
  cfg = checkpoint_io.config_from_json((workdir / WORKDIR_CONFIG).read_text())
  steps = workdir_steps(workdir)
  ckpts = workdir / WORKDIR_CHECKPOINTS
  if not steps:
    raise FileNotFoundError(f"no finished checkpoint in {ckpts}: the run has not saved one yet")
  if step is not None:
    if step not in steps:
      raise ValueError(f"{ckpts} has no checkpoint at step {step}; it has steps {steps}")
    return cfg, _restore_params(ckpts / str(step) / "state"), step
  errors = []
  for candidate in reversed(steps):
    try:
      return cfg, _restore_params(ckpts / str(candidate) / "state"), candidate
    except Exception as e:  # pylint: disable=broad-except
      errors.append(f"step {candidate}: {type(e).__name__}: {e}")
      logging.warning("checkpoint step %d in %s is unreadable (%s); trying the previous one",
                      candidate, ckpts, e)
  raise ValueError(f"no readable checkpoint in {ckpts}: {'; '.join(errors)}")


def read_run_config(workdir: str | os.PathLike) -> dict[str, Any]:
  """A training workdir's config.json as a dict ({} if it has none)."""
  path = pathlib.Path(workdir) / RUN_CONFIG
  return json.loads(path.read_text()) if path.is_file() else {}


def _find_tokenizer(folder: pathlib.Path, add_bos: bool) -> Optional[tuple[Any, str]]:
  for candidate in (folder.joinpath(*WORKDIR_TOKENIZER), folder / WORKDIR_TOKENIZER[-1],
                    *(folder / name for name in _TOKENIZER_FILES)):
    if candidate.is_file():
      return tokenizers.load(candidate, add_bos=add_bos), str(candidate)
  return None


def load_tokenizer(path: str | os.PathLike, *, add_bos: bool = False) -> tuple[Any, str]:
  """(tokenizer, the file it came from) from a tokenizer file or any folder that holds one: a
  model folder of any format, a workdir's tokenizer/ folder, a HF tokenizer folder."""
  path = pathlib.Path(path)
  if not path.is_dir():
    return tokenizers.load(path, add_bos=add_bos), str(path)
  found = _find_tokenizer(path, add_bos)
  if found is None and (path / WORKDIR_CONFIG).is_file():
    found = _workdir_tokenizer(path, read_run_config(path), add_bos)
  if found is None:
    raise FileNotFoundError(f"no tokenizer in {path}: expected tokenizer.model (SentencePiece), "
                            "tokenizer.json (HF), sp.model or tokenizer/sp.model (a training "
                            "workdir); pass the file itself")
  return found


def _workdir_tokenizer(workdir: pathlib.Path, run_config: dict[str, Any],
                       add_bos: bool) -> Optional[tuple[Any, str]]:
  own = workdir.joinpath(*WORKDIR_TOKENIZER)
  if own.is_file():
    return tokenizers.load(own, add_bos=add_bos), str(own)
  configured = (run_config.get("data") or {}).get("tokenizer")
  if configured:
    return tokenizers.load(configured, add_bos=add_bos), str(configured)
  init_from = run_config.get("init_from")
  if init_from and pathlib.Path(init_from).is_dir():
    return _find_tokenizer(pathlib.Path(init_from), add_bos)
  return None


# ---- the loader ----------------------------------------------------------------------------------

def _cast(cfg: ModelConfig, params: Any, param_dtype: Optional[str]) -> tuple[ModelConfig, Any]:
  import jax  # pylint: disable=g-import-not-at-top
  params = jax.tree.map(np.asarray, params)
  if param_dtype is None:
    return cfg, params
  if param_dtype not in DTYPES:
    raise ValueError(f"param_dtype {param_dtype!r} is not one of {DTYPES} (or None)")
  dtype = np.dtype(param_dtype)  # bfloat16 is registered by ml_dtypes (imported by jax)
  params = jax.tree.map(lambda x: x if x.dtype == dtype else x.astype(dtype), params)
  return cfg.replace(param_dtype=param_dtype), params


def load_model(path: str | os.PathLike, *, tokenizer: Any = None, step: Optional[int] = None,
               add_bos: bool = False, param_dtype: Optional[str] = "float32",
               require_tokenizer: bool = False) -> LoadedModel:
  """Reads a training workdir, a phi_jax checkpoint or a HF folder (see the module docstring).

  tokenizer: a file or folder to load, or a loaded tokenizer; None = the folder's own (or None if
    it has none, unless require_tokenizer). add_bos: SentencePiece tokenizers prepend BOS.
  step: a workdir's checkpoint step (None = newest); an error for the other formats.
  Raises ValueError / FileNotFoundError with what was wrong and what is expected.
  """
  path = pathlib.Path(path).absolute()
  fmt = detect(path)
  if step is not None and fmt != "workdir":
    raise ValueError(f"step={step} applies to a training workdir, but {path} is a {fmt} folder "
                     "(it holds one set of weights)")
  run_config: dict[str, Any] = {}
  found: Optional[tuple[Any, str]] = None
  if fmt == "workdir":
    cfg, params, step = load_workdir_params(path, step)
    run_config = read_run_config(path)
    if tokenizer is None:
      found = _workdir_tokenizer(path, run_config, add_bos)
  elif fmt == "checkpoint":
    cfg, params = checkpoint_io.load_model(path)
  else:
    from phi_jax.convert import hf  # pylint: disable=g-import-not-at-top
    cfg, params = hf.load(path, param_dtype=param_dtype)  # also sets cfg.dtype, as before
  if fmt != "workdir" and tokenizer is None:
    found = _find_tokenizer(path, add_bos)
  cfg, params = _cast(cfg, params, param_dtype)
  source = None
  if isinstance(tokenizer, (str, os.PathLike)):
    tokenizer, source = load_tokenizer(tokenizer, add_bos=add_bos)
  elif tokenizer is not None:
    source = str(getattr(tokenizer, "path", type(tokenizer).__name__))
  elif found is not None:
    tokenizer, source = found
  if tokenizer is None and require_tokenizer:
    raise ValueError(f"{path} ({fmt}) has no tokenizer (tokenizer/sp.model, tokenizer.model or "
                     "tokenizer.json); pass one with --tokenizer=FILE_OR_DIR")
  if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
    raise ValueError(f"the tokenizer ({source}) has {tokenizer.vocab_size} tokens but the model "
                     f"in {path} only {cfg.vocab_size}: wrong tokenizer?")
  return LoadedModel(cfg, params, tokenizer, fmt, path, step, run_config, source)
