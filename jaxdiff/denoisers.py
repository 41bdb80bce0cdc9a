"""Closed-form denoisers ``D(x, sigma) -> x0_hat`` (EDM convention ``x = y + sigma * n``).

``sigma`` is a scalar or a (B,) array. The ideal denoiser of a finite dataset is the
exact E[y | x] when the data are the empirical distribution of ``data``; the Gaussian
one is exact for Gaussian data. Both serve as ground truth for sampler tests and benches, so
their products ask for float32 on every device (``Precision.HIGHEST``; see the
[precision policy][precision-policy]).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["ideal_denoiser", "gaussian_denoiser"]

_FLOAT32 = jax.lax.Precision.HIGHEST  # GPUs would round float32 products to TF32, TPUs to bfloat16


def _per_example(sigma, batch: int, dtype):
    sigma = jnp.asarray(sigma, dtype)
    if sigma.ndim == 0:
        return jnp.broadcast_to(sigma, (batch,))
    if sigma.shape != (batch,):
        raise ValueError(f"sigma must be a scalar or of shape ({batch},), got shape {sigma.shape}")
    return sigma


def ideal_denoiser(data, *, chunk_size: int | None = None):
    """The ideal denoiser of ``data`` (N, ...): D(x; σ) = Σ_i softmax_i(-‖x - y_i‖²/2σ²) y_i.

    Returns ``D(x (B, ...), sigma () or (B,)) -> (B, ...)``, with x's event shape equal to
    data's. Logits drop the constant ‖x‖² and are normalised with log-sum-exp, so small σ
    is stable. ``chunk_size`` bounds the (B, N) logits held at once by mapping over B.
    """
    data = jnp.asarray(data)
    if data.ndim < 1 or data.shape[0] < 1:
        raise ValueError(f"data must be (N, ...) with N >= 1, got shape {data.shape}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    event = data.shape[1:]
    y = data.reshape(data.shape[0], -1)

    def denoise(x, sigma):
        if x.shape[1:] != event:
            raise ValueError(f"x must be (B, *{event}) like data, got shape {x.shape}")
        b = x.shape[0]
        yx = y.astype(x.dtype)
        half_sq = 0.5 * jnp.sum(yx * yx, axis=1)

        def posterior_mean(args):
            xf, s = args
            logits = (jnp.matmul(xf, yx.T, precision=_FLOAT32) - half_sq) / s[..., None] ** 2
            return jnp.matmul(jax.nn.softmax(logits, axis=-1), yx, precision=_FLOAT32)

        args = (x.reshape(b, -1), _per_example(sigma, b, x.dtype))
        if chunk_size is None or b <= chunk_size:
            out = posterior_mean(args)
        else:
            out = jax.lax.map(posterior_mean, args, batch_size=chunk_size)
        return out.reshape(x.shape)

    return denoise


def gaussian_denoiser(mean, *, cov=None, var=None):
    """Exact denoiser for data ~ N(mean, Σ): D(x; σ) = mean + Σ(Σ + σ²I)⁻¹(x - mean).

    ``mean`` has the event shape (...) of x (B, ...); give either ``cov`` (d, d), d = mean.size,
    symmetric positive semi-definite, or ``var`` broadcastable to ``mean`` (a diagonal Σ).
    """
    mean = jnp.asarray(mean)
    if (cov is None) == (var is None):
        raise ValueError("give exactly one of cov (d, d) or var (broadcastable to mean)")
    d = mean.size
    if cov is not None:
        cov = jnp.asarray(cov)
        if cov.shape != (d, d):
            raise ValueError(f"cov must have shape ({d}, {d}) for mean of shape {mean.shape}, got {cov.shape}")
        lam, u = jnp.linalg.eigh(0.5 * (cov + cov.T))
        lam = jnp.maximum(lam, 0)
    else:
        var = jnp.asarray(var)
        try:
            var = jnp.broadcast_to(var, mean.shape)
        except ValueError:
            raise ValueError(f"var must broadcast to mean's shape {mean.shape}, got {var.shape}") from None

    def denoise(x, sigma):
        if x.shape[1:] != mean.shape:
            raise ValueError(f"x must be (B, *{mean.shape}) like mean, got shape {x.shape}")
        b = x.shape[0]
        s2 = _per_example(sigma, b, x.dtype)[:, None] ** 2
        r = (x - mean.astype(x.dtype)).reshape(b, -1)
        if cov is None:
            v = var.reshape(-1).astype(x.dtype)
            out = v / (v + s2) * r
        else:
            ux, lx = u.astype(x.dtype), lam.astype(x.dtype)
            shrunk = jnp.matmul(r, ux, precision=_FLOAT32) * (lx / (lx + s2))
            out = jnp.matmul(shrunk, ux.T, precision=_FLOAT32)
        return mean.astype(x.dtype) + out.reshape(x.shape)

    return denoise
