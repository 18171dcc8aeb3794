"""The DreamerV3 agent: every size traced abstractly, world-model learning on a deterministic env,
report, checkpoint round trip, continuous actions."""

import functools

import gymnasium as gym
import jax
import numpy as np
import pytest
from small_envs import DotEnv

from cardreamer.training.config import make_config
from cardreamer.training.envs import make_vector_env
from cardreamer.training.loop import Collector
from cardreamer.training.replay import Replay
from dreamerv3_backbone.agent import DreamerV3, Model, _train, count_params

NOMINAL = {"1m": 1e6, "12m": 12e6, "25m": 25e6, "50m": 50e6, "100m": 100e6, "200m": 200e6}


@pytest.mark.parametrize("size", ["tiny", "cpu", "1m", "12m", "25m", "50m", "100m", "200m"])
def test_every_size_traces_a_full_train_step_abstractly(size):
    cfg = make_config(size, ["model.batch_size=2", "model.batch_length=4", "model.compute_dtype=float32"])
    obs_space = gym.spaces.Dict({"birdeye": gym.spaces.Box(0, 255, (64, 64, 3), np.uint8),
                                 "state": gym.spaces.Box(-1, 1, (6,), np.float32)})
    act_space = gym.spaces.Discrete(15)
    model = Model(obs_space, act_space, cfg.model, seed=0, abstract=True)
    state = jax.eval_shape(model.init_state, model.take_initial_params(), 0)
    b, t = 2, 4 + cfg.model.replay_context  # the trained steps and one of replay context
    batch = {"birdeye": jax.ShapeDtypeStruct((b, t, 64, 64, 3), np.uint8),
             "state": jax.ShapeDtypeStruct((b, t, 6), np.float32),
             "action": jax.ShapeDtypeStruct((b, t), np.int32), "reward": jax.ShapeDtypeStruct((b, t), np.float32),
             **{k: jax.ShapeDtypeStruct((b, t), bool) for k in ("is_first", "is_last", "is_terminal")},
             **{k: jax.ShapeDtypeStruct((b, t, *v.shape), v.dtype) for k, v in model.replay_latents().items()}}
    new_state, metrics, latents = jax.eval_shape(functools.partial(_train, model), state, batch)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert all(m.shape == () for m in metrics.values()) and "loss/total" in metrics
    assert latents["latent/deter"].shape == (b, 4, cfg.model.deter)
    bev = gym.spaces.Dict({"birdeye": gym.spaces.Box(0, 255, (128, 128, 3), np.uint8)})
    total = count_params(bev, act_space, cfg.model)["total"]
    if size in NOMINAL:  # the reference names sizes by their parameter count
        assert 0.75 * NOMINAL[size] < total < 1.3 * NOMINAL[size], total


def test_world_model_learns_reports_and_round_trips_checkpoints(tmp_path):
    # One test, so that parallel test workers compile this agent once.
    config = make_config("tiny", ["model.compute_dtype=float32"])
    envs = make_vector_env(DotEnv, 2, parallel=False)
    agent = DreamerV3(envs.single_observation_space, envs.single_action_space, config)
    replay = Replay(config.model.batch_length, 10_000, 64, online=False, seed=0)
    collector = Collector(envs, seed=0)
    for _ in range(200):
        steps, _ = collector.step(agent, "train")
        for i in range(2):
            replay.add({k: v[i] for k, v in steps.items()}, env=i)
    envs.close()

    # The world-model losses fall on a deterministic env.
    history = [agent.train(replay.sample(4), None)[1] for _ in range(150)]
    first = {k: np.mean([h[k] for h in history[:10]]) for k in ("loss/rec", "loss/rew", "loss/con")}
    last = {k: np.mean([h[k] for h in history[-10:]]) for k in first}
    assert last["loss/rec"] < 0.2 * first["loss/rec"], (first, last)
    assert last["loss/rew"] < 0.5 * first["loss/rew"], (first, last)
    assert all(np.isfinite(v) for h in history for v in h.values())

    # Open-loop report: real and imagined frames side by side.
    out = agent.report(replay.sample(4))
    video = out["openloop/image"]
    assert video.dtype == np.uint8 and video.shape == (config.model.batch_length, 4 * 16, 2 * 16, 3)
    assert 0 <= out["openloop/image_mse"] < 0.1

    # A checkpoint restores identical training and acting.
    path = str(tmp_path / "agent.npz")
    agent.save(path)
    restored = DreamerV3(agent.obs_space, agent.act_space, config)
    restored.load(path)
    batch = replay.sample(4)
    _, a = agent.train(batch, None)
    _, b = restored.train(batch, None)
    assert a == b
    obs = {"image": batch["image"][:, 0], "is_first": np.ones(4, bool)}
    restored._policy_key = agent._policy_key  # the acting RNG is not part of the training state
    np.testing.assert_array_equal(agent.policy(obs, None, "eval")[0], restored.policy(obs, None, "eval")[0])
    other = DreamerV3(gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)}),
                      gym.spaces.Discrete(2), config)
    with pytest.raises(ValueError, match="does not fit this model: .*shape"):
        other.load(path)


