"""The DreamerV3 agent: world model, actor and critic, trained by one jitted step.

Replayed batches are dicts of (B, T, ...) numpy arrays holding the observation keys plus
``action`` (in the env's format), ``reward``, ``is_first``, ``is_last`` and ``is_terminal``.
The action stored at step t is the one taken after observing step t.

Replay context (``model.replay_context`` = K, as the reference's): the replay keeps each step's
posterior latent (``latent/deter`` float16, ``latent/stoch`` uint8 class indices; fresh steps hold
the fill values, which decode to the zero initial state) and samples K steps more than are trained.
The train step starts the trained window (steps K..) from the stored latent of step K-1 and the
action taken there, and returns the window's new posterior latents for the replay to keep. A
trained step that starts an episode resets to the initial state as in acting.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from cardreamer.training import checkpoint

from . import dists, returns
from .config import NO_CLASS
from .nets import Decoder, Encoder, Head
from .optim import make_optimizer
from .rssm import RSSM

CHECKPOINT_FORMAT = "cardreamer-dreamerv3-2"
LATENT_KEYS = ("latent/deter", "latent/stoch")


def _leaf_name(path: tuple) -> str:
    """A state leaf's place as ``params/encoder/conv0/kernel``."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)

sg = jax.lax.stop_gradient


def split_keys(obs_space: gym.spaces.Dict, cnn_pattern: str, mlp_pattern: str) -> tuple[dict, dict]:
    """Image keys (H, W, C uint8 boxes) matching ``cnn_pattern`` and flat vector keys matching
    ``mlp_pattern``: returns ({key: (H, W, C)}, {key: size})."""
    images, vectors = {}, {}
    for key, space in obs_space.spaces.items():
        if not isinstance(space, gym.spaces.Box):
            raise TypeError(f"observation key {key!r}: only Box spaces are supported, got {space}")
        if len(space.shape) == 3 and space.dtype == np.uint8:
            if re.fullmatch(cnn_pattern, key):
                images[key] = tuple(space.shape)
        elif len(space.shape) == 1:
            if re.fullmatch(mlp_pattern, key):
                vectors[key] = int(space.shape[0])
        else:
            raise ValueError(f"observation key {key!r}: expected an HxWxC uint8 image or a flat vector, got "
                             f"shape {space.shape} dtype {space.dtype} (flatten it with the loop's env wrapper)")
    return images, vectors


class Networks(nnx.Module):
    """All trainable networks: encoder, RSSM, decoder, reward/continue heads, actor, critic."""

    def __init__(self, obs_space: gym.spaces.Dict, act_space: gym.Space, cfg, dtype, seed: int):
        rngs = nnx.Rngs(jax.random.key(seed))
        enc_images, enc_vectors = split_keys(obs_space, cfg.cnn_keys, cfg.mlp_keys)
        dec_images, dec_vectors = split_keys(obs_space, cfg.dec_cnn_keys or cfg.cnn_keys,
                                             cfg.dec_mlp_keys or cfg.mlp_keys)
        if not enc_images and not enc_vectors:
            raise ValueError(f"no observation key matches model.cnn_keys={cfg.cnn_keys!r} or "
                             f"model.mlp_keys={cfg.mlp_keys!r}; keys: {list(obs_space.spaces)}")
        self.discrete = isinstance(act_space, gym.spaces.Discrete)
        self.action_size = int(act_space.n) if self.discrete else int(np.prod(act_space.shape))
        self.encoder = Encoder(enc_images, enc_vectors, cfg, dtype, rngs)
        self.rssm = RSSM(self.encoder.out_size, self.action_size, cfg, dtype, rngs)
        feat = self.rssm.feat_size
        self.decoder = Decoder(cfg.deter, cfg.stoch * cfg.classes, dec_images, dec_vectors, cfg, dtype, rngs)
        self.reward = Head(feat, cfg.head_layers, cfg.units, cfg.bins, dtype, rngs, out_scale=0.0)
        self.cont = Head(feat, cfg.head_layers, cfg.units, 1, dtype, rngs)
        actor_out = self.action_size if self.discrete else 2 * self.action_size
        self.actor = Head(feat, cfg.ac_layers, cfg.units, actor_out, dtype, rngs, out_scale=cfg.policy_outscale)
        self.critic = Head(feat, cfg.ac_layers, cfg.units, cfg.bins, dtype, rngs, out_scale=0.0)


