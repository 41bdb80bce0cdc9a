"""Doob h-transform diffusion bridges in the unified (DBIM) notation.

A forward SDE dx = f(t) x dt + g(t) dW has marginals x_t | x_0 ~ N(α_t x_0, α_t² ρ_t²).
Pinning its end at x_T gives the bridge q(x_t | x_0, x_T) = N(a_t x_T + b_t x_0, c_t² I) with

    ᾱ_t = α_t/α_T,  ρ̄_t² = ρ_T² − ρ_t²,
    a_t = ᾱ_t ρ_t²/ρ_T²,  b_t = α_t ρ̄_t²/ρ_T²,  c_t = α_t ρ̄_t ρ_t/ρ_T.

VP: α_t = exp(−½β_min t − ¼β_d t²), ρ_t² = expm1(β_min t + ½β_d t²).  VE: α = 1, ρ_t = t.

Every coefficient function takes ``t`` as a NumPy/Python value (computed on the host in
float64, the path used for sampler grids) or a JAX array (computed in its dtype, the path
used under ``jit``), and stays finite on all of [0, T]: ρ_t² and ρ̄_t² are formed with
``expm1`` of exactly factored exponents, so neither end cancels catastrophically. A concrete
``t`` (NumPy or eager JAX) outside [0, T] raises ``ValueError``; traced times are not checked.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._arrays import bcast


def _xp(t):
    """NumPy (float64, on the host) for concrete non-JAX inputs, else jax.numpy."""
    if isinstance(t, (float, int, np.ndarray, np.floating)):
        return np, np.asarray(t, np.float64)
    return jnp, t


def _coef(c, x):
    """A time coefficient in ``x``'s dtype, broadcast against ``x`` (B, ...)."""
    return bcast(jnp.asarray(c, x.dtype), x)


class _Bridge:
    """Shared bridge algebra over the schedule hooks ``_log_alpha``, ``_rho2``, ``_rho_bar2``, ``f_g2``."""

    T: float
    t_min: float
    eps: float

    @property
    def t_max(self) -> float:
        """Largest time the samplers and the loss use: T − eps."""
        return self.T - self.eps

    @property
    def rho_T2(self) -> float:
        return float(self._rho2(np, np.float64(self.T)))

    def alpha_rho(self, t):
        """(α_t, ᾱ_t, ρ_t², ρ̄_t²), each shaped like ``t``; a concrete ``t`` outside [0, T] raises."""
        self.check_t(t)
        xp, t = _xp(t)
        log_alpha = self._log_alpha(t)
        alpha = xp.exp(log_alpha)
        alpha_bar = xp.exp(log_alpha - self._log_alpha(xp.asarray(self.T, t.dtype)))
        return alpha, alpha_bar, self._rho2(xp, t), self._rho_bar2(xp, t)

    def abc(self, t):
        """(a_t, b_t, c_t) of q(x_t | x_0, x_T) = N(a_t x_T + b_t x_0, c_t² I); shaped like ``t``.

        Concrete times outside [0, T] raise ``ValueError``; traced times are not checked.
        """
        xp, t = _xp(t)
        alpha, alpha_bar, rho2, rho_bar2 = self.alpha_rho(t)
        rT2 = self.rho_T2
        a = alpha_bar * rho2 / rT2
        b = alpha * rho_bar2 / rT2
        c = alpha * xp.sqrt(rho_bar2 * rho2 / rT2)
        return a, b, c

    def sample(self, x0, x_T, t, noise):
        """x_t = a_t x_T + b_t x_0 + c_t noise. x0, x_T, noise: (B, ...); t: scalar or (B,)."""
        a, b, c = self.abc(t)
        return _coef(a, x0) * x_T + _coef(b, x0) * x0 + _coef(c, x0) * noise

    def h_transform(self, x, x_T, t):
        """∇_x log p(x_T | x_t = x) = −(x − ᾱ_t x_T)/(α_t² ρ̄_t²). x, x_T: (B, ...); t: scalar or (B,)."""
        alpha, alpha_bar, _, rho_bar2 = self.alpha_rho(t)
        return -(x - _coef(alpha_bar, x) * x_T) / _coef(alpha**2 * rho_bar2, x)

    def bridge_score(self, x, x_T, x0_hat, t):
        """∇_x log q(x_t = x | x_0 = x0_hat, x_T) = −(x − a_t x_T − b_t x0_hat)/c_t²."""
        a, b, c = self.abc(t)
        return -(x - _coef(a, x) * x_T - _coef(b, x) * x0_hat) / _coef(c**2, x)

    def forward_sde(self, x, x_T, t):
        """Forward bridge SDE dx = [f x + g² ∇log p(x_T|x_t)] dt + g dW: returns (drift, g)."""
        f, g2 = self.f_g2(t)
        xp, _ = _xp(t)
        return _coef(f, x) * x + _coef(g2, x) * self.h_transform(x, x_T, t), xp.sqrt(g2)

    def reverse_drift(self, x, x_T, x0_hat, t, *, ode: bool, guidance: float = 1.0):
        """Reverse bridge SDE (``ode=False``) or probability-flow ODE drift given a denoiser output.

        f x − g² (k ∇log q(x_t | x0_hat, x_T) − w ∇log p(x_T | x_t)), k = ½ (ODE) or 1 (SDE),
        w = ``guidance``; integrate from T down to 0 (the SDE with diffusion g).
        """
        f, g2 = self.f_g2(t)
        k = 0.5 if ode else 1.0
        # k ∇log q − w h = k (α x0_hat − x)/(α² ρ_t²) + (k − w) h exactly: ∇log q and h both grow like
        # 1/ρ̄_t² near T and cancel (for k = w, the SDE with guidance 1, entirely), so the difference
        # is formed in closed form instead (float32 relative error 0.16 at T − 1 ulp otherwise).
        alpha, _, rho2, _ = self.alpha_rho(t)
        score = k * (_coef(alpha, x) * x0_hat - x) / _coef(alpha**2 * rho2, x)
        if k != guidance:
            score = score + (k - guidance) * self.h_transform(x, x_T, t)
        return _coef(f, x) * x - _coef(g2, x) * score

    def check_t(self, t, name: str = "t") -> None:
        """Raise ``ValueError`` if a concrete ``t`` leaves [0, T] (traced values pass unchecked)."""
        try:
            v = np.asarray(t)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return
        if not np.all(np.isfinite(v)) or np.any(v < 0) or np.any(v > self.T):
            raise ValueError(f"{name} must lie in [0, T] = [0, {self.T}], got range "
                             f"[{np.min(v)}, {np.max(v)}]")


