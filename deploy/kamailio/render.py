#!/usr/bin/env python3
"""Render Zvonok's Kamailio edge configuration for a list of nodes (issue 14; docs/edge.md).

    python3 deploy/kamailio/render.py --listen 203.0.113.10:5060 --out /etc/kamailio \\
        10.0.0.11:5060 10.0.0.12:5060

writes ``kamailio.cfg`` (from ``kamailio.cfg.in`` beside this script) and ``dispatcher.list`` (the
nodes, set 1) into ``--out``; run Kamailio with ``kamailio -f <out>/kamailio.cfg``. Each node runs
``zvonok serve`` with ``ZVONOK_TRUSTED_EDGES`` naming the address the edge reaches it from. With
``--check`` the result is checked by ``kamailio -c``. Only the standard library is used: the script
runs on an edge machine that has Kamailio and Python, not Zvonok.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = Path(__file__).with_name("kamailio.cfg.in")
TRANSPORTS = ("udp", "tcp")
_TOKEN = re.compile(r"@([A-Z_]+)@")


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_host_port(text: str, default_port: int = 5060) -> HostPort:
    """``host[:port]``, ``[v6]:port`` or a ``sip:`` URI's host part; the host must be an IP address (the
    nodes and the listening address are addresses: a name would make Kamailio resolve it at start only)."""
    value = text.strip().removeprefix("sip:")
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        host, port_text = value, ""
    ipaddress.ip_address(host)  # ValueError: not an address
    port = int(port_text) if port_text else default_port
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {text}")
    return HostPort(host, port)


@dataclass(frozen=True)
class EdgeConfig:
    listen: HostPort
    nodes: tuple[HostPort, ...]
    transports: tuple[str, ...] = TRANSPORTS
    advertise: HostPort | None = None
    children: int = 4
    ping_interval: int = 2
    pike_density: int = 60
    pike_unit: int = 2
    log_level: int = 1
    log_stderr: bool = False
    dispatcher_list: Path = field(default=Path("dispatcher.list"))


def render_config(config: EdgeConfig, template: str) -> str:
    """The template with every @TOKEN@ filled in; an unknown or unfilled token is an error."""
    if not config.nodes:
        raise ValueError("at least one node is needed")
    listen = "\n".join(f"listen={t}:{config.listen}" + (f" advertise {config.advertise}" if config.advertise else "")
                       for t in config.transports)
    values = {
        "LISTEN": listen,
        "EDGE_HOST": str(config.advertise or config.listen),
        "CHILDREN": str(config.children),
        "PING_INTERVAL": str(config.ping_interval),
        "PIKE_DENSITY": str(config.pike_density),
        "PIKE_UNIT": str(config.pike_unit),
        "LOG_LEVEL": str(config.log_level),
        "LOG_STDERR": "yes" if config.log_stderr else "no",
        "DISPATCHER_LIST": str(config.dispatcher_list),
    }
    unknown = {m.group(1) for m in _TOKEN.finditer(template)} - values.keys()
    if unknown:
        raise ValueError(f"template tokens without a value: {sorted(unknown)}")
    return _TOKEN.sub(lambda m: values[m.group(1)], template)


def render_dispatcher_list(config: EdgeConfig) -> str:
    """Set 1: one line per node (``setid destination flags priority``)."""
    lines = ["# Zvonok nodes (set 1), rendered by deploy/kamailio/render.py"]
    lines += [f"1 sip:{node} 0 0" for node in config.nodes]
    return "\n".join(lines) + "\n"


def write(config: EdgeConfig, out: Path, template: Path = TEMPLATE) -> Path:
    """Write kamailio.cfg and dispatcher.list into ``out``; returns the kamailio.cfg path."""
    out.mkdir(parents=True, exist_ok=True)
    dispatcher = out / "dispatcher.list"
    config = EdgeConfig(**{**config.__dict__, "dispatcher_list": dispatcher.resolve()})
    dispatcher.write_text(render_dispatcher_list(config))
    cfg = out / "kamailio.cfg"
    cfg.write_text(render_config(config, template.read_text()))
    return cfg


def check(cfg: Path, kamailio: str = "kamailio") -> subprocess.CompletedProcess[str]:
    """``kamailio -c``: parse the configuration and load its modules, without starting."""
    binary = shutil.which(kamailio) or kamailio
    return subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60, check=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("nodes", nargs="+", help="the nodes' SIP addresses, host[:port] (port 5060 by default)")
    parser.add_argument("--listen", required=True, help="the edge's address, host[:port], for UDP and TCP")
    parser.add_argument("--advertise", help="public host[:port] put in Record-Route/Path/Via when the edge is "
                        "behind a 1:1 NAT")
    parser.add_argument("--transports", default="udp,tcp", help="comma-separated: udp, tcp (default both)")
    parser.add_argument("--children", type=int, default=4, help="Kamailio worker processes per listener")
    parser.add_argument("--ping-interval", type=int, default=2, help="seconds between OPTIONS probes of a node")
    parser.add_argument("--pike-density", type=int, default=60,
                        help="requests per source address and --pike-unit seconds before it is dropped")
    parser.add_argument("--pike-unit", type=int, default=2, help="pike's sampling time unit, seconds")
    parser.add_argument("--log-level", type=int, default=1, help="Kamailio debug level (-3..4)")
    parser.add_argument("--log-stderr", action="store_true", help="log to stderr instead of syslog")
    parser.add_argument("--out", type=Path, required=True, help="directory for kamailio.cfg and dispatcher.list")
    parser.add_argument("--check", action="store_true", help="check the result with `kamailio -c` (parses it, loads "
                        "its modules)")
    args = parser.parse_args(argv)
    transports = tuple(t.strip().lower() for t in args.transports.split(",") if t.strip())
    if not transports or set(transports) - set(TRANSPORTS):
        parser.error(f"--transports: choose from {', '.join(TRANSPORTS)}")
    try:
        config = EdgeConfig(
            listen=parse_host_port(args.listen), nodes=tuple(parse_host_port(n) for n in args.nodes),
            transports=transports, advertise=parse_host_port(args.advertise) if args.advertise else None,
            children=args.children, ping_interval=args.ping_interval, pike_density=args.pike_density,
            pike_unit=args.pike_unit, log_level=args.log_level, log_stderr=args.log_stderr)
    except ValueError as exc:
        parser.error(str(exc))
    cfg = write(config, args.out)
    print(cfg)
    if args.check:
        result = check(cfg)
        if result.returncode != 0:
            sys.stderr.write(result.stdout + result.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