def test_continuous_actions_train_and_stay_in_bounds():
    config = make_config("tiny", ["model.compute_dtype=float32"])
    obs_space = gym.spaces.Dict({"position": gym.spaces.Box(-1, 1, (8,), np.float32)})
    act_space = gym.spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 0.5]), dtype=np.float32)
    agent = DreamerV3(obs_space, act_space, config)
    rng = np.random.default_rng(0)
    obs = {"position": rng.normal(size=(64, 8)).astype(np.float32), "is_first": np.ones(64, bool)}
    action, _ = agent.policy(obs, None, "train")
    assert action.shape == (64, 2) and (action >= act_space.low).all() and (action <= act_space.high).all()
    assert action.std(0).min() > 0.01
    b, t = config.model.batch_size, config.model.batch_length
    batch = {"position": rng.normal(size=(b, t, 8)).astype(np.float32),
             "action": rng.uniform(act_space.low, act_space.high, (b, t, 2)).astype(np.float32),
             "reward": rng.normal(size=(b, t)).astype(np.float32), "is_first": np.zeros((b, t), bool),
             "is_last": np.zeros((b, t), bool), "is_terminal": np.zeros((b, t), bool)}
    _, metrics = agent.train(batch, None)
    assert np.isfinite(metrics["loss/total"]) and metrics["actor_entropy"] != 0


def test_evaluation_samples_unless_the_config_asks_for_the_greedy_action(monkeypatch):
    import dreamerv3_backbone.agent as agent_module

    asked = []
    real_policy = agent_module._policy
    monkeypatch.setattr(agent_module, "_policy", lambda *args: asked.append(args[-1]) or real_policy(*args))
    obs_space = gym.spaces.Dict({"position": gym.spaces.Box(-1, 1, (8,), np.float32)})
    obs = {"position": np.zeros((2, 8), np.float32), "is_first": np.ones(2, bool)}
    for policy in ("sample", "greedy"):
        config = make_config("tiny", ["model.compute_dtype=float32", f"model.eval_policy={policy}"])
        agent = DreamerV3(obs_space, gym.spaces.Discrete(5), config)
        agent.policy(obs, None, "train")
        agent.policy(obs, None, "eval")
    assert asked == [False, False, False, True]  # only 'eval' with eval_policy=greedy takes the mode
    with pytest.raises(ValueError, match="model.eval_policy"):
        DreamerV3(obs_space, gym.spaces.Discrete(5), make_config("tiny", ["model.eval_policy=argmax"]))


def test_unsupported_spaces_fail_clearly():
    config = make_config("tiny")
    with pytest.raises(TypeError, match="Discrete.*Box"):
        DreamerV3(gym.spaces.Dict({"x": gym.spaces.Box(0, 1, (3,))}), gym.spaces.MultiBinary(3), config)
    with pytest.raises(ValueError, match="model.cnn_keys"):
        DreamerV3(gym.spaces.Dict({"x": gym.spaces.Box(0, 1, (3,))}), gym.spaces.Discrete(2),
                  make_config("tiny", ["model.mlp_keys=nothing"]))


def test_depth_to_space_turns_each_pixels_channel_groups_into_its_2x2_block():
    from dreamerv3_backbone.nets import depth_to_space

    x = np.arange(2 * 3 * 5 * 8, dtype=np.float32).reshape(2, 3, 5, 8)  # 4 groups of 2 channels
    y = np.asarray(depth_to_space(x))
    assert y.shape == (2, 6, 10, 2)
    for n, i, j in [(0, 0, 0), (1, 2, 4), (0, 1, 3)]:
        for di in range(2):
            for dj in range(2):
                group = 2 * di + dj  # row-major within the block
                np.testing.assert_array_equal(y[n, 2 * i + di, 2 * j + dj], x[n, i, j, 2 * group:2 * group + 2])


def _tiny_model(overrides=()):
    cfg = make_config("tiny", ["model.compute_dtype=float32", *overrides])
    obs_space = gym.spaces.Dict({"state": gym.spaces.Box(-1, 1, (4,), np.float32)})
    return Model(obs_space, gym.spaces.Discrete(3), cfg.model, seed=0), cfg


def test_policy_output_layer_starts_near_uniform():
    model, cfg = _tiny_model()
    kernel = np.asarray(model.take_initial_params()["actor"]["out"]["kernel"].value)
    fan_in = kernel.shape[0]
    # Truncated normal with std outscale / sqrt(fan_in): the policy's first logits are about 0.01.
    assert np.std(kernel) == pytest.approx(cfg.model.policy_outscale / np.sqrt(fan_in), rel=0.3)
    wide, _ = _tiny_model(["model.policy_outscale=1.0"])
    assert np.std(np.asarray(wide.take_initial_params()["actor"]["out"]["kernel"].value)) > 50 * np.std(kernel)


@pytest.mark.parametrize("slow_targets", [False, True])
def test_returns_bootstrap_from_the_critic_the_config_names(slow_targets):
    """Make the slow critic predict a large constant, the online one 0 (its zero init) and every
    imagined state continue: the imagined returns follow whichever critic the config names."""
    model, _ = _tiny_model([f"model.slow_targets={str(slow_targets).lower()}"])
    state = model.init_state(model.take_initial_params(), 0)
    bins = np.asarray(model.bins)
    big = int(np.argmin(np.abs(bins - 100.0)))
    bias = np.full(len(bins), -30.0, np.float32)
    bias[big] = 30.0
    state["slow_critic"]["out"]["bias"][...] = jax.numpy.asarray(bias)
    state["params"]["cont"]["out"]["bias"][...] = jax.numpy.full((1,), 30.0)
    b, t = 2, 5
    batch = {"state": np.zeros((b, t, 4), np.float32), "action": np.zeros((b, t), np.int32),
             "reward": np.zeros((b, t), np.float32), "is_first": np.eye(1, t, dtype=bool).repeat(b, 0),
             "is_last": np.zeros((b, t), bool), "is_terminal": np.zeros((b, t), bool)}
    _, (metrics, _, _) = model._loss(state["params"], state["slow_critic"], state["retnorm"], batch, jax.random.key(0))
    ret = float(metrics["ret_mean"])
    assert (ret > 50.0) if slow_targets else (abs(ret) < 5.0), ret
