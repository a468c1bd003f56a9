"""Scaling laws: fit Chinchilla's L(N, D) = E + A / N^alpha + B / D^beta to a sweep's losses.

    law = fit(params, tokens, losses)            # arrays [runs]
    law.predict(n, d); law.as_dict()             # {'E', 'A', 'B', 'alpha', 'beta', ...}
    laws = bootstrap(params, tokens, losses, samples=200, seed=0)   # refits on resampled runs
    n_opt, d_opt = law.optimal_allocation(compute)                   # C = 6 N D

The fit follows Hoffmann et al. (arXiv 2203.15556, appendix D.2): minimise the Huber loss
(delta 1e-3) between log L and log of the law, written as LSE(a - alpha log N, b - beta log D, e)
with A = exp(a), B = exp(b), E = exp(e), by L-BFGS, keeping the best of several starts. The
starts come from a grid over (alpha, beta), at each of which the law is linear in (E, A, B)
(non-negative least squares): cheaper than Chinchilla's grid over all five and as thorough.
With few runs the five parameters trade off (E against the exponents): `bootstrap` says how
much, and a prediction outside the fitted range is only as good as that spread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Sequence

import numpy as np

HUBER_DELTA = 1e-3


@dataclasses.dataclass(frozen=True)
class Law:
  """L(N, D) = E + A / N^alpha + B / D^beta; `objective` is the fit's summed Huber loss."""
  E: float
  A: float
  B: float
  alpha: float
  beta: float
  objective: float = float("nan")
  n_runs: int = 0

  def predict(self, params: Any, tokens: Any) -> np.ndarray:
    """The law at N = `params`, D = `tokens` (arrays broadcast)."""
    n, d = np.asarray(params, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
    return self.E + self.A / n ** self.alpha + self.B / d ** self.beta

  def optimal_allocation(self, compute: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, D_opt) minimising the law at fixed C = 6 N D (Chinchilla eq. 4):
    N_opt = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta))."""
    c = np.asarray(compute, dtype=np.float64) / 6.0
    g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
    n = g * c ** (self.beta / (self.alpha + self.beta))
    return n, c / n

  def frontier(self, compute: Any) -> np.ndarray:
    """The least loss the law reaches at compute C (at the optimal allocation)."""
    n, d = self.optimal_allocation(compute)
    return self.predict(n, d)

  def as_dict(self) -> dict[str, float]:
    return {k: int(v) if k == "n_runs" else float(v) for k, v in dataclasses.asdict(self).items()}


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
  """Huber loss of residuals r and its derivative."""
  small = np.abs(r) <= delta
  loss = np.where(small, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
  grad = np.where(small, r, delta * np.sign(r))
  return loss, grad


def _objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
               delta: float) -> tuple[float, np.ndarray]:
  """Summed Huber loss of log L - LSE(a - alpha log N, b - beta log D, e), with its gradient
  over theta = (a, b, e, alpha, beta)."""
  a, b, e, alpha, beta = theta
  terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])  # [3, runs]
  top = terms.max(axis=0)
  weights = np.exp(terms - top)
  total = weights.sum(axis=0)
  lse = top + np.log(total)
  softmax = weights / total  # d lse / d term
  loss, dloss = _huber(lse - log_l, delta)
  grad = np.array([np.sum(dloss * softmax[0]), np.sum(dloss * softmax[1]),
                   np.sum(dloss * softmax[2]), np.sum(dloss * softmax[0] * -log_n),
                   np.sum(dloss * softmax[1] * -log_d)])
  return float(loss.sum()), grad


def _check(params: Sequence[float], tokens: Sequence[float], losses: Sequence[float]):
  n, d, l = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (params, tokens, losses))
  if not n.size == d.size == l.size:
    raise ValueError(f"params, tokens and losses must have one entry per run, got {n.size}, "
                     f"{d.size}, {l.size}")
  if n.size < 5:
    raise ValueError(f"a law with 5 parameters needs at least 5 points (runs, or evaluations), "
                     f"got {n.size}")
  if np.any(n <= 0) or np.any(d <= 0) or np.any(~np.isfinite(l)) or np.any(l <= 0):
    raise ValueError("params and tokens must be > 0 and losses finite and > 0")
  if np.unique(n).size < 2 or np.unique(d).size < 2:
    raise ValueError("the runs must span at least two sizes and two token budgets")
  return n, d, l


def _theta(law: Law) -> tuple[float, ...]:
  return (math.log(law.A), math.log(law.B), math.log(law.E), law.alpha, law.beta)


def _grid_starts(n: np.ndarray, d: np.ndarray, l: np.ndarray, keep: int = 2,
                 exponents: np.ndarray = np.linspace(0.05, 2.0, 27)) -> list[tuple[float, ...]]:
  """Starting points: for each (alpha, beta) on a grid the law is linear in (E, A, B), solved by
  non-negative least squares; the `keep` best by squared error of log L."""
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  scored = []
  for alpha in exponents:
    x_n = n ** -alpha
    for beta in exponents:
      x = np.stack([np.ones_like(n), x_n, d ** -beta], axis=1)  # [runs, 3]
      coef, _ = optimize.nnls(x, l)
      coef = np.maximum(coef, 1e-8)
      err = float(np.sum((np.log(x @ coef) - np.log(l)) ** 2))
      scored.append((err, (math.log(coef[1]), math.log(coef[2]), math.log(coef[0]),
                           float(alpha), float(beta))))
  scored.sort(key=lambda t: t[0])
  return [theta for _, theta in scored[:keep]]


def _one_thread():
  """BLAS on one thread: L-BFGS on 5 parameters is 4x slower with threads on a busy machine."""
  try:
    from threadpoolctl import threadpool_limits  # pylint: disable=g-import-not-at-top
  except ImportError:
    return contextlib.nullcontext()
  return threadpool_limits(limits=1)


def _minimise(objective, starts, bounds):
  """The best L-BFGS-B result over the starting points."""
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  best = None
  for theta in starts:
    theta = np.clip(theta, [b[0] for b in bounds], [b[1] for b in bounds])
    result = optimize.minimize(objective, theta, jac=True, method="L-BFGS-B", bounds=bounds,
                               options={"ftol": 1e-13, "gtol": 1e-9, "maxiter": 2000})
    if best is None or result.fun < best.fun:
      best = result
  return best


def fit(params: Sequence[float], tokens: Sequence[float], losses: Sequence[float], *,
        delta: float = HUBER_DELTA, start: Law | None = None) -> Law:
  """The law fit to runs (N, D, loss); arrays [runs]. See the module doc. `start`: a law to
  start from as well (bootstrap refits start at the full fit)."""
  n, d, l = _check(params, tokens, losses)
  log_n, log_d, log_l = np.log(n), np.log(d), np.log(l)
  e_max = math.log(l.min())  # E is below every measured loss
  starts = [] if start is None else [_theta(start)]
  starts += _grid_starts(n, d, l)
  bounds = [(-20, 60), (-20, 60), (-20, e_max + 1e-9), (0.01, 3.0), (0.01, 3.0)]
  scale = 1.0 / (delta * delta)  # residuals are ~delta: an objective of order 1 for L-BFGS

  def scaled(theta):
    value, grad = _objective(theta, log_n, log_d, log_l, delta)
    return value * scale, grad * scale

  with _one_thread():
    best = _minimise(scaled, starts, bounds)
  a, b, e, alpha, beta = best.x
  return Law(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=float(alpha), beta=float(beta),
             objective=float(best.fun) / scale, n_runs=int(n.size))


def bootstrap(params: Sequence[float], tokens: Sequence[float], losses: Sequence[float], *,
              samples: int = 200, seed: int = 0) -> list[Law]:
  """Laws refit on `samples` resamplings of the runs (with replacement); a resample that spans
  fewer than two sizes or budgets is drawn again."""
  n, d, l = _check(params, tokens, losses)
  rng = np.random.default_rng(seed)
  full = fit(n, d, l)
  laws = []
  while len(laws) < samples:
    idx = rng.integers(0, n.size, n.size)
    if np.unique(n[idx]).size < 2 or np.unique(d[idx]).size < 2:
      continue
    laws.append(fit(n[idx], d[idx], l[idx], start=full))
  return laws


def interval(values: Sequence[float], level: float = 0.9) -> tuple[float, float]:
  """The central `level` percentile interval of bootstrap values."""
  lo, hi = np.percentile(np.asarray(values, dtype=np.float64),
                         [50 * (1 - level), 50 * (1 + level)])
  return float(lo), float(hi)
