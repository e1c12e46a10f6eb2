"""The benchmark harness (``bench/_common.py``) loaded once as ``zvonok_bench_common`` for the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

_COMMON_PATH = Path(__file__).resolve().parents[2] / "bench" / "_common.py"


def _load() -> Any:
    name = "zvonok_bench_common"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _COMMON_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


harness: Any = _load()
