"""Recurrent state-space model: a block GRU deterministic state and categorical stochastic latents.

A model state is a dict ``{"deter": (..., deter), "stoch": (..., stoch, classes)}``; its feature
vector for heads is ``concat(deter, flatten(stoch))``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from . import dists
from .nets import INIT, MLP, BlockLinear, Dense, Norm

sg = jax.lax.stop_gradient


class RSSM(nnx.Module):
    def __init__(self, token_size: int, action_size: int, cfg, dtype, rngs: nnx.Rngs):
        self.deter, self.stoch, self.classes, self.blocks = cfg.deter, cfg.stoch, cfg.classes, cfg.blocks
        self.unimix, self.free_nats, self.dtype = cfg.unimix, cfg.free_nats, dtype
        hidden, g, latent = cfg.hidden, cfg.blocks, cfg.stoch * cfg.classes
        self.in_deter = Dense(cfg.deter, hidden, dtype, rngs)
        self.in_stoch = Dense(latent, hidden, dtype, rngs)
        self.in_action = Dense(action_size, hidden, dtype, rngs)
        self.dyn = BlockLinear(cfg.deter + 3 * hidden * g, cfg.deter, g, dtype, rngs)
        self.dyn_norm = Norm(cfg.deter, dtype, rngs)
        self.gates = BlockLinear(cfg.deter, 3 * cfg.deter, g, dtype, rngs)
        self.prior_mlp = MLP(cfg.deter, 2, hidden, dtype, rngs)
        self.prior_out = nnx.Linear(hidden, latent, dtype=dtype, kernel_init=INIT, rngs=rngs)
        self.post_mlp = MLP(cfg.deter + token_size, 1, hidden, dtype, rngs)
        self.post_out = nnx.Linear(hidden, latent, dtype=dtype, kernel_init=INIT, rngs=rngs)

    @property
    def feat_size(self) -> int:
        return self.deter + self.stoch * self.classes

    def initial(self, batch: int) -> dict:
        return {"deter": jnp.zeros((batch, self.deter), jnp.float32),
                "stoch": jnp.zeros((batch, self.stoch, self.classes), jnp.float32)}

    def feat(self, state: dict) -> jax.Array:
        stoch = state["stoch"].reshape(*state["stoch"].shape[:-2], -1)
        return jnp.concatenate([state["deter"], stoch], -1)

    def _core(self, deter: jax.Array, stoch: jax.Array, action: jax.Array) -> jax.Array:
        """One block-GRU step of the deterministic state."""
        action = action / sg(jnp.maximum(1.0, jnp.abs(action)))
        x = jnp.concatenate([self.in_deter(deter), self.in_stoch(stoch.reshape(*stoch.shape[:-2], -1)),
                             self.in_action(action)], -1)
        g = self.blocks
        x = jnp.repeat(x[..., None, :], g, -2)
        x = jnp.concatenate([deter.astype(self.dtype).reshape(*deter.shape[:-1], g, -1), x], -1)
        x = jax.nn.silu(self.dyn_norm(self.dyn(x)))
        gates = self.gates(x.reshape(*x.shape[:-1], g, -1))
        reset, cand, update = jnp.split(gates.reshape(*gates.shape[:-1], g, -1).astype(jnp.float32), 3, -1)
        flat = lambda t: t.reshape(*t.shape[:-2], -1)
        reset, cand, update = flat(reset), flat(cand), flat(update)
        cand = jnp.tanh(jax.nn.sigmoid(reset) * cand)
        update = jax.nn.sigmoid(update - 1.0)
        return update * cand + (1 - update) * deter

    def _logits(self, x: jax.Array) -> jax.Array:
        logits = x.reshape(*x.shape[:-1], self.stoch, self.classes)
        return dists.unimix_logits(logits, self.unimix)

    def prior(self, deter: jax.Array) -> jax.Array:
        return self._logits(self.prior_out(self.prior_mlp(deter)))

    def posterior(self, deter: jax.Array, token: jax.Array) -> jax.Array:
        x = jnp.concatenate([deter.astype(self.dtype), token.astype(self.dtype)], -1)
        return self._logits(self.post_out(self.post_mlp(x)))

    def obs_step(self, state: dict, prev_action: jax.Array, token: jax.Array, is_first: jax.Array,
                 key: jax.Array) -> tuple[dict, jax.Array]:
        """Advance with an observation; state and action are zeroed where ``is_first``."""
        keep = 1.0 - is_first.astype(jnp.float32)
        state = jax.tree.map(lambda x: x * keep.reshape(-1, *[1] * (x.ndim - 1)), state)
        prev_action = prev_action * keep[:, None]
        deter = self._core(state["deter"], state["stoch"], prev_action)
        logits = self.posterior(deter, token)
        return {"deter": deter, "stoch": dists.onehot_sample(key, logits)}, logits

    def img_step(self, state: dict, action: jax.Array, key: jax.Array) -> dict:
        """Advance without an observation, sampling the stochastic state from the prior."""
        deter = self._core(state["deter"], state["stoch"], action)
        return {"deter": deter, "stoch": dists.onehot_sample(key, self.prior(deter))}

    def observe(self, state: dict, tokens: jax.Array, prev_actions: jax.Array, is_first: jax.Array,
                key: jax.Array) -> tuple[dict, jax.Array]:
        """Filter a (B, T) sequence; returns posterior states and logits with a (B, T) prefix."""
        keys = jax.random.split(key, tokens.shape[1])

        def step(carry, inputs):
            token, action, first, k = inputs
            carry, logits = self.obs_step(carry, action, token, first, k)
            return carry, (carry, logits)

        swap = lambda x: jnp.swapaxes(x, 0, 1)
        _, (states, logits) = jax.lax.scan(step, state, (swap(tokens), swap(prev_actions), swap(is_first), keys))
        return jax.tree.map(swap, states), swap(logits)

    def imagine(self, start: dict, policy, horizon: int, key: jax.Array) -> tuple[dict, jax.Array]:
        """Roll out ``policy(feat, key) -> action`` from ``start`` (N, ...) for ``horizon`` steps.

        Returns states (N, horizon + 1, ...) including the start and the action taken in each.
        """
        keys = jax.random.split(key, horizon + 1)

        def step(state, k):
            k_act, k_img = jax.random.split(k)
            action = policy(self.feat(state), k_act)
            return self.img_step(state, action, k_img), (state, action)

        last, (states, actions) = jax.lax.scan(step, start, keys[:-1])
        last_action = policy(self.feat(last), keys[-1])
        states = jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]], 0), states, last)
        actions = jnp.concatenate([actions, last_action[None]], 0)
        swap = lambda x: jnp.swapaxes(x, 0, 1)
        return jax.tree.map(swap, states), swap(actions)

    def kl_losses(self, post_logits: jax.Array, prior_logits: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Dynamics loss KL(sg(post) || prior) and representation loss KL(post || sg(prior)), each
        summed over latents and clipped below at ``free_nats``."""
        dyn = dists.categorical_kl(sg(post_logits), prior_logits).sum(-1)
        rep = dists.categorical_kl(post_logits, sg(prior_logits)).sum(-1)
        return jnp.maximum(dyn, self.free_nats), jnp.maximum(rep, self.free_nats)
