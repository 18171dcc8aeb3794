"""How well can the ego's speed and lateral offset be read off the bird's-eye view the agent is
trained on?

Drives a task with the scripted expert mixed with random actions (so speeds vary), renders the
task's bird's-eye view with and without motion trails, downsizes each frame as the training
preset does, and fits a ridge regression from pixels to the ego's speed on 80% of the frames.
Prints the held-out R^2 for one frame without trails, two stacked frames without trails, and one
frame with trails: a linear probe is a lower bound on what a CNN can read, but the comparison
shows whether speed is in a single frame at all. Then the same probe for the ego's lateral offset
from its route's centre line (what the `out_of_lane` term and termination judge), at the trained
size and at twice it.

    python bench/speed_probe.py --task four_lane --steps 4000 --size 48
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

from cardreamer.env import make_env
from cardreamer.expert import ExpertPolicy
from cardreamer.observer.birdeye import BirdeyeConfig, BirdeyeHandler


def collect(task: str, steps: int, size: int, trail: float, seed: int) -> dict[str, np.ndarray]:
    env = make_env(task, seed=seed)
    name = next(k for k in env.observation_space.spaces if k.startswith("birdeye"))
    fields = next(h for h in env.observer.handlers if h.name == name).config.model_dump()
    handlers = {t: BirdeyeHandler(f"probe{t}", BirdeyeConfig(**{**fields, "motion_trail": t})) for t in (0.0, trail)}
    policy = ExpertPolicy(env)
    rng = np.random.default_rng(seed)
    frames: dict[float, list[np.ndarray]] = {t: [] for t in handlers}
    speeds, offsets, big, episode = [], [], [], 0
    env.reset(seed=seed)
    for h in handlers.values():
        h.reset(env.world, env.ego_id)
    random_phase = 0
    for _ in range(steps):
        if random_phase <= 0 and rng.random() < 0.05:
            random_phase = int(rng.integers(5, 30))
        action = env.action_space.sample() if random_phase > 0 else policy.act()
        random_phase -= 1
        _, _, terminated, truncated, info = env.step(action)
        for t, h in handlers.items():
            image = h.step(env.world, env.ego_id)[0][f"probe{t}"]
            frames[t].append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
            if t == 0.0:
                big.append(cv2.resize(image, (2 * size, 2 * size), interpolation=cv2.INTER_AREA))
        offsets.append(float(info["lateral_offset"]))
        v = env.world.vehicles()
        speeds.append(float(v.speed[v.row(env.ego_id)]))
        if terminated or truncated:
            episode += 1
            env.reset(seed=seed + episode)
            for h in handlers.values():
                h.reset(env.world, env.ego_id)
            speeds.append(np.nan)  # marks an episode boundary for frame pairs
            offsets.append(np.nan)
            big.append(big[-1])
            for t in handlers:
                frames[t].append(frames[t][-1])
    env.close()
    return {"speed": np.array(speeds), "offset": np.array(offsets), "big": np.array(big, dtype=np.float32) / 255,
            **{f"trail{t}": np.array(f, dtype=np.float32) / 255 for t, f in frames.items()}}


def ridge_r2(x: np.ndarray, y: np.ndarray, seed: int, alpha: float = 10.0) -> tuple[float, float]:
    """Held-out (R^2, RMSE in m/s) of a ridge regression from x to y on a random 80/20 split."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    train, test = order[:cut], order[cut:]
    mean = x[train].mean(0)
    a = x[train] - mean
    # Dual form: the pixel count exceeds the sample count.
    gram = a @ a.T + alpha * np.eye(len(train))
    w = a.T @ np.linalg.solve(gram, y[train] - y[train].mean())
    pred = (x[test] - mean) @ w + y[train].mean()
    mse = float(np.mean((pred - y[test]) ** 2))
    return 1.0 - mse / float(np.var(y[test])), mse ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="four_lane")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--trail", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = collect(args.task, args.steps, args.size, args.trail, args.seed)
    speed = data["speed"]
    valid = np.flatnonzero(~np.isnan(speed))
    pairs = valid[(valid > 0) & ~np.isnan(speed[np.maximum(valid - 1, 0)])]
    flat = {k: v.reshape(len(v), -1) for k, v in data.items() if k.startswith("trail")}
    no_trail, with_trail = flat["trail0.0"], flat[f"trail{args.trail}"]
    rows = [
        ("one frame, no trail", ridge_r2(no_trail[valid], speed[valid], args.seed)),
        ("two frames, no trail", ridge_r2(np.concatenate([no_trail[pairs], no_trail[pairs] - no_trail[pairs - 1]], 1),
                                          speed[pairs], args.seed)),
        (f"one frame, {args.trail:g} s trail", ridge_r2(with_trail[valid], speed[valid], args.seed)),
    ]
    print(f"{args.task}: {len(valid)} frames at {args.size}x{args.size}, speed {np.nanmean(speed):.1f} "
          f"+- {np.nanstd(speed):.1f} m/s; held-out R^2 of a ridge probe from pixels to the ego's speed")
    for label, (r2, rmse) in rows:
        print(f"  {label:24s} R^2 = {r2:.3f}   RMSE = {rmse:.2f} m/s")
    offset = data["offset"]
    print(f"lateral offset {np.nanmean(np.abs(offset)):.2f} m mean |offset|, std {np.nanstd(offset):.2f} m; "
          f"held-out R^2 of the same probe from pixels (no trail) to the offset")
    for label, pixels in ((f"{args.size}x{args.size}", no_trail), (f"{2 * args.size}x{2 * args.size}",
                                                                  data["big"].reshape(len(speed), -1))):
        r2, rmse = ridge_r2(pixels[valid], offset[valid], args.seed)
        print(f"  {label:24s} R^2 = {r2:.3f}   RMSE = {rmse:.2f} m")


if __name__ == "__main__":
    main()
