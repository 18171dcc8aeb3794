"""Convert a pickle checkpoint of an older version (``agent.pkl``) to the current format.

    python -m dreamerv3_backbone.convert_checkpoint RUN_DIR_OR_CHECKPOINT_FOLDER

The old file is read with an unpickler that admits only NumPy's array constructors, so even this
one-off conversion cannot run code from the file; anything else in it is refused. The run's
config.yaml rebuilds the model, whose state layout names the converted arrays.
"""

from __future__ import annotations

import io
import os
import pickle
import sys

import jax
import numpy as np

from cardreamer.training import checkpoint

_ARRAY_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric", "numpy")
    for name in ("_reconstruct", "scalar", "_frombuffer", "ndarray", "dtype")
}
_LEGACY_DREAMERV3 = "dreamerv3-state-1"


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise checkpoint.CheckpointError(f"refused: the file asks to load {module}.{name}, which is not an array")


def read_legacy(path: str) -> dict:
    """The contents of an old ``agent.pkl``, admitting nothing but dicts, lists, numbers and arrays."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        data = _ArrayUnpickler(io.BytesIO(raw)).load()
    except checkpoint.CheckpointError as error:
        raise checkpoint.CheckpointError(f"{path}: {error}") from None
    except Exception as error:  # noqa: BLE001 - any malformed pickle stream
        raise checkpoint.CheckpointError(f"{path}: not a readable pickle checkpoint ({type(error).__name__})") from None
    if not isinstance(data, dict):
        raise checkpoint.CheckpointError(f"{path}: not a checkpoint of a built-in backbone")
    return data


def _build_agent(logdir: str):
    from cardreamer.training.config import load_config
    from cardreamer.training.envs import default_env_fn, make_vector_env
    from cardreamer.training.protocol import make_backbone

    config = load_config(os.path.join(logdir, "config.yaml"))
    envs = make_vector_env(default_env_fn(config), 1, False, config.env.image_size)
    try:
        return make_backbone(config.backbone, envs.single_observation_space, envs.single_action_space, config)
    finally:
        envs.close()


def convert(path: str) -> str:
    """Write ``agent.npz`` beside the old ``agent.pkl`` of a checkpoint; returns the new file."""
    logdir, folder = checkpoint.resolve(path)
    legacy = os.path.join(folder, checkpoint.LEGACY_AGENT_FILE)
    if not os.path.isfile(legacy):
        raise FileNotFoundError(f"{folder}: no {checkpoint.LEGACY_AGENT_FILE} to convert")
    data = read_legacy(legacy)
    target = os.path.join(folder, checkpoint.AGENT_FILE)
    if data.get("format") == _LEGACY_DREAMERV3:
        agent = _build_agent(logdir)
        template = {**agent.state, "key": jax.random.key_data(agent.state["key"])}
        leaves, treedef = jax.tree.flatten(template)
        saved = data.get("leaves")
        if not isinstance(saved, list) or [np.shape(x) for x in saved] != [np.shape(x) for x in leaves]:
            raise checkpoint.CheckpointError(f"{legacy}: its arrays do not fit the model of {logdir}/config.yaml")
        state = jax.tree.unflatten(treedef, [np.asarray(x, dtype=t.dtype) for x, t in zip(saved, leaves)])
        agent.state = {**state, "key": jax.random.wrap_key_data(state["key"])}
        agent.save(target)
    elif {"rng", "updates"} <= set(data):
        from cardreamer.training.random_backbone import RANDOM_FORMAT

        checkpoint.write_arrays(target, {}, {"format": RANDOM_FORMAT, "rng": data["rng"], "updates": int(data["updates"])})
    else:
        raise checkpoint.CheckpointError(f"{legacy}: not a checkpoint of a built-in backbone")
    return target


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m dreamerv3_backbone.convert_checkpoint RUN_DIR_OR_CHECKPOINT_FOLDER", file=sys.stderr)
        return 2
    try:
        print(f"wrote {convert(args[0])}")
    except (checkpoint.CheckpointError, FileNotFoundError) as error:
        print(f"convert_checkpoint: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
