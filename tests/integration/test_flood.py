"""A flood of INVITEs from one address is refused with 503 after the per-address limit."""

from __future__ import annotations

import secrets
import socket
import sys
from pathlib import Path
from typing import Any

harness: Any = sys.modules["zvonok_bench_common"]  # loaded by conftest.py (bench/_common.py)


def invite(n: int, domain: str, port: int) -> bytes:
    return (
        f"INVITE sip:101@{domain} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKflood{n};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:100@{domain}>;tag=f{n}\r\nTo: <sip:101@{domain}>\r\n"
        f"Call-ID: flood-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@127.0.0.1:{port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_invite_flood_gets_503(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    domain = f"flood-{secrets.token_hex(3)}.test"
    harness.seed(data_dir, domain=domain, numbers=["100", "101"],
                 database_url=harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None)
    srv = harness.ZvonokServer(data_dir=data_dir, env={"ZVONOK_INVITE_RATE_LIMIT": "5"},
                               database_url=harness.os.environ.get("ZVONOK_TEST_DATABASE_URL") or None)
    srv.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(10)
            port = sock.getsockname()[1]
            statuses = []
            for n in range(12):
                sock.sendto(invite(n, domain, port), ("127.0.0.1", srv.sip_port))
                while True:  # skip 100 Trying
                    status = int(sock.recv(65535).split(b" ", 2)[1])
                    if status >= 200:
                        break
                statuses.append(status)
        assert statuses[:5] == [407] * 5  # challenged: nobody is authenticated in this test
        assert statuses[6:] == [503] * 6
    finally:
        assert srv.stop() == 0, srv.log_tail()
