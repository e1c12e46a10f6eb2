"""The packet/DSP modules of zvonok.media do no I/O of their own: no asyncio, socket or time."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import zvonok.media

SANS_IO = ["rtp", "g711", "dtmf", "tones", "wav", "jitter", "stats", "recording", "events", "errors", "interface",
            "mixer", "dtmf_gate"]


@pytest.mark.parametrize("module", SANS_IO)
def test_module_is_sans_io(module: str) -> None:
    path = Path(zvonok.media.__file__).parent / f"{module}.py"
    tree = ast.parse(path.read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not imported & {"asyncio", "socket", "time", "selectors", "uvloop", "audioop"}
