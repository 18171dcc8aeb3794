"""λ-returns and the percentile return normaliser."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def lambda_return(last: jax.Array, term: jax.Array, rew: jax.Array, boot: jax.Array, disc: float,
                  lam: float) -> jax.Array:
    """λ-returns for (B, T) sequences; returns (B, T - 1), one per state but the last.

    ``rew[:, t]`` is the reward on arriving at state t, ``term`` marks terminal states (no future),
    ``last`` marks episode ends (no bootstrapping through them), ``boot`` are value estimates.
    """
    live = (1 - term[:, 1:].astype(jnp.float32)) * disc
    cont = (1 - last[:, 1:].astype(jnp.float32)) * lam
    interm = rew[:, 1:] + (1 - cont) * live * boot[:, 1:]

    def step(ret, inputs):
        interm_t, live_t, cont_t = inputs
        ret = interm_t + live_t * cont_t * ret
        return ret, ret

    swap = lambda x: jnp.swapaxes(x, 0, 1)
    _, rets = jax.lax.scan(step, boot[:, -1], (swap(interm), swap(live), swap(cont)), reverse=True)
    return swap(rets)


def init_percentiles() -> dict:
    return {"lo": jnp.zeros((), jnp.float32), "hi": jnp.zeros((), jnp.float32), "corr": jnp.zeros((), jnp.float32)}


def update_percentiles(state: dict, x: jax.Array, rate: float, lo: float = 5.0, hi: float = 95.0) -> dict:
    """EMA of the ``lo`` and ``hi`` percentiles of ``x``, with the weight needed to debias it."""
    x = jax.lax.stop_gradient(x.astype(jnp.float32))
    return {
        "lo": (1 - rate) * state["lo"] + rate * jnp.percentile(x, lo),
        "hi": (1 - rate) * state["hi"] + rate * jnp.percentile(x, hi),
        "corr": (1 - rate) * state["corr"] + rate,
    }


def return_scale(state: dict, limit: float = 1.0, debias: bool = False) -> jax.Array:
    """max(limit, P95 - P5) of the tracked returns; ``debias`` divides out the EMA's zero start
    (the reference does not, so early scales read low and ``limit`` holds them at 1)."""
    corr = jnp.maximum(state["corr"], 1e-8) if debias else 1.0
    return jnp.maximum(limit, (state["hi"] - state["lo"]) / corr)
