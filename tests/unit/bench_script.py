"""Load a script of bench/ as a module, for the unit tests of its pure parts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(script: str) -> Any:
    """``bench/<script>.py`` as the module ``zvonok_bench_script_<script>`` (bench/ on sys.path: the scripts import
    their siblings ``_common`` and ``_calls``)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    name = f"zvonok_bench_script_{script}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{script}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module
