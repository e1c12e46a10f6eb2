"""The T.38 protocol modules do no I/O of their own: no asyncio, socket, time or randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import zvonok

T38_MODULES = ["media/udptl.py", "sip/sdp_t38.py", "fax/t38.py", "telephony/leg_media.py"]


@pytest.mark.parametrize("module", T38_MODULES)
def test_module_is_sans_io(module: str) -> None:
    tree = ast.parse((Path(zvonok.__file__).parent / module).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not imported & {"asyncio", "socket", "time", "selectors", "uvloop", "random", "secrets", "os"}
