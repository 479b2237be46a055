"""Few-step samplers for the rectified-flow latent model, in the style of k-diffusion.

The model is trained with rectified flow (Liu et al. 2022, "Flow Straight and Fast"; Lipman et al. 2022,
"Flow Matching"): ``x_t = (1 - t) * x_0 + t * noise`` for ``t`` in [0, 1], so ``sigma = t``. A
``denoise(x, sigma)`` callable returns the model's estimate of ``x_0``. These functions use only
arithmetic on their arrays, so the same code runs on numpy arrays (the device) and torch tensors (the
training side): the runtime reproduces the training-side sampler exactly.
"""

from __future__ import annotations

import numpy as np


def get_sigmas_flow(n: int, shift: float = 1.0) -> np.ndarray:
    """``n + 1`` noise levels from 1 to 0 for ``n`` steps, float32.

    ``shift`` > 1 spends more steps at high noise (Esser et al. 2024, SD3's timestep shift:
    ``t' = shift * t / (1 + (shift - 1) * t)``).
    """
    t = np.linspace(1.0, 0.0, n + 1, dtype=np.float64)
    return (shift * t / (1.0 + (shift - 1.0) * t)).astype(np.float32)


def sample_euler(denoise, x, sigmas, *, noise=None, callback=None):
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 1 without churn).

    x: starting latent at ``sigmas[0]`` (pure noise when ``sigmas[0] == 1``).
    sigmas: decreasing noise levels ending at 0. ``noise`` is unused (the sampler is deterministic);
    it is accepted for the common signature. ``callback(i, x, denoised)`` is called after each step.
    """
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, sigma)
        d = (x - denoised) / sigma
        x = x + d * (sigma_next - sigma)
        if callback is not None:
            callback(i, x, denoised)
    return x


def sample_heun(denoise, x, sigmas, *, noise=None, callback=None):
    """Heun's second-order method (Karras et al. 2022, Algorithm 1 without churn): two model calls per
    step except the last, which is an Euler step to sigma 0."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoise(x, sigma)
        d = (x - denoised) / sigma
        x_next = x + d * (sigma_next - sigma)
        if sigma_next > 0:
            d_next = (x_next - denoise(x_next, sigma_next)) / sigma_next
            x_next = x + (d + d_next) * 0.5 * (sigma_next - sigma)
        x = x_next
        if callback is not None:
            callback(i, x, denoised)
    return x


SAMPLERS = {"euler": sample_euler, "heun": sample_heun}


def cfg_velocity(v_cond, negatives):
    """Classifier-free guidance (Ho & Salimans 2022) on velocities, with any number of guidance rows:
    ``v_c + sum_i (g_i - 1) * (v_c - v_i)`` over ``negatives`` = ``[(v_i, g_i), ...]`` (one row:
    ``v_u + g * (v_c - v_u)``)."""
    v = v_cond
    for v_neg, guidance in negatives:
        v = v + (guidance - 1.0) * (v_cond - v_neg)
    return v