def count_params(obs_space: gym.spaces.Dict, act_space: gym.Space, cfg) -> dict[str, int]:
    """Parameter counts per network, computed abstractly (no allocation)."""
    abstract = nnx.eval_shape(lambda: Networks(obs_space, act_space, cfg, jnp.float32, 0))
    counts = {}
    for name in ("encoder", "rssm", "decoder", "reward", "cont", "actor", "critic"):
        leaves = jax.tree.leaves(nnx.state(getattr(abstract, name), nnx.Param))
        counts[name] = int(sum(np.prod(x.shape) for x in leaves))
    counts["total"] = sum(counts.values())
    return counts


def resolve_dtype(name: str):
    if name == "auto":
        return jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


class Model:
    """The pure parts of the agent: network structure, losses and jitted steps. Hashable by its
    configuration and spaces, so agents built alike share compiled functions."""

    def __init__(self, obs_space: gym.spaces.Dict, act_space: gym.Space, cfg, seed: int, abstract: bool = False):
        """With ``abstract``, parameters are shape/dtype placeholders (nothing is allocated)."""
        if not isinstance(act_space, (gym.spaces.Discrete, gym.spaces.Box)):
            raise TypeError(f"action space {act_space}: only Discrete(n) and Box are supported")
        self.cfg, self.obs_space, self.act_space = cfg, obs_space, act_space
        self._key = (repr(sorted(cfg.model_dump().items())), repr(obs_space), repr(act_space))
        nets = nnx.eval_shape(lambda: self.build(seed))
        self.graphdef, self._initial_params = nnx.split(nets, nnx.Param)
        if not abstract:
            self._initial_params = _initial_params(self, seed)
        self.critic_graphdef = nnx.graphdef(nets.critic)
        self.discrete, self.action_size = nets.discrete, nets.action_size
        self.image_keys = list(nets.decoder.image_keys)
        self.obs_keys = list(obs_space.spaces)
        # Reward and value bins: at symexp-spaced values, interpolated in raw space (the reference's
        # 'symexp_twohot'), or evenly spaced in symlog space (the 2023 paper's form).
        self.squash = cfg.twohot_space == "symlog"
        bins = dists.symlog_bins(cfg.bins)
        self.bins = np.asarray(bins if self.squash else dists.symexp(bins))
        if not self.discrete:
            self.act_low = np.asarray(act_space.low, np.float32).ravel()
            self.act_high = np.asarray(act_space.high, np.float32).ravel()
            self.act_bounded = bool(np.all(np.isfinite(self.act_low)) and np.all(np.isfinite(self.act_high)))
        self.optimizer = make_optimizer(cfg.lr, cfg.warmup, cfg.agc, cfg.eps, cfg.beta1, cfg.beta2)

    def build(self, seed) -> Networks:
        return Networks(self.obs_space, self.act_space, self.cfg, resolve_dtype(self.cfg.compute_dtype), seed)

    def take_initial_params(self) -> nnx.State:
        """Hand over the initial parameters (once; the model keeps no copy)."""
        return self.__dict__.pop("_initial_params")

    def init_state(self, params: nnx.State, seed) -> dict:
        """The training state: params, slow critic, optimizer state, return normaliser, RNG key."""
        return {
            "params": params,
            "slow_critic": jax.tree.map(jnp.copy, params["critic"]),
            "opt": self.optimizer.init(params),
            "retnorm": returns.init_percentiles(),
            "key": jax.random.key(seed),
            "updates": jnp.zeros((), jnp.int32),
        }

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other) -> bool:
        return isinstance(other, Model) and self._key == other._key

    # ------------------------------------------------------------------ action formats

    def _to_model_action(self, action: jax.Array) -> jax.Array:
        """Env actions -> model actions (one-hot, or scaled to [-1, 1])."""
        if self.discrete:
            return jax.nn.one_hot(action.astype(jnp.int32), self.action_size)
        action = action.reshape(*action.shape[:action.ndim - len(self.act_space.shape)], -1).astype(jnp.float32)
        if self.act_bounded:
            action = 2 * (action - self.act_low) / (self.act_high - self.act_low) - 1
        return action

    def _to_env_action(self, action: jax.Array) -> jax.Array:
        if self.discrete:
            return jnp.argmax(action, -1).astype(jnp.int32)
        action = jnp.clip(action, -1, 1)
        if self.act_bounded:
            action = self.act_low + (action + 1) / 2 * (self.act_high - self.act_low)
        return action.reshape(*action.shape[:-1], *self.act_space.shape)

    # ------------------------------------------------------------------ policy distribution

    def _act_sample(self, nets: Networks, feat: jax.Array, key: jax.Array, greedy: bool = False) -> jax.Array:
        raw = nets.actor(feat)
        if self.discrete:
            logits = dists.unimix_logits(raw, self.cfg.unimix)
            return dists.onehot_mode(logits) if greedy else dists.onehot_sample(key, logits)
        mean, std = dists.bounded_normal(raw, self.cfg.minstd, self.cfg.maxstd)
        return mean if greedy else mean + std * jax.random.normal(key, mean.shape)

    def _act_logp_entropy(self, nets: Networks, feat: jax.Array, action: jax.Array) -> tuple[jax.Array, jax.Array]:
        raw = nets.actor(feat)
        if self.discrete:
            logits = dists.unimix_logits(raw, self.cfg.unimix)
            return dists.categorical_logp(logits, action), dists.categorical_entropy(logits)
        mean, std = dists.bounded_normal(raw, self.cfg.minstd, self.cfg.maxstd)
        return dists.normal_logp(mean, std, action), dists.normal_entropy(std)

    # ------------------------------------------------------------------ acting

    def _policy_step(self, params, carry, obs, key, greedy: bool):
        nets = nnx.merge(self.graphdef, params)
        token = nets.encoder(obs)
        k_obs, k_act = jax.random.split(key)
        state, _ = nets.rssm.obs_step(carry["state"], carry["prev_action"], token, obs["is_first"], k_obs)
        action = sg(self._act_sample(nets, nets.rssm.feat(state), k_act, greedy))
        return self._to_env_action(action), {"state": state, "prev_action": action}

    # ------------------------------------------------------------------ replay context

    def replay_latents(self) -> dict[str, np.ndarray]:
        """Per-step fill values of the latents the replay keeps (none without replay context)."""
        if not self.cfg.replay_context:
            return {}
        return {"latent/deter": np.zeros(self.cfg.deter, np.float16),
                "latent/stoch": np.full(self.cfg.stoch, NO_CLASS, np.uint8)}

    def zero_start(self, batch: int) -> dict:
        """The start of a sequence without context: the initial state and no previous action."""
        return {"deter": jnp.zeros((batch, self.cfg.deter), jnp.float32),
                "stoch": jnp.zeros((batch, self.cfg.stoch, self.cfg.classes), jnp.float32),
                "prev_action": jnp.zeros((batch, self.action_size), jnp.float32)}

    def has_context(self, batch: dict) -> bool:
        """Whether ``batch`` is trained with replay context (configured, and latents stored)."""
        return bool(self.cfg.replay_context) and "latent/deter" in batch

    def split_context(self, batch: dict) -> tuple[dict, dict]:
        """(trained window, start) of a replayed batch. With replay context and stored latents, the
        window drops the K context steps and starts from the latent and action of step K-1; a batch
        without latents (or ``replay_context=0``) is trained whole from ``zero_start``."""
        k = self.cfg.replay_context
        b = batch["is_first"].shape[0]
        if not self.has_context(batch):
            return {n: v for n, v in batch.items() if n not in LATENT_KEYS}, self.zero_start(b)
        start = {"deter": jnp.asarray(batch["latent/deter"][:, k - 1], jnp.float32),
                 "stoch": jax.nn.one_hot(batch["latent/stoch"][:, k - 1], self.cfg.classes, dtype=jnp.float32),
                 "prev_action": self._to_model_action(jnp.asarray(batch["action"][:, k - 1]))}
        return {n: v[:, k:] for n, v in batch.items() if n not in LATENT_KEYS}, start

    @staticmethod
    def encode_latents(states: dict) -> dict:
        """Posterior states (B, T, ...) as the replay stores them."""
        return {"latent/deter": states["deter"].astype(jnp.float16),
                "latent/stoch": jnp.argmax(states["stoch"], -1).astype(jnp.uint8)}

    # ------------------------------------------------------------------ training

    def _twohot_loss(self, logits: jax.Array, target: jax.Array) -> jax.Array:
        return dists.twohot_loss(logits, target, self.bins, self.squash)

    def _twohot_mean(self, logits: jax.Array) -> jax.Array:
        return dists.twohot_mean(logits, self.bins, self.squash)

    def _world_model_loss(self, nets: Networks, batch: dict, key: jax.Array, start: dict | None = None):
        """Losses of the world model on ``batch`` observed from ``start`` (see ``split_context``;
        default ``zero_start``)."""
        if start is None:
            start = self.zero_start(batch["is_first"].shape[0])
        action = self._to_model_action(batch["action"])
        prev_action = jnp.concatenate([start["prev_action"][:, None], action[:, :-1]], 1)
        tokens = nets.encoder(batch)
        carry = {"deter": start["deter"], "stoch": start["stoch"]}
        states, post = nets.rssm.observe(carry, tokens, prev_action, batch["is_first"], key)
        prior = nets.rssm.prior(states["deter"])
        dyn, rep = nets.rssm.kl_losses(post, prior)
        feat = nets.rssm.feat(states)
        recon = nets.decoder(feat)
        rec = 0.0
        for key_, pred in recon.items():
            if key_ in self.image_keys:
                target = batch[key_].astype(jnp.float32) / 255.0
                rec = rec + ((pred - target) ** 2).sum((-3, -2, -1))
            else:
                target = dists.symlog(batch[key_].astype(jnp.float32))
                rec = rec + ((pred.astype(jnp.float32) - target) ** 2).sum(-1)
        losses = {
            "rec": rec,
            "rew": self._twohot_loss(nets.reward(feat), batch["reward"]),
            "con": -dists.bernoulli_logp(nets.cont(feat)[..., 0], 1.0 - batch["is_terminal"].astype(jnp.float32)),
            "dyn": dyn,
            "rep": rep,
        }
        metrics = {
            "dyn_kl": dists.categorical_kl(post, prior).sum(-1).mean(),
            "post_entropy": dists.categorical_entropy(post).sum(-1).mean(),
            "prior_entropy": dists.categorical_entropy(prior).sum(-1).mean(),
        }
        return losses, metrics, states, feat

    def _loss(self, params, slow_critic, retnorm, batch, key, start=None):
        cfg = self.cfg
        nets = nnx.merge(self.graphdef, params)
        slow = nnx.merge(self.critic_graphdef, slow_critic)
        k_wm, k_img = jax.random.split(key)
        losses, metrics, states, feat = self._world_model_loss(nets, batch, k_wm, start)
        b, t = feat.shape[:2]
        k = min(cfg.imag_last, t) if cfg.imag_last else t  # imagine from the last k replayed states
        disc = 1.0 - 1.0 / cfg.horizon

        # Imagination from replayed posterior states; the world model gets no gradient here.
        start = jax.tree.map(lambda x: sg(x[:, -k:].reshape(b * k, *x.shape[2:])), states)
        policy = lambda f, k: sg(self._act_sample(nets, sg(f), k))
        img_states, img_actions = nets.rssm.imagine(start, policy, cfg.imag_horizon, k_img)
        img_feat = sg(nets.rssm.feat(img_states))
        rew = self._twohot_mean(nets.reward(img_feat))
        con = jax.nn.sigmoid(nets.cont(img_feat)[..., 0])
        critic_logits = nets.critic(img_feat)
        slow_val = self._twohot_mean(slow(img_feat))
        # Returns bootstrap from, and advantages subtract, the online critic (the reference's
        # slowtar=False); the slow critic only regularises. ``model.slow_targets`` uses the slow one.
        val = slow_val if cfg.slow_targets else sg(self._twohot_mean(critic_logits))
        weight = sg(jnp.cumprod(disc * con, 1) / disc)
        ret = returns.lambda_return(jnp.zeros_like(con), 1 - con, rew, val, disc, cfg.lam)
        retnorm = returns.update_percentiles(retnorm, ret, cfg.retnorm_rate)
        scale = returns.return_scale(retnorm, cfg.retnorm_limit, cfg.retnorm_debias)
        adv = sg((ret - val[:, :-1]) / scale)
        logp, ent = self._act_logp_entropy(nets, img_feat, sg(img_actions))
        losses["policy"] = weight[:, :-1] * -(logp[:, :-1] * adv + cfg.actent * ent[:, :-1])
        critic_logits = critic_logits[:, :-1]
        losses["value"] = weight[:, :-1] * (
            self._twohot_loss(critic_logits, sg(ret)) + cfg.slowreg * self._twohot_loss(critic_logits, sg(slow_val[:, :-1])))

        # Critic also regresses λ-returns on the replayed trajectory, bootstrapped by imagination;
        # with ``model.repval_grad`` (the reference's) this loss trains the world model's features too.
        rep_feat = feat[:, -k:] if cfg.repval_grad else sg(feat[:, -k:])
        rep_slow = self._twohot_mean(slow(sg(rep_feat)))
        boot = sg(ret[:, 0].reshape(b, k))
        last, term = (batch[key][:, -k:].astype(jnp.float32) for key in ("is_last", "is_terminal"))
        rep_ret = returns.lambda_return(last, term, batch["reward"][:, -k:].astype(jnp.float32), boot, disc, cfg.lam)
        rep_logits = nets.critic(rep_feat)[:, :-1]
        losses["repval"] = (1 - last[:, :-1]) * (
            self._twohot_loss(rep_logits, sg(rep_ret)) + cfg.slowreg * self._twohot_loss(rep_logits, sg(rep_slow[:, :-1])))

        total = sum(getattr(cfg.loss_scales, k) * v.mean() for k, v in losses.items())
        metrics.update({f"loss/{k}": v.mean() for k, v in losses.items()})
        metrics.update({
            "ret_mean": ret.mean(), "ret_scale": scale, "adv_mag": jnp.abs(adv).mean(),
            "actor_entropy": ent.mean(), "imag_reward": rew.mean(), "imag_cont": con.mean(),
            "value_mean": self._twohot_mean(critic_logits).mean(),
        })
        return total, (metrics, retnorm, sg(states))

    def _train_step(self, state, batch, start=None):
        """One update on ``batch`` observed from ``start`` (default ``zero_start``); returns the new
        state, the metrics and the batch's posterior states (B, T, ...)."""
        key, k_loss = jax.random.split(state["key"])
        grad_fn = jax.value_and_grad(self._loss, has_aux=True)
        (total, (metrics, retnorm, states)), grads = grad_fn(
            state["params"], state["slow_critic"], state["retnorm"], batch, k_loss, start)
        updates, opt = self.optimizer.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        rate = self.cfg.slow_rate
        slow = jax.tree.map(lambda s, p: (1 - rate) * s + rate * p, state["slow_critic"], params["critic"])
        metrics.update({"loss/total": total, "grad_norm": optax.global_norm(grads),
                        "param_norm": optax.global_norm(params)})
        new_state = {"params": params, "slow_critic": slow, "opt": opt, "retnorm": retnorm, "key": key,
                     "updates": state["updates"] + 1}
        return new_state, metrics, {"deter": states["deter"], "stoch": states["stoch"]}

    # ------------------------------------------------------------------ open-loop report

    def _report_step(self, params, batch, key):
        nets = nnx.merge(self.graphdef, params)
        context = min(self.cfg.report_context, batch["is_first"].shape[1] - 1)
        action = self._to_model_action(batch["action"])
        prev_action = jnp.concatenate([jnp.zeros_like(action[:, :1]), action[:, :-1]], 1)
        tokens = nets.encoder(batch)
        b = tokens.shape[0]
        k_obs, k_img = jax.random.split(key)
        states, _ = nets.rssm.observe(nets.rssm.initial(b), tokens[:, :context], prev_action[:, :context],
                                      batch["is_first"][:, :context], k_obs)
        last = jax.tree.map(lambda x: x[:, -1], states)

        def step(state, inputs):
            act, k = inputs
            state = nets.rssm.img_step(state, act, k)
            return state, state

        keys = jax.random.split(k_img, action.shape[1] - context)
        _, imagined = jax.lax.scan(step, last, (jnp.swapaxes(prev_action[:, context:], 0, 1), keys))
        imagined = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), imagined)
        feat = jnp.concatenate([nets.rssm.feat(states), nets.rssm.feat(imagined)], 1)
        recon = nets.decoder(feat)
        return {k: recon[k] for k in self.image_keys}


