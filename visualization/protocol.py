"""The wire protocol shared by the visualization server, its publishers and its page.

Publishers (env, trainer, driving loop) connect to the ``/publish`` namespace, browsers and other
viewers to ``/view``. Both authenticate with the Socket.IO ``auth`` payload. Live items that only
matter in their newest version (video frames, step info) are addressed by a *slot key*
``"<env>/<stream>"`` (``"<env>/@step"`` for step info); viewers acknowledge each one with an
``ack`` event before the server sends the next item of that slot.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import numpy as np

PUBLISH_NAMESPACE = "/publish"
VIEW_NAMESPACE = "/view"

STEP_SLOT = "@step"
STATUS_SLOT = "@status"  # the publisher's slot for the run's status (one per run, not per env)
MAX_ENVS = 1024

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
SHOWN_CHARS = 80  # a value quoted in an error message is cut to this many characters


def shown(value: object) -> str:
    """``repr(value)``, cut to about SHOWN_CHARS characters, for one-line error messages."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


def check_name(kind: str, value: object) -> str:
    """Return ``value`` if it is a valid run or stream name, else raise ``ValueError``.

    Valid names are 1-64 characters of letters, digits, ``_``, ``.`` and ``-`` starting with a
    letter or digit, so that a run name is always a safe directory name inside the logdir.
    """
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(
            f"invalid {kind} name {shown(value)}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


MAX_RUN_DEPTH = 3  # e.g. <experiment>/<variant>/seed<k>


def check_run_name(value: object) -> str:
    """Return ``value`` if it is a valid run name, else raise ``ValueError``.

    A run name is a path of 1 to MAX_RUN_DEPTH names joined by ``/``, each valid for
    :func:`check_name` (so never ``..``): the run directory of an experiment's run,
    ``<experiment>/<variant>/seed<k>``, stays inside the logdir.
    """
    parts = value.split("/") if isinstance(value, str) else [value]
    if len(parts) > MAX_RUN_DEPTH or not all(isinstance(p, str) and _NAME_RE.match(p) for p in parts):
        raise ValueError(
            f"invalid run name {shown(value)}: use up to {MAX_RUN_DEPTH} names joined by '/', each of 1-64 "
            "letters, digits, '_', '.' or '-' starting with a letter or digit"
        )
    return value


def check_env_index(value: object) -> int:
    """Return ``value`` as an env index in ``[0, MAX_ENVS)`` or raise ``ValueError``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"env_index must be an int, got {shown(value)}")  # noqa: TRY004 - callers expect ValueError
    if not 0 <= int(value) < MAX_ENVS:
        raise ValueError(f"env_index must be in [0, {MAX_ENVS}), got {value}")
    return int(value)


def slot_key(env: int, stream: str) -> str:
    """The key of the live slot holding the newest item of ``stream`` for env ``env``."""
    return f"{env}/{stream}"


def image_format(stream: str) -> str:
    """Encoding used for a stream: PNG for flat rasters (bird's-eye view, lidar), JPEG otherwise."""
    flat = stream.startswith(("birdeye", "bev", "lidar"))
    return "png" if flat else "jpeg"


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """Convert numpy scalars/small arrays (and containers of them) to plain JSON values.

    Non-finite floats become ``None`` (JSON has no NaN); arrays of more than 64 elements and
    objects of unknown type become their ``str`` so nothing large or unserialisable is sent.
    """
    if _depth > 8:
        return str(value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.ndarray):
        if value.size > 64:
            return f"<array {value.dtype} {value.shape}>"
        return to_jsonable(value.tolist(), _depth + 1)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, _depth + 1) for v in value]
    return str(value)


def directory_identity(path: str) -> list[int]:
    """The device and inode of the directory ``path`` (OSError if there is none): a server that
    sees the pair a publisher announced with a path sees the publisher's directory, not another
    machine's of the same name."""
    info = os.stat(path)
    if not os.path.isdir(path):
        raise NotADirectoryError(path)
    return [info.st_dev, info.st_ino]


def check_image(name: str, image: object) -> np.ndarray:
    """Return ``image`` if it is an HxWx3 uint8 array, else raise ``ValueError`` naming ``name``."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{name}: expected an HxWx3 uint8 RGB array, got shape {shape} dtype {dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name}: image is empty (shape {image.shape})")
    return image
