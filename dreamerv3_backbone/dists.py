"""The few distributions and transforms DreamerV3 needs, as plain functions on logits.

- symlog / symexp squash targets of unknown scale.
- Categorical with a uniform mix (unimix), sampled as one-hot with straight-through gradients.
- Two-hot regression over bins (reward and critic heads): symexp-spaced bins interpolated in raw
  space, as the reference does, or evenly spaced bins in symlog space.
- Bernoulli from a logit (continue head).
- Bounded normal (continuous actions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

sg = jax.lax.stop_gradient


def symlog(x: jax.Array) -> jax.Array:
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x: jax.Array) -> jax.Array:
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


# ---------------------------------------------------------------- categorical with unimix


def unimix_logits(logits: jax.Array, unimix: float) -> jax.Array:
    """Log-probabilities of ``(1 - unimix) * softmax(logits) + unimix / classes``."""
    probs = jax.nn.softmax(logits.astype(jnp.float32), -1)
    if unimix:
        probs = (1 - unimix) * probs + unimix / probs.shape[-1]
    return jnp.log(probs)


def onehot_sample(key: jax.Array, logits: jax.Array) -> jax.Array:
    """One-hot sample whose gradient is that of the probabilities (straight-through)."""
    probs = jax.nn.softmax(logits, -1)
    index = jax.random.categorical(key, logits, -1)
    sample = jax.nn.one_hot(index, logits.shape[-1], dtype=probs.dtype)
    return sample + probs - sg(probs)


def onehot_mode(logits: jax.Array) -> jax.Array:
    probs = jax.nn.softmax(logits, -1)
    sample = jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1], dtype=probs.dtype)
    return sample + probs - sg(probs)


def categorical_logp(logits: jax.Array, onehot: jax.Array) -> jax.Array:
    return (jax.nn.log_softmax(logits, -1) * onehot).sum(-1)


def categorical_entropy(logits: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits, -1)
    return -(jnp.exp(logp) * logp).sum(-1)


def categorical_kl(logits_p: jax.Array, logits_q: jax.Array) -> jax.Array:
    """KL(p || q) over the last axis."""
    logp = jax.nn.log_softmax(logits_p, -1)
    logq = jax.nn.log_softmax(logits_q, -1)
    return (jnp.exp(logp) * (logp - logq)).sum(-1)


# ---------------------------------------------------------------- two-hot symlog regression


def symlog_bins(num: int, limit: float = 20.0) -> jax.Array:
    """``num`` (odd) bin centres evenly spaced over [-limit, limit] in symlog space, exactly
    symmetric around zero; their symexp spans about +-4.8e8 for limit 20."""
    if num % 2 != 1:
        raise ValueError(f"the number of bins must be odd so that zero is a bin, got {num}")
    half = jnp.linspace(0.0, limit, (num + 1) // 2)
    return jnp.concatenate([-half[:0:-1], half])


def twohot_encode(target: jax.Array, bins: jax.Array, squash: bool = True) -> jax.Array:
    """Spread each target (symlog of it when ``squash``: bins in symlog space) over its two
    neighbouring bins, weighted by closeness."""
    x = target.astype(jnp.float32)
    x = symlog(x) if squash else x
    bins = jnp.asarray(bins)
    n = bins.shape[0]
    below = jnp.clip((bins <= x[..., None]).sum(-1) - 1, 0, n - 1)
    above = jnp.clip(n - (bins > x[..., None]).sum(-1), 0, n - 1)
    equal = below == above
    dist_below = jnp.where(equal, 1.0, jnp.abs(bins[below] - x))
    dist_above = jnp.where(equal, 1.0, jnp.abs(bins[above] - x))
    total = dist_below + dist_above
    return (jax.nn.one_hot(below, n) * (dist_above / total)[..., None]
            + jax.nn.one_hot(above, n) * (dist_below / total)[..., None])


def twohot_loss(logits: jax.Array, target: jax.Array, bins: jax.Array, squash: bool = True) -> jax.Array:
    """Cross-entropy between the two-hot encoded target and the predicted bin distribution."""
    weights = twohot_encode(sg(target), bins, squash)
    return -(weights * jax.nn.log_softmax(logits.astype(jnp.float32), -1)).sum(-1)


def twohot_mean(logits: jax.Array, bins: jax.Array, squash: bool = True) -> jax.Array:
    """The expected bin (its symexp when ``squash``: bins in symlog space). Sums the two halves from the middle outwards so that uniform
    probabilities over symmetric bins give exactly zero (zero-initialised heads predict 0)."""
    probs = jax.nn.softmax(logits.astype(jnp.float32), -1)
    bins = jnp.asarray(bins)
    m = (bins.shape[0] - 1) // 2
    left = (probs[..., :m] * bins[:m])[..., ::-1]
    right = probs[..., -m:] * bins[-m:]
    middle = (probs[..., m:-m] * bins[m:-m]).sum(-1)
    mean = middle + (left + right).sum(-1)
    return symexp(mean) if squash else mean


# ---------------------------------------------------------------- Bernoulli


def bernoulli_logp(logit: jax.Array, value: jax.Array) -> jax.Array:
    logit = logit.astype(jnp.float32)
    return value * jax.nn.log_sigmoid(logit) + (1 - value) * jax.nn.log_sigmoid(-logit)


# ---------------------------------------------------------------- bounded normal


def bounded_normal(raw: jax.Array, minstd: float, maxstd: float) -> tuple[jax.Array, jax.Array]:
    """Split raw outputs into a tanh-bounded mean and a std in [minstd, maxstd]."""
    mean, std = jnp.split(raw.astype(jnp.float32), 2, -1)
    return jnp.tanh(mean), (maxstd - minstd) * jax.nn.sigmoid(std + 2.0) + minstd


def normal_logp(mean: jax.Array, std: jax.Array, value: jax.Array) -> jax.Array:
    z = (value - mean) / std
    return (-0.5 * z**2 - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi)).sum(-1)


def normal_entropy(std: jax.Array) -> jax.Array:
    return (0.5 * jnp.log(2 * jnp.pi * jnp.e) + jnp.log(std)).sum(-1)