@functools.partial(jax.jit, static_argnums=0)
def _initial_params(model: Model, seed):
    """All parameters initialised by one compiled function (not one per parameter shape)."""
    return nnx.split(model.build(seed), nnx.Param)[1]


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def _train(model: Model, state, batch):
    window, start = model.split_context(batch)
    new_state, metrics, states = model._train_step(state, window, start)
    return new_state, metrics, model.encode_latents(states) if model.has_context(batch) else None


@functools.partial(jax.jit, static_argnums=(0, 5))
def _policy(model: Model, params, carry, obs, key, greedy: bool):
    return model._policy_step(params, carry, obs, key, greedy)


@functools.partial(jax.jit, static_argnums=0)
def _report(model: Model, params, batch, key):
    return model._report_step(params, batch, key)


class DreamerV3:
    """DreamerV3 backbone: ``policy``, ``train``, ``report``, ``save``/``load``."""

    def __init__(self, obs_space: gym.spaces.Dict, act_space: gym.Space, config):
        self.config, self.obs_space, self.act_space = config, obs_space, act_space
        self.model = Model(obs_space, act_space, config.model, config.seed)
        self.state = self.model.init_state(self.model.take_initial_params(), config.seed)
        self._policy_key = jax.random.key(config.seed + 1)

    def initial_policy_state(self, batch: int) -> dict:
        state = {"deter": np.zeros((batch, self.model.cfg.deter), np.float32),
                 "stoch": np.zeros((batch, self.model.cfg.stoch, self.model.cfg.classes), np.float32)}
        return {"state": state, "prev_action": np.zeros((batch, self.model.action_size), np.float32)}

    @property
    def batch_size(self) -> int:
        """Sequences per training batch (``model.batch_size``)."""
        return int(self.model.cfg.batch_size)

    @property
    def batch_length(self) -> int:
        """Trained steps per sequence (``model.batch_length``), after the replay context."""
        return int(self.model.cfg.batch_length)

    @property
    def replay_context(self) -> int:
        """Steps sampled before each trained window, whose stored latent starts it (0: none)."""
        return int(self.model.cfg.replay_context)

    @property
    def replay_latents(self) -> dict[str, np.ndarray]:
        """Per-step fill values of the latents a replay keeps for this agent."""
        return self.model.replay_latents()

    @property
    def eval_policy(self) -> str:
        """How 'eval' mode acts: 'sample' or 'greedy' (``model.eval_policy``)."""
        return self.model.cfg.eval_policy

    def policy(self, obs: dict, state: Any = None, mode: str = "train") -> tuple[np.ndarray, Any]:
        """Actions for a batch of observations (dict of (N, ...) arrays incl. ``is_first``).

        ``mode`` 'train' samples from the policy; 'eval' samples too unless ``model.eval_policy`` is
        'greedy', which takes the policy's mode."""
        if mode not in ("train", "eval"):
            raise ValueError(f"policy mode must be 'train' or 'eval', got {mode!r}")
        if state is None:
            state = self.initial_policy_state(len(obs["is_first"]))
        inputs = {k: obs[k] for k in self.model.obs_keys}
        inputs["is_first"] = np.asarray(obs["is_first"], bool)
        self._policy_key, key = jax.random.split(self._policy_key)
        greedy = mode == "eval" and self.eval_policy == "greedy"
        action, state = _policy(self.model, self.state["params"], state, inputs, key, greedy)
        return np.asarray(action), state

    def _prepare(self, batch: dict, latents: bool = False) -> dict:
        keys = self.model.obs_keys + ["action", "reward", "is_first", "is_last", "is_terminal"]
        missing = [k for k in keys if k not in batch]
        if missing:
            raise KeyError(f"batch lacks keys {missing}; it has {sorted(batch)}")
        stored = [k for k in LATENT_KEYS if k in batch]
        if latents and self.replay_context and stored:
            if len(stored) < len(LATENT_KEYS):
                raise KeyError(f"batch holds {stored} but not all of the stored latents {list(LATENT_KEYS)}")
            keys += stored
        return {k: batch[k] for k in keys}

    def train(self, batch: dict, state: Any = None) -> tuple[Any, dict]:
        """One update on a (B, T) batch; returns (outputs, metrics). With replay context K and a batch
        holding the stored latents (from a replay built with ``replay_latents``, sequences of K + T
        steps), outputs is ``{"replay": latents}``: the new latents (B, T) of the trained steps, for
        ``Replay.update(positions, latents, offset=K)``; otherwise outputs is ``state``, unused."""
        self.state, metrics, latents = _train(self.model, self.state, self._prepare(batch, latents=True))
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        return ({"replay": jax.device_get(latents)} if latents is not None else state), metrics

    def report(self, batch: dict, max_rows: int = 4) -> dict:
        """Open-loop predictions: observe ``report_context`` steps, then imagine the rest with the
        replayed actions. Returns 'openloop/<key>' videos (T, rows*H, 2*W, 3) uint8, real on the
        left and imagined on the right, and 'openloop/<key>_mse' image errors."""
        batch = {k: np.asarray(v)[:max_rows] for k, v in self._prepare(batch).items()}
        self._policy_key, key = jax.random.split(self._policy_key)
        recon = jax.device_get(_report(self.model, self.state["params"], batch, key))
        out = {}
        for name, pred in recon.items():
            real = batch[name].astype(np.float32) / 255.0
            context = min(self.model.cfg.report_context, real.shape[1] - 1)
            out[f"openloop/{name}_mse"] = float(((pred - real)[:, context:] ** 2).mean())
            frames = np.concatenate([real, pred], 3)  # (B, T, H, 2W, C)
            frames = np.concatenate(list(frames), 1)  # (T, B*H, 2W, C)
            if frames.shape[-1] == 1:
                frames = np.repeat(frames, 3, -1)
            out[f"openloop/{name}"] = (np.clip(frames[..., :3], 0, 1) * 255).astype(np.uint8)
        return out

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str) -> None:
        """Write the full training state (params, slow critic, optimizer, normaliser) atomically,
        as plain arrays named by their place in the state (see :mod:`.checkpoint`)."""
        state = {**self.state, "key": jax.random.key_data(self.state["key"])}
        named = jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]
        arrays = {f"leaf{i:05d}": np.asarray(x) for i, (_, x) in enumerate(named)}
        manifest = {"format": CHECKPOINT_FORMAT, "paths": [_leaf_name(p) for p, _ in named]}
        checkpoint.write_arrays(path, arrays, manifest)

    def load(self, path: str) -> None:
        """Restore a state written by ``save``; refuses one of another model size, observation
        layout or format, naming the first difference."""
        arrays, manifest = checkpoint.read_arrays(path)
        if manifest.get("format") != CHECKPOINT_FORMAT:
            raise checkpoint.CheckpointError(
                f"{path}: format {manifest.get('format')!r}, expected {CHECKPOINT_FORMAT!r} (a checkpoint of another backbone?)")
        template = {**self.state, "key": jax.random.key_data(self.state["key"])}
        named, treedef = jax.tree_util.tree_flatten_with_path(template)
        paths = [_leaf_name(p) for p, _ in named]
        saved = manifest.get("paths") or []
        for i, name in enumerate(paths):
            value = arrays.get(f"leaf{i:05d}")
            if i >= len(saved) or saved[i] != name or value is None:
                found = saved[i] if i < len(saved) else "nothing"
                raise checkpoint.CheckpointError(
                    f"{path}: does not fit this model: it holds {found} where the model has {name} "
                    f"(a different backbone version or observation layout)")
            if value.shape != np.shape(named[i][1]):
                raise checkpoint.CheckpointError(
                    f"{path}: does not fit this model: {name} has shape {value.shape} in the checkpoint, "
                    f"{np.shape(named[i][1])} here (a different model size or observation layout)")
        if len(saved) != len(paths):
            raise checkpoint.CheckpointError(f"{path}: does not fit this model: it holds {len(saved)} arrays, "
                                             f"the model {len(paths)}")
        leaves = [jnp.asarray(arrays[f"leaf{i:05d}"], dtype=t.dtype) for i, (_, t) in enumerate(named)]
        state = jax.tree.unflatten(treedef, leaves)
        state["key"] = jax.random.wrap_key_data(state["key"])
        self.state = state

