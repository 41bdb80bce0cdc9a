"""An analytic Gaussian bridge: x_T ~ N(0, I_d), x_0 | x_T ~ N(M x_T + m, S).

Its Bayes denoiser is linear and closed form. With x_t = a x_T + b x_0 + c n and
μ = M x_T + m, Gaussian conditioning gives

    E[x_0 | x_t, x_T] = μ + b S (b² S + c² I)⁻¹ (x_t − a x_T − b μ),

evaluated in the eigenbasis S = U diag(s) Uᵀ (gain b s/(b² s + c²), 0 where b = c = 0 at t = T).
Every bridge sampler driven by it is affine in its noise, so its output given x_T is Gaussian
and the Gaussian (Fréchet) W2 measures its error exactly up to Monte-Carlo noise.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.metrics.frechet import frechet_distance, gaussian_stats

HIGHEST = jax.lax.Precision.HIGHEST  # a closed-form yardstick: float32 products on every device


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianBridgeData:
    """M (d, d), m (d,), S (d, d) symmetric positive definite."""

    M: np.ndarray
    m: np.ndarray
    S: np.ndarray

    @classmethod
    def random(cls, d: int = 4, seed: int = 0) -> "GaussianBridgeData":
        """A random well-conditioned instance: M with entries N(0, 0.5²/d), S eigenvalues in [0.05, 0.5]."""
        rng = np.random.default_rng(seed)
        M = rng.normal(0.0, 0.5 / np.sqrt(d), (d, d))
        m = rng.normal(0.0, 0.5, d)
        U, _ = np.linalg.qr(rng.normal(size=(d, d)))
        S = (U * np.linspace(0.05, 0.5, d)) @ U.T
        return cls(M, m, S)

    @property
    def d(self) -> int:
        return self.m.shape[0]

    def mean(self, x_T):
        """E[x_0 | x_T] = M x_T + m: (B, d) -> (B, d)."""
        return jnp.matmul(x_T, jnp.asarray(self.M.T, x_T.dtype), precision=HIGHEST) + jnp.asarray(self.m, x_T.dtype)

    def sample(self, key, x_T):
        """Exact draws x_0 | x_T: (B, d) -> (B, d)."""
        L = jnp.asarray(np.linalg.cholesky(self.S), x_T.dtype)
        return self.mean(x_T) + jnp.matmul(jax.random.normal(key, x_T.shape, x_T.dtype), L.T, precision=HIGHEST)

    def denoiser(self, bridge):
        """The Bayes denoiser D(x_t, t, x_T) -> E[x_0 | x_t, x_T]; x_t, x_T (B, d), t scalar or (B,).

        A closed-form yardstick: its products ask for float32 (``Precision.HIGHEST``) on every device
        (docs/design/precision.md)."""
        s, U = np.linalg.eigh(self.S)

        def D(x_t, t, x_T):
            dtype = x_t.dtype
            t = jnp.broadcast_to(jnp.asarray(t, dtype), x_t.shape[:1])[:, None]
            a, b, c = bridge.abc(t)
            sj, Uj = jnp.asarray(s, dtype), jnp.asarray(U, dtype)
            den = b**2 * sj + c**2
            gain = jnp.where(den > 0, b * sj / jnp.where(den > 0, den, 1.0), 0.0)
            mu = self.mean(x_T)
            r = jnp.matmul(x_t - a * x_T - b * mu, Uj, precision=HIGHEST)
            return mu + jnp.matmul(gain * r, Uj.T, precision=HIGHEST)

        return D

    def w2(self, samples, x_T) -> float:
        """W2 between the Gaussian fitted to ``samples`` (n, d) and the truth given one x_T (d,)."""
        mu, cov = gaussian_stats(np.asarray(samples, np.float64))
        truth = np.asarray(x_T, np.float64) @ self.M.T + self.m
        return float(np.sqrt(frechet_distance(mu, cov, truth, self.S)))
