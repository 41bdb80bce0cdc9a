"""Forward diffusion processes VP, sub-VP, VE (Song et al. 2021) and EDM (Karras et al. 2022).

Every process is linear, ``dx = f(t) x dt + g(t) dW``, with Gaussian marginal

    x_t | x_0 ~ N(s(t) x_0, (s(t) sigma(t))^2 I),   i.e.  x_t = s(t) (x_0 + sigma(t) n),

so it is the EDM schedule ``(sigma(t), s(t))`` and the denoiser
``D(x / s, sigma) -> x0_hat`` of the unscaled variable gives the score of ``x_t``.
All processes are frozen (hashable) dataclasses with the same methods, usable as
static arguments of ``jit``:

    marginal(t) -> (mean_scale, std)   scale(t)   sigma(t)   t_from_sigma(sigma)
    drift(x, t)   diffusion(t)   discretize(x, t, dt)   reverse_drift(x, t, score)
    reverse_diffusion(t)   prior_sample(key, shape)   prior_logp(z)
    score_from_denoiser(denoiser)   T   eps   sigma_min   sigma_max   prior_std

Shapes: ``t`` is a scalar or ``(B,)``; ``x`` is ``(B, ...)``; time coefficients have
the shape of ``t`` and are broadcast over the trailing axes of ``x``. A concrete
``t`` outside ``[0, T]`` raises ``ValueError``, as does a concrete ``sigma`` passed to
``t_from_sigma`` that is NaN, infinite or negative (or 0 for VE, whose sigma never reaches 0);
under tracing the checks are skipped.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff._arrays import bcast
from jaxdiff._checks import check_positive

Array = Any
Denoiser = Callable[..., Array]

__all__ = ["VPSDE", "SubVPSDE", "VESDE", "EDMSDE"]

# Relative slack on t <= T, so float round-off from t_from_sigma(sigma_max) passes.
_T_SLACK = 1e-5


def _as_float(a) -> Array:
    a = jnp.asarray(a)
    return a.astype(jnp.result_type(a, float))



def _require(name: str, ok: bool, expected: str, value) -> None:
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


class _LinearProcess:
    """Shared methods; subclasses define ``T``, ``eps``, ``prior_std`` and the ``_``-prefixed
    coefficients ``_marginal``, ``_sigma``, ``_t_from_sigma``, ``_drift_coef``, ``_diffusion``."""

    _sigma_reaches_zero = True  # sigma(0) = 0, so t_from_sigma(0) = 0 is defined

    def _time(self, t) -> Array:
        if not isinstance(t, jax.core.Tracer):
            v = np.asarray(t)
            if not np.all((v >= 0) & (v <= self.T * (1 + _T_SLACK))):
                raise ValueError(f"t must lie in [0, T={self.T}], got {t!r}")
        return _as_float(t)

    def marginal(self, t: Array) -> tuple[Array, Array]:
        """``(mean_scale, std)`` of ``x_t | x_0``: ``s(t)`` and ``s(t) sigma(t)``, shape of ``t``."""
        return self._marginal(self._time(t))

    def scale(self, t: Array) -> Array:
        """Mean scale ``s(t)``, shape of ``t``."""
        return self._marginal(self._time(t))[0]

    def sigma(self, t: Array) -> Array:
        """EDM noise level ``sigma(t) = std / s(t)``, shape of ``t``."""
        return self._sigma(self._time(t))

    def t_from_sigma(self, sigma: Array) -> Array:
        """Closed-form inverse of ``sigma(t)``, shape of ``sigma``."""
        check_positive(sigma, "sigma", allow_zero=self._sigma_reaches_zero)
        return self._t_from_sigma(_as_float(sigma))

    def drift(self, x: Array, t: Array) -> Array:
        """Forward drift ``f(x, t)``, shape of ``x``."""
        return bcast(self._drift_coef(self._time(t)), x) * x

    def diffusion(self, t: Array) -> Array:
        """Forward diffusion coefficient ``g(t)``, shape of ``t``."""
        return self._diffusion(self._time(t))

    def discretize(self, x: Array, t: Array, dt: Array) -> tuple[Array, Array]:
        """Euler–Maruyama increments ``(f(x, t) dt, g(t) sqrt(|dt|))``; shapes of ``x`` and ``t``."""
        t = self._time(t)
        dt = _as_float(dt)
        return bcast(self._drift_coef(t) * dt, x) * x, self._diffusion(t) * jnp.sqrt(jnp.abs(dt))

    def reverse_drift(self, x: Array, t: Array, score: Array, probability_flow: bool = False) -> Array:
        """Drift of the reverse-time SDE, ``f - g^2 score`` (``f - g^2 score / 2`` for the
        probability-flow ODE), in forward time ``t``. ``score`` has the shape of ``x``."""
        t = self._time(t)
        g2 = self._diffusion(t) ** 2
        if probability_flow:
            g2 = 0.5 * g2
        return bcast(self._drift_coef(t), x) * x - bcast(g2, x) * score

    def reverse_diffusion(self, t: Array, probability_flow: bool = False) -> Array:
        """Diffusion of the reverse-time SDE: ``g(t)``, or zeros for the probability-flow ODE."""
        g = self._diffusion(self._time(t))
        return jnp.zeros_like(g) if probability_flow else g

    def prior_sample(self, key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
        """Draws ``shape`` from the prior ``N(0, prior_std^2 I)``."""
        return self.prior_std * jax.random.normal(key, shape, dtype)

    def prior_logp(self, z: Array) -> Array:
        """Prior log-density of ``z`` ``(B, ...)``, summed over all but the first axis: ``(B,)``."""
        z = _as_float(z)
        if z.ndim < 1:
            raise ValueError(f"z must have shape (B, ...), got shape {z.shape}")
        d = math.prod(z.shape[1:])
        sq = jnp.sum(jnp.reshape(z, (z.shape[0], -1)) ** 2, axis=1)
        return -0.5 * d * math.log(2 * math.pi * self.prior_std**2) - 0.5 * sq / self.prior_std**2

    def score_from_denoiser(self, denoiser: Denoiser) -> Callable[..., Array]:
        """Wraps ``denoiser(x, sigma, **cond) -> x0_hat`` (unscaled ``x``, ``sigma`` of shape ``(B,)``)
        into ``score(x, t, **cond)``, the score of the scaled ``x_t``:
        ``(s D(x / s, sigma) - x) / (s sigma)^2``; ``x`` ``(B, ...)``, ``t`` scalar or ``(B,)``."""

        def score(x: Array, t: Array, **cond) -> Array:
            t = self._time(t)
            s, sig = self._marginal(t)[0], self._sigma(t)
            x0 = denoiser(x / bcast(s, x), jnp.broadcast_to(sig, x.shape[:1]), **cond)
            return (bcast(s, x) * x0 - x) / bcast((s * sig) ** 2, x)

        return score


class _BetaProcess(_LinearProcess):
    """Linear ``beta(t) = beta_min + (beta_max - beta_min) t / T``; subclasses add the marginal."""

    def _validate(self) -> None:
        _require("beta_min", self.beta_min > 0, "> 0", self.beta_min)
        _require("beta_max", self.beta_max >= self.beta_min, f">= beta_min={self.beta_min}", self.beta_max)
        _require("T", self.T > 0, "> 0", self.T)
        _require("eps", 0 <= self.eps < self.T, f"in [0, T={self.T})", self.eps)

    def _beta(self, t):
        return self.beta_min + (self.beta_max - self.beta_min) / self.T * t

    def _int_beta(self, t):
        """``A(t) = int_0^t beta = beta_min t + (beta_max - beta_min) t^2 / (2 T)``."""
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) / self.T * t**2

    def _t_from_int_beta(self, a):
        """Positive root of ``A(t) = a``, written without cancellation (also for beta_max = beta_min)."""
        bd = (self.beta_max - self.beta_min) / self.T
        return 2.0 * a / (jnp.sqrt(self.beta_min**2 + 2.0 * bd * a) + self.beta_min)

    def _drift_coef(self, t):
        return -0.5 * self._beta(t)

    @property
    def prior_std(self) -> float:
        return 1.0


@dataclasses.dataclass(frozen=True)
class VPSDE(_BetaProcess):
    """Variance preserving (DDPM): ``dx = -beta(t) x / 2 dt + sqrt(beta(t)) dW``.

    ``s = exp(-A/2)``, ``std = sqrt(1 - exp(-A))``, ``sigma = sqrt(exp(A) - 1)`` with
    ``A(t) = int_0^t beta``; prior ``N(0, I)``. ``sigma_min = sigma(eps)``, ``sigma_max = sigma(T)``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0
    eps: float = 1e-5

    def __post_init__(self):
        self._validate()

    def _marginal(self, t):
        a = self._int_beta(t)
        return jnp.exp(-0.5 * a), jnp.sqrt(-jnp.expm1(-a))

    def _sigma(self, t):
        return jnp.sqrt(jnp.expm1(self._int_beta(t)))

    def _t_from_sigma(self, sigma):
        return self._t_from_int_beta(jnp.log1p(sigma**2))

    def _diffusion(self, t):
        return jnp.sqrt(self._beta(t))

    @property
    def sigma_min(self) -> float:
        return math.sqrt(math.expm1(self._int_beta(self.eps)))

    @property
    def sigma_max(self) -> float:
        return math.sqrt(math.expm1(self._int_beta(self.T)))


