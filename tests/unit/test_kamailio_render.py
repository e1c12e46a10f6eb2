"""deploy/kamailio/render.py: the edge configuration rendered for N nodes (Kamailio itself checks the
result in tests/integration/test_edge_kamailio.py)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kamailio" / "render.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("zvonok_kamailio_render", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


render = _load()


def test_three_nodes_become_dispatcher_set_1(tmp_path: Path) -> None:
    code = render.main(["--listen", "203.0.113.10", "--out", str(tmp_path),
                        "10.0.0.11:5070", "sip:10.0.0.12", "[2001:db8::13]:5080"])
    assert code == 0
    lines = [line for line in (tmp_path / "dispatcher.list").read_text().splitlines() if not line.startswith("#")]
    assert lines == ["1 sip:10.0.0.11:5070 0 0", "1 sip:10.0.0.12:5060 0 0", "1 sip:[2001:db8::13]:5080 0 0"]
    cfg = (tmp_path / "kamailio.cfg").read_text()
    assert "listen=udp:203.0.113.10:5060\nlisten=tcp:203.0.113.10:5060\n" in cfg
    assert f'modparam("dispatcher", "list_file", "{(tmp_path / "dispatcher.list").resolve()}")' in cfg
    assert 'modparam("dispatcher", "ds_ping_from", "sip:edge@203.0.113.10:5060")' in cfg
    assert not re.search(r"@[A-Z_]+@", cfg), "every token filled in"
    # what the edge is for: Path with the phone's address, record-route, probing, pike
    for needed in ('loadmodule "path.so"', "add_path_received()", "record_route()", 'loadmodule "pike.so"',
                   "pike_check_req()", '"ds_probing_mode", 1', 'modparam("path", "use_received", 1)'):
        assert needed in cfg, needed


def test_options_reach_the_configuration(tmp_path: Path) -> None:
    config = render.EdgeConfig(listen=render.parse_host_port("192.0.2.1:5999"),
                               nodes=(render.parse_host_port("10.0.0.11"),), transports=("udp",),
                               advertise=render.parse_host_port("198.51.100.1"), children=2, ping_interval=5,
                               pike_density=100, pike_unit=3, log_level=3, log_stderr=True)
    cfg = render.render_config(config, render.TEMPLATE.read_text())
    assert "listen=udp:192.0.2.1:5999 advertise 198.51.100.1:5060\n" in cfg and "listen=tcp" not in cfg
    assert "sip:edge@198.51.100.1:5060" in cfg  # probes say who they are by the public address
    for line in ("children=2", "debug=3", "log_stderror=yes", '"ds_ping_interval", 5',
                 '"reqs_density_per_unit", 100', '"sampling_time_unit", 3'):
        assert line in cfg, line


@pytest.mark.parametrize("bad", ["node.example.net", "10.0.0.1:0", "10.0.0.1:70000", "10.0.0.1:x"])
def test_a_node_must_be_an_address_with_a_valid_port(bad: str) -> None:
    with pytest.raises(ValueError):
        render.parse_host_port(bad)


def test_bad_arguments_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        render.main(["--listen", "192.0.2.1", "--out", str(tmp_path), "--transports", "sctp", "10.0.0.1"])
    with pytest.raises(SystemExit):
        render.main(["--listen", "192.0.2.1", "--out", str(tmp_path), "edge.example.net"])
    assert "does not appear to be an IPv4 or IPv6 address" in capsys.readouterr().err
    assert not (tmp_path / "kamailio.cfg").exists()


def test_an_unknown_token_in_the_template_is_an_error() -> None:
    config = render.EdgeConfig(listen=render.parse_host_port("192.0.2.1"), nodes=(render.parse_host_port("10.0.0.1"),))
    with pytest.raises(ValueError, match="NODES"):
        render.render_config(config, "listen=@LISTEN@\n# @NODES@\n")
    with pytest.raises(ValueError, match="at least one node"):
        render.render_config(render.EdgeConfig(listen=config.listen, nodes=()), "")
