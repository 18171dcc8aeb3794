"""Import the real dreamerv3_backbone package, not this test folder."""

from __future__ import annotations

import importlib
import os
import sys


def _import_real_package() -> None:
    """tests/ is on sys.path (for tests/conftest.py), where this folder would be found first as a
    namespace package named ``dreamerv3_backbone``; import the real package instead."""
    module = sys.modules.get("dreamerv3_backbone")
    if module is not None and getattr(module, "__file__", None):
        return
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != tests_dir]
    sys.modules.pop("dreamerv3_backbone", None)
    try:
        importlib.import_module("dreamerv3_backbone")
    finally:
        sys.path[:] = saved


_import_real_package()
