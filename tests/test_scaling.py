"""phi_jax.scaling: the Chinchilla fit recovers a known law, its bootstrap covers it, and the
compute-optimal allocation is the minimum of the law along C = 6 N D."""

import numpy as np
import pytest

from phi_jax.study import scaling

TRUE = scaling.Law(E=1.3, A=60.0, B=400.0, alpha=0.36, beta=0.42)
N = np.repeat([5.5e4, 1e5, 2e5, 4.4e5, 7.9e5], 3)
D = np.tile([1e5, 2e5, 4e5], 5)


def test_fit_recovers_a_known_law_exactly_without_noise():
  law = scaling.fit(N, D, TRUE.predict(N, D))
  for key in ("E", "A", "B", "alpha", "beta"):
    assert getattr(law, key) == pytest.approx(getattr(TRUE, key), rel=1e-3), key
  assert law.n_runs == 15


def test_fit_with_noise_predicts_a_larger_model_and_bootstrap_covers_it():
  rng = np.random.default_rng(1)
  losses = TRUE.predict(N, D) * (1 + rng.normal(0, 0.003, N.size))
  law = scaling.fit(N, D, losses)
  truth = float(TRUE.predict(1.6e6, 2e5))
  assert float(law.predict(1.6e6, 2e5)) == pytest.approx(truth, rel=0.02)
  laws = scaling.bootstrap(N, D, losses, samples=6, seed=0)
  assert len(laws) == 6 and len({round(x.E, 6) for x in laws}) > 1  # resampled, not copies
  lo, hi = scaling.interval([x.predict(1.6e6, 2e5) for x in laws], 0.95)
  assert lo <= truth * 1.01 and hi >= truth * 0.99
  # a law fit to shuffled losses is worse: the fit responds to the data
  shuffled = scaling.fit(N, D, rng.permutation(losses))
  assert shuffled.objective > 10 * law.objective


def test_optimal_allocation_minimises_the_law_at_fixed_compute():
  compute = 6 * 3e5 * 2e6
  n_opt, d_opt = TRUE.optimal_allocation(compute)
  assert 6 * n_opt * d_opt == pytest.approx(compute)
  sizes = np.geomspace(n_opt / 30, n_opt * 30, 2001)
  losses = TRUE.predict(sizes, compute / (6 * sizes))
  assert sizes[np.argmin(losses)] == pytest.approx(n_opt, rel=0.01)
  assert TRUE.frontier(compute) == pytest.approx(losses.min(), rel=1e-6)


def test_fit_refuses_what_it_cannot_fit():
  with pytest.raises(ValueError, match="at least 5 points"):
    scaling.fit(N[:4], D[:4], TRUE.predict(N[:4], D[:4]))
  with pytest.raises(ValueError, match="two sizes and two token budgets"):
    scaling.fit(np.full(6, 1e5), np.geomspace(1e5, 1e6, 6), np.linspace(3, 2, 6))
  with pytest.raises(ValueError, match="one entry per run"):
    scaling.fit(N, D[:-1], TRUE.predict(N, D))


def _tune_lr():
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "phi3_scaling" / "tune_lr.py"
  spec = importlib.util.spec_from_file_location("tune_lr", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_rate_search_picks_the_vertex_and_fits_a_power_rule():
  tune = _tune_lr()
  rates = [1.25e-3, 2.5e-3, 5e-3, 1e-2, 2e-2]
  best = 3.3e-3  # loss a parabola in log rate around it; the far points blow up (diverged runs)
  loss = lambda r: 1.0 + (np.log(r) - np.log(best)) ** 2 + (5.0 if r > 1.5e-2 else 0.0)  # noqa
  rate, inside = tune.best_rate([(r, loss(r)) for r in rates])
  assert inside and rate == pytest.approx(best, rel=1e-6)
  rate, inside = tune.best_rate([(r, 1.0 / r) for r in rates])  # still falling at the edge
  assert not inside and rate == 2e-2
  c, k = tune.rule({n: 0.5 * n ** -0.4 for n in (5e4, 1e5, 4e5, 8e5)})
  assert c == pytest.approx(0.5, rel=1e-9) and k == pytest.approx(-0.4, rel=1e-9)
