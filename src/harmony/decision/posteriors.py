"""Conjugate posteriors with closed-form online updates, vectorised over workloads.

- `CapacityPosterior`: Normal-Inverse-Gamma posterior over the per-replica capacity c (demand units one
  ready replica serves at the SLA boundary). Observations are capacity measurements, e.g. demand per
  ready replica in intervals where the workload ran at its SLA limit. Decisions sample c from the
  posterior of its mean (a Student-t), so a workload with few observations is provisioned more
  cautiously than one with many.
- `BreachPosterior`: a Beta posterior on the realised breach rate (ticks with demand above ready capacity),
  with exponential forgetting so it follows the recent past. It moves the effective risk level: tighter
  when breaches run above the SLA target, looser (bounded) when far below.

Pure numpy; no I/O. Every array field has a leading workload axis [W]. Reference: Murphy, "Conjugate
Bayesian analysis of the Gaussian distribution" (2007), sections 6-7, for the NIG updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CapacityPosterior:
    """NIG(mu, kappa, alpha, beta) over (capacity mean c, observation variance s^2), per workload [W].

    c | s^2 ~ N(mu, s^2 / kappa),  s^2 ~ InvGamma(alpha, beta).
    """

    mu: np.ndarray
    kappa: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray

    @classmethod
    def prior(cls, capacity: float | np.ndarray, workloads: int = 1, strength: float = 10.0,
              relative_sd: float = 0.1) -> CapacityPosterior:
        """A prior centred on a nominal capacity, worth `strength` pseudo-observations for the mean, and
        expecting observations to scatter by `relative_sd` of the capacity."""
        cap = np.broadcast_to(np.asarray(capacity, dtype=np.float64), (workloads,)).copy()
        if np.any(cap <= 0):
            raise ValueError(f"capacity per replica must be positive, got {capacity}")
        alpha = np.full(workloads, 3.0)  # a proper prior with finite variance
        beta = (alpha - 1.0) * (relative_sd * cap) ** 2  # E[s^2] = beta / (alpha - 1)
        return cls(cap, np.full(workloads, float(strength)), alpha, beta)

    @property
    def workloads(self) -> int:
        return self.mu.shape[0]

    def update(self, observations: np.ndarray) -> CapacityPosterior:
        """Condition on observations [W, n] (NaN = no observation for that workload and slot).

        A non-finite observation (inf) measures no capacity and counts as none; a workload whose update would
        not be representable (observations so far from the belief that the squared spread overflows) keeps
        its posterior: one absurd reading must not leave inf or NaN behind for every later decision."""
        x = np.atleast_2d(np.asarray(observations, dtype=np.float64))
        if x.shape[0] != self.workloads:
            raise ValueError(f"observations have {x.shape[0]} workloads, the posterior {self.workloads}")
        x = np.where(np.isfinite(x), x, np.nan)
        seen = ~np.isnan(x)
        n = seen.sum(axis=1).astype(np.float64)
        if not n.any():
            return self
        with np.errstate(over="ignore", invalid="ignore"):
            xbar = np.where(n > 0, np.nansum(x, axis=1) / np.maximum(n, 1), self.mu)
            ss = np.nansum(np.where(seen, (x - xbar[:, None]) ** 2, 0.0), axis=1)
            kappa = self.kappa + n
            mu = (self.kappa * self.mu + n * xbar) / kappa
            alpha = self.alpha + n / 2.0
            beta = self.beta + 0.5 * ss + self.kappa * n * (xbar - self.mu) ** 2 / (2.0 * kappa)
        ok = np.isfinite(mu) & np.isfinite(kappa) & np.isfinite(alpha) & np.isfinite(beta)
        return CapacityPosterior(np.where(ok, mu, self.mu), np.where(ok, kappa, self.kappa),
                                 np.where(ok, alpha, self.alpha), np.where(ok, beta, self.beta))

    def mean_scale(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Student-t marginal of the capacity mean: (location, scale, degrees of freedom)."""
        return self.mu, np.sqrt(self.beta / (self.alpha * self.kappa)), 2.0 * self.alpha

    def sample_mean(self, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """[W, n_samples] draws of the capacity mean, floored at 1% of the posterior mean (a capacity is
        positive; the t tail must not produce nonsense)."""
        loc, scale, dof = self.mean_scale()
        t = rng.standard_t(dof[:, None], size=(self.workloads, n_samples))
        return np.maximum(loc[:, None] + scale[:, None] * t, 0.01 * np.abs(loc[:, None]))

    def to_dict(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).tolist() for k in ("mu", "kappa", "alpha", "beta")}

    @classmethod
    def from_dict(cls, state: dict) -> CapacityPosterior:
        return cls(*(np.atleast_1d(np.asarray(state[k], dtype=np.float64)) for k in ("mu", "kappa", "alpha", "beta")))


@dataclass(frozen=True)
class BreachPosterior:
    """Beta(a, b) posterior on the realised breach rate per workload [W], with forgetting.

    Each update first discounts the pseudo-counts by `forgetting` (an effective memory of about
    1 / (1 - forgetting) ticks), then adds the new breach (1) or no-breach (0) observations.
    """

    a: np.ndarray
    b: np.ndarray
    forgetting: float = 0.995

    @classmethod
    def prior(cls, target: float, workloads: int = 1, strength: float = 50.0,
              forgetting: float = 0.995) -> BreachPosterior:
        """Centred on the SLA target with `strength` pseudo-ticks, so a few early breaches do not swing it."""
        if not 0 < target < 1:
            raise ValueError(f"target breach rate must lie in (0, 1), got {target}")
        return cls(np.full(workloads, target * strength), np.full(workloads, (1 - target) * strength), forgetting)

    def update(self, breaches: np.ndarray) -> BreachPosterior:
        """Observe [W] (or [W, n]) breach indicators in {0, 1}; NaN (or any non-finite value) means no
        observation this tick, and a value outside [0, 1] counts as the nearest indicator."""
        x = np.asarray(breaches, dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
        x = np.where(np.isfinite(x), np.clip(x, 0.0, 1.0), np.nan)
        seen = ~np.isnan(x)
        hits = np.where(seen, x, 0.0).sum(axis=1)
        n = seen.sum(axis=1)
        decay = self.forgetting ** n
        return BreachPosterior(self.a * decay + hits, self.b * decay + (n - hits), self.forgetting)

    @property
    def mean(self) -> np.ndarray:
        return self.a / (self.a + self.b)

    def to_dict(self) -> dict:
        return {"a": self.a.tolist(), "b": self.b.tolist(), "forgetting": self.forgetting}

    @classmethod
    def from_dict(cls, state: dict) -> BreachPosterior:
        return cls(np.atleast_1d(np.asarray(state["a"], dtype=np.float64)),
                   np.atleast_1d(np.asarray(state["b"], dtype=np.float64)), float(state["forgetting"]))
