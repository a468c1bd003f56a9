"""The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on
Code", eq. 1): with n samples of which c are correct,

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n - c + 1}^{n} (1 - k / i)

The product form avoids the huge binomials. A benchmark's pass@k is the mean over its problems.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
  """Probability that at least one of k samples drawn without replacement from n (c correct) is
  correct."""
  if not 0 <= c <= n or k < 1:
    raise ValueError(f"need 0 <= c <= n and k >= 1, got n={n}, c={c}, k={k}")
  if k > n:
    raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
  if n - c < k:
    return 1.0
  return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(counts: Sequence[tuple[int, int]], ks: Iterable[int]) -> dict[str, float]:
  """{'pass@k': mean over problems} for each k that every problem has enough samples for.

  counts: (n, c) per problem.
  """
  if not counts:
    return {}
  fewest = min(n for n, _ in counts)
  return {f"pass@{k}": float(np.mean([pass_at_k(n, c, k) for n, c in counts]))
          for k in sorted(set(ks)) if k <= fewest}