@dataclasses.dataclass(frozen=True)
class SubVPSDE(_BetaProcess):
    """Sub-VP: ``dx = -beta x / 2 dt + sqrt(beta (1 - exp(-2A))) dW``, ``A(t) = int_0^t beta``.

    ``s = exp(-A/2)``, ``std = 1 - exp(-A)``, ``sigma = 2 sinh(A/2)``, inverted in closed
    form through ``A = 2 asinh(sigma/2)``; prior ``N(0, I)``.
    ``sigma_min = sigma(eps)``, ``sigma_max = sigma(T)``.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0
    eps: float = 1e-3

    def __post_init__(self):
        self._validate()

    def _marginal(self, t):
        a = self._int_beta(t)
        return jnp.exp(-0.5 * a), -jnp.expm1(-a)

    def _sigma(self, t):
        return 2.0 * jnp.sinh(0.5 * self._int_beta(t))

    def _t_from_sigma(self, sigma):
        return self._t_from_int_beta(2.0 * jnp.arcsinh(0.5 * sigma))

    def _diffusion(self, t):
        return jnp.sqrt(self._beta(t) * -jnp.expm1(-2.0 * self._int_beta(t)))

    @property
    def sigma_min(self) -> float:
        return 2.0 * math.sinh(0.5 * self._int_beta(self.eps))

    @property
    def sigma_max(self) -> float:
        return 2.0 * math.sinh(0.5 * self._int_beta(self.T))


@dataclasses.dataclass(frozen=True)
class VESDE(_LinearProcess):
    """Variance exploding (SMLD): ``dx = sigma(t) sqrt(2 log(sigma_max/sigma_min) / T) dW``.

    ``sigma(t) = sigma_min (sigma_max/sigma_min)^(t/T)``, ``s = 1``; prior ``N(0, sigma_max^2 I)``.
    As in score_sde the marginal std is ``sigma(t)`` itself, i.e. the process starts from
    ``x_0 + sigma_min n``, and the field ``sigma_min`` is ``sigma(0)``
    (``sigma(eps)`` exceeds it by the factor ``(sigma_max/sigma_min)^(eps/T)``).
    ``t_from_sigma`` is negative for ``sigma < sigma_min`` and needs ``sigma > 0``.
    """

    _sigma_reaches_zero = False

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    T: float = 1.0
    eps: float = 1e-5

    def __post_init__(self):
        _require("sigma_min", self.sigma_min > 0, "> 0", self.sigma_min)
        _require("sigma_max", self.sigma_max > self.sigma_min, f"> sigma_min={self.sigma_min}", self.sigma_max)
        _require("T", self.T > 0, "> 0", self.T)
        _require("eps", 0 <= self.eps < self.T, f"in [0, T={self.T})", self.eps)

    @property
    def _log_ratio(self) -> float:
        return math.log(self.sigma_max / self.sigma_min)

    def _marginal(self, t):
        sig = self._sigma(t)
        return jnp.ones_like(sig), sig

    def _sigma(self, t):
        return self.sigma_min * jnp.exp(self._log_ratio / self.T * t)

    def _t_from_sigma(self, sigma):
        return self.T * jnp.log(sigma / self.sigma_min) / self._log_ratio

    def _drift_coef(self, t):
        return jnp.zeros_like(t)

    def _diffusion(self, t):
        return self._sigma(t) * math.sqrt(2.0 * self._log_ratio / self.T)

    @property
    def prior_std(self) -> float:
        return self.sigma_max


@dataclasses.dataclass(frozen=True)
class EDMSDE(_LinearProcess):
    """EDM (Karras et al. 2022): ``sigma(t) = t``, ``s = 1``, ``dx = sqrt(2t) dW`` on
    ``[0, sigma_max]``; ``T = sigma_max``, ``eps = sigma_min``, prior ``N(0, sigma_max^2 I)``."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def __post_init__(self):
        _require("sigma_min", self.sigma_min > 0, "> 0", self.sigma_min)
        _require("sigma_max", self.sigma_max > self.sigma_min, f"> sigma_min={self.sigma_min}", self.sigma_max)

    @property
    def T(self) -> float:
        return self.sigma_max

    @property
    def eps(self) -> float:
        return self.sigma_min

    def _marginal(self, t):
        return jnp.ones_like(t), t

    def _sigma(self, t):
        return t

    def _t_from_sigma(self, sigma):
        return sigma

    def _drift_coef(self, t):
        return jnp.zeros_like(t)

    def _diffusion(self, t):
        return jnp.sqrt(2.0 * t)

    @property
    def prior_std(self) -> float:
        return self.sigma_max
