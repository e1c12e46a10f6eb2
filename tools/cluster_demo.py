"""`make cluster-demo`: the demo company on two nodes behind Kamailio, on PostgreSQL and NATS (docs/cluster.md).

Uses the PostgreSQL and NATS servers given (by default those on this machine: 127.0.0.1:5432, user postgres,
and 127.0.0.1:4222 with JetStream), creates the database ``zvonok_cluster_demo`` if it is missing, seeds the
demo company (``zvonok demo --no-serve``), starts two ``zvonok serve`` nodes on 127.0.0.1 and Kamailio on
127.0.0.2 in front of them, and runs until Ctrl-C. Point softphones at the edge's address.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _render() -> Any:
    spec = importlib.util.spec_from_file_location(
        "zvonok_kamailio_render", ROOT / "deploy" / "kamailio" / "render.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def _create_database(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=Path("cluster-demo-data"), help="data directory of the demo"
    )
    parser.add_argument(
        "--pg",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server (an administrative connection, to create the database)",
    )
    parser.add_argument("--database", default="zvonok_cluster_demo", help="the database the nodes share")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server (JetStream on)")
    parser.add_argument("--edge", default="127.0.0.2:5060", help="the edge's SIP address (phones use it)")
    parser.add_argument("--zvonok", default=shutil.which("zvonok") or "zvonok", help="the zvonok command")
    args = parser.parse_args()

    render = _render()
    data: Path = args.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    asyncio.run(_create_database(args.pg, args.database))
    host, _, _admin_db = args.pg.partition("://")[2].rpartition("/")
    database_url = f"postgresql+asyncpg://{host}/{args.database}"
    secret_file = data / "secret-key"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(32))
        secret_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZVONOK_")}
    env.update(
        {
            "ZVONOK_SECRET_KEY": secret_file.read_text().strip(),
            "ZVONOK_BUS_URL": args.nats,
            "ZVONOK_DATABASE_URL": database_url,
        }
    )
    edge = render.parse_host_port(args.edge)
    env["ZVONOK_TRUSTED_EDGES"] = f'["{edge.host}"]'
    subprocess.run(
        [args.zvonok, "--data-dir", str(data / "node1"), "demo", "--no-serve"], env=env, check=True
    )

    procs: list[subprocess.Popen[bytes]] = []
    nodes = []
    try:
        for n in (1, 2):
            sip_port, http_port = 5070 + n, 8080 + n
            nodes.append(render.HostPort("127.0.0.1", sip_port))
            log = open(data / f"node{n}.log", "ab")  # noqa: SIM115 - the process keeps it until it ends
            procs.append(
                subprocess.Popen(
                    [
                        args.zvonok,
                        "--data-dir",
                        str(data / f"node{n}"),
                        "serve",
                        "--sip-host",
                        "127.0.0.1",
                        "--sip-port",
                        str(sip_port),
                        "--http-host",
                        "127.0.0.1",
                        "--http-port",
                        str(http_port),
                    ],
                    env={
                        **env,
                        "ZVONOK_NODE_NAME": f"node{n}",
                        "ZVONOK_SIP_DEFAULT_DOMAIN": "demo.zvonok.local",
                    },
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            print(
                f"node {n}: SIP 127.0.0.1:{sip_port}, web console http://127.0.0.1:{http_port}/ "
                f"(log {data / f'node{n}.log'})"
            )
        config = render.EdgeConfig(
            listen=edge,
            transports=("udp", "tcp"),
            nodes=tuple(nodes),
            children=2,
            ping_interval=2,
            log_level=1,
            log_stderr=True,
        )
        cfg = render.write(config, data / "kamailio")
        run = data / "kamailio" / "run"
        run.mkdir(parents=True, exist_ok=True)
        kamailio = shutil.which("kamailio") or "/usr/sbin/kamailio"
        klog = open(data / "kamailio.log", "ab")  # noqa: SIM115 - the process keeps it until it ends
        procs.append(
            subprocess.Popen(
                [
                    kamailio,
                    "-DD",
                    "-E",
                    "-f",
                    str(cfg),
                    "-Y",
                    str(run),
                    "-P",
                    str(run / "kamailio.pid"),
                    "-m",
                    "64",
                    "-M",
                    "8",
                    "-w",
                    str(data / "kamailio"),
                ],
                stdout=klog,
                stderr=subprocess.STDOUT,
            )
        )
        print(f"edge (Kamailio): {edge} — register phones there (see the accounts above); Ctrl-C stops all")
        stop = False

        def on_signal(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stop:
            if any(p.poll() is not None for p in procs):
                print("a process ended early: see the logs in", data)
                break
            time.sleep(0.5)
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