@dataclasses.dataclass(frozen=True)
class VPBridge(_Bridge):
    """VP bridge: β(t) = β_min + β_d t, α_t = exp(−½β_min t − ¼β_d t²), ρ_t² = exp(∫β) − 1."""

    beta_min: float = 0.1
    beta_d: float = 2.0
    T: float = 1.0
    t_min: float = 1e-4
    eps: float = 1e-4

    def _int_beta(self, t):
        return self.beta_min * t + 0.5 * self.beta_d * t**2

    def _log_alpha(self, t):
        return -0.5 * self._int_beta(t)

    def _rho2(self, xp, t):
        return xp.expm1(self._int_beta(t))

    def _rho_bar2(self, xp, t):
        # ρ_T² − ρ_t² = e^{B(T)} (−expm1(B(t) − B(T))), B(t) − B(T) = (t − T)(β_min + ½β_d (t + T)).
        diff = (t - self.T) * (self.beta_min + 0.5 * self.beta_d * (t + self.T))
        # float(): a weakly typed scale, so a bfloat16/float32 t keeps its dtype (np.float64 promoted it)
        return float(np.exp(self._int_beta(self.T))) * -xp.expm1(diff)

    def f_g2(self, t):
        """(f(t), g²(t)) = (−½β(t), β(t))."""
        _, t = _xp(t)
        beta = self.beta_min + self.beta_d * t
        return -0.5 * beta, beta


@dataclasses.dataclass(frozen=True)
class VEBridge(_Bridge):
    """VE bridge (Brownian bridge in σ = t): α = 1, ρ_t = t, ρ_T = sigma_max = T."""

    sigma_max: float = 80.0
    T: float = 80.0
    t_min: float = 2e-3
    eps: float = 1e-4

    def __post_init__(self):
        if self.T != self.sigma_max:
            raise ValueError(f"T must equal sigma_max for the VE bridge, got T={self.T}, "
                             f"sigma_max={self.sigma_max}")

    def _log_alpha(self, t):
        return 0.0 * t

    def _rho2(self, xp, t):
        return t**2

    def _rho_bar2(self, xp, t):
        return (self.T - t) * (self.T + t)

    def f_g2(self, t):
        """(f(t), g²(t)) = (0, 2t)."""
        _, t = _xp(t)
        return 0.0 * t, 2.0 * t
