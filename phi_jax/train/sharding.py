"""One table maps the model's logical axis names onto the mesh axes ('data', 'fsdp', 'tensor').

Parameters: the embedding dimension is FSDP-sharded, heads / MLP / vocab are tensor-parallel.
Activations: the batch is split over data and fsdp; heads, MLP and vocab over tensor.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import NamedSharding, PartitionSpec as P

LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
    # parameters
    ("layers", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    # activations
    ("activation_batch", ("data", "fsdp")),
    ("activation_length", None),
    ("activation_embed", None),
    ("activation_heads", "tensor"),
    ("activation_kv_heads", "tensor"),
    ("activation_mlp", "tensor"),
    ("activation_vocab", "tensor"),
)

BATCH_SPEC = P(("data", "fsdp"))


def logical_shardings(boxed_tree: Any, mesh: jax.sharding.Mesh) -> Any:
  """NamedShardings for a tree of nn.Partitioned (and plain) leaves, e.g. from `jax.eval_shape`.

  Plain leaves are replicated. A dimension that its mesh axes do not divide (an odd vocabulary
  over 'tensor', say) is replicated instead of failing, with a warning naming it.
  """
  mesh_specs = nn.logical_to_mesh(nn.get_partition_spec(boxed_tree), LOGICAL_RULES)
  shapes = nn.unbox(boxed_tree)

  def fit(spec: P, leaf: Any) -> NamedSharding:
    dims = list(spec) + [None] * (len(leaf.shape) - len(spec))
    for i, axes in enumerate(dims):
      names = (axes,) if isinstance(axes, str) else tuple(axes or ())
      size = math.prod(mesh.shape[a] for a in names)
      if names and leaf.shape[i] % size:
        logging.warning("dimension %d of a %s array is not divisible by mesh axes %s (%d): "
                        "replicated along it", i, leaf.shape, names, size)
        dims[i] = None
    return NamedSharding(mesh, P(*dims))

  return jax.tree.map(fit, mesh_specs, shapes, is_leaf=lambda x: isinstance(x, P))


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
  """Leading (batch) axis over data x fsdp, the rest replicated."""
  return NamedSharding(mesh, BATCH_SPEC)


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())
