"""The DreamerV3 optimizer: adaptive gradient clipping, RMS scaling, then momentum (LaProp)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def clip_by_agc(clip: float, pmin: float = 1e-3) -> optax.GradientTransformation:
    """Scale each gradient tensor down so its norm is at most ``clip * max(pmin, |param|)``."""

    def update(updates, state, params):
        def fn(param, grad):
            upper = clip * jnp.maximum(pmin, jnp.linalg.norm(param.ravel()))
            return grad / jnp.maximum(1.0, jnp.linalg.norm(grad.ravel()) / upper)

        return jax.tree.map(fn, params, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(lr: float, warmup: int, agc: float, eps: float, beta1: float, beta2: float
                   ) -> optax.GradientTransformation:
    """AGC, then gradients divided by their bias-corrected RMS (eps outside the root), then a
    bias-corrected momentum average, then a learning rate warmed up linearly over ``warmup`` steps."""
    schedule = optax.linear_schedule(0.0, lr, warmup) if warmup else lr
    return optax.chain(
        clip_by_agc(agc),
        optax.scale_by_rms(decay=beta2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        optax.ema(decay=beta1, debias=True),
        optax.scale_by_learning_rate(schedule),
    )
