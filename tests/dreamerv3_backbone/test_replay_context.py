"""Replay context: the start state a replayed window is trained from, the latents written back
into the replay at the sampled steps, their survival across a resume, and ``replay_context=0``."""

import copy

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from small_envs import DotEnv

from cardreamer.training.config import make_config
from cardreamer.training.envs import make_vector_env
from cardreamer.training.logger import NullPublisher
from cardreamer.training.loop import Collector, Trainer
from dreamerv3_backbone.agent import DreamerV3, Model
from dreamerv3_backbone.config import NO_CLASS

OBS = gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (4,), np.float32)})
ACT = gym.spaces.Discrete(3)


def _config(context: int = 1, extra=()):
    return make_config("tiny", ["model.compute_dtype=float32", f"model.replay_context={context}", *extra])


def _batch(rng, b: int, t: int, cfg, latents: bool = True) -> dict:
    batch = {"state": rng.uniform(-1, 1, (b, t, 4)).astype(np.float32), "action": rng.integers(0, 3, (b, t)),
             "reward": rng.normal(size=(b, t)).astype(np.float32), "is_first": np.zeros((b, t), bool),
             "is_last": np.zeros((b, t), bool), "is_terminal": np.zeros((b, t), bool)}
    if latents:
        batch["latent/deter"] = rng.uniform(-1, 1, (b, t, cfg.deter)).astype(np.float16)
        batch["latent/stoch"] = rng.integers(0, cfg.classes, (b, t, cfg.stoch)).astype(np.uint8)
    return batch


@pytest.fixture(scope="module")
def model():
    return Model(OBS, ACT, _config(2).model, seed=0)


def test_the_window_starts_from_the_stored_latent_and_action_of_the_step_before_it(model):
    cfg = model.cfg
    batch = _batch(np.random.default_rng(0), 3, 7, cfg)
    batch["latent/stoch"][2, 1] = NO_CLASS  # a step never trained on: 'no latent yet'
    batch["latent/deter"][2, 1] = 0
    window, start = model.split_context(batch)  # context 2: steps 2.. are trained, step 1 starts them
    assert set(window) == {"state", "action", "reward", "is_first", "is_last", "is_terminal"}
    np.testing.assert_array_equal(window["state"], batch["state"][:, 2:])
    np.testing.assert_array_equal(start["deter"], batch["latent/deter"][:, 1].astype(np.float32))
    np.testing.assert_array_equal(np.argmax(start["stoch"][:2], -1), batch["latent/stoch"][:2, 1])
    assert (np.asarray(start["stoch"][:2]).sum(-1) == 1).all()
    assert (np.asarray(start["stoch"][2]) == 0).all() and (np.asarray(start["deter"][2]) == 0).all()
    np.testing.assert_array_equal(start["prev_action"], np.eye(3)[batch["action"][:, 1]])
    # Without stored latents the batch is trained whole from the zero state.
    plain = {k: v for k, v in batch.items() if not k.startswith("latent/")}
    window, start = model.split_context(plain)
    assert window["state"].shape[1] == 7
    assert all((np.asarray(v) == 0).all() for v in start.values())


def test_a_stored_latent_changes_the_first_posterior_unless_the_window_starts_an_episode(model):
    """Row 0's trained window starts an episode (is_first), row 1's continues one: the stored
    latent reaches row 1's first posterior state and not row 0's."""
    batch = _batch(np.random.default_rng(1), 2, 6, model.cfg)
    batch["is_first"][0, 2] = True
    params = model.take_initial_params()

    @jax.jit
    def first_states(params, window, start):
        states = model._world_model_loss(nnx.merge(model.graphdef, params), window, jax.random.key(0), start)[2]
        return states["deter"][:, 0]

    window, start = model.split_context(batch)
    with_context = np.asarray(first_states(params, window, start))
    from_zero = np.asarray(first_states(params, window, model.zero_start(2)))
    np.testing.assert_allclose(with_context[0], from_zero[0], rtol=0, atol=1e-7)
    assert np.abs(with_context[1] - from_zero[1]).max() > 1e-3


def test_context_zero_trains_exactly_as_the_step_from_a_zero_carry():
    config = _config(0)
    agent = DreamerV3(OBS, ACT, config)
    rng = np.random.default_rng(2)
    b, t = config.model.batch_size, config.model.batch_length
    batch = _batch(rng, b, t, config.model)  # stored latents are ignored without replay context
    state = jax.tree.map(jnp.copy, agent.state)
    outputs, metrics = agent.train(batch, "carry")
    assert outputs == "carry" and agent.replay_latents == {} and agent.replay_context == 0
    window = {k: v for k, v in batch.items() if not k.startswith("latent/")}
    _, expected, _ = jax.jit(agent.model._train_step)(state, window, agent.model.zero_start(b))
    assert metrics == {k: float(v) for k, v in expected.items()}


def test_the_loop_writes_the_trained_latents_back_at_the_sampled_steps_and_a_resume_keeps_them(tmp_path):
    config = _config(1, ["run.progress=false", f"logdir={tmp_path}"])
    envs = make_vector_env(DotEnv, 2, parallel=False)
    size = config.replay.chunk_size
    try:
        trainer = Trainer(config, str(tmp_path), DotEnv, envs, NullPublisher())
        b, t = config.model.batch_size, config.model.batch_length
        assert trainer.replay.length == t + 1 and set(trainer.replay.latents) == {"latent/deter", "latent/stoch"}
        collector = Collector(envs, seed=0)
        for _ in range(50):
            trainer._collect(collector)
        before = copy.deepcopy(trainer.replay)
        _, positions = copy.deepcopy(trainer.replay).sample_with_positions(b, online=False)
        trainer._update(online=False)
        trained = {(stream, start + 1 + i) for stream, start in positions for i in range(t)}
        written = moved = 0
        for (stream, number), chunk in trainer.replay.chunks.items():
            old = before.chunks[(stream, number)]
            for i in range(min(size, trainer.replay.stream_len[stream] - number * size)):
                step = (stream, number * size + i)
                deter, stoch = chunk["latent/deter"][i], chunk["latent/stoch"][i]
                if step in trained:  # a written class index; the GRU state is bounded by 1
                    assert (stoch < config.model.classes).all() and np.abs(deter).max() <= 1
                    written += 1
                    moved += bool(np.abs(deter).max() > 0)
                else:  # untouched, still 'no latent yet'
                    np.testing.assert_array_equal(deter, old["latent/deter"][i])
                    assert (stoch == NO_CLASS).all() and (deter == 0).all()
        assert written == len(trained) >= t and moved > written / 2
        partial = {k: v for k, v in trainer.replay.sample(b).items() if k != "latent/stoch"}
        with pytest.raises(KeyError, match="not all of the stored latents"):
            trainer.agent.train(partial, None)
        trainer.save()
        resumed = Trainer(config, str(tmp_path), DotEnv, envs, NullPublisher())
        assert sorted(resumed.replay.chunks) == sorted(trainer.replay.chunks)
        for key, chunk in trainer.replay.chunks.items():
            stored = min(size, trainer.replay.stream_len[key[0]] - key[1] * size)
            for name in ("latent/deter", "latent/stoch", "image"):
                np.testing.assert_array_equal(resumed.replay.chunks[key][name][:stored], chunk[name][:stored])
    finally:
        envs.close()
