"""Webhooks in the running server (``zvonok serve``): the dispatcher is on the bus, the job runs, a company's
committed event (a ring group created over REST) and a test ping reach a receiver on loopback, signed."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .conftest import Pbx, _start_pbx, _stop_pbx

pytestmark = pytest.mark.integration

harness: Any = sys.modules["zvonok_bench_common"]


class _Receiver(BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        pass


@pytest.fixture
def hooked_pbx(tmp_path: Path) -> Iterator[Pbx]:
    instance = _start_pbx(
        tmp_path, stem="hooks", numbers=["301"], env={"ZVONOK_WEBHOOKS_ALLOW_PRIVATE": "1"}, use_cli=False
    )
    try:
        yield instance
    finally:
        _stop_pbx(instance)


def test_committed_event_and_ping_reach_the_webhook(hooked_pbx: Pbx) -> None:
    _Receiver.got = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"{hooked_pbx.http_url}/api/v1/tenants/{hooked_pbx.tenant_id}"
    try:
        hook = harness.http_json(
            f"{base}/webhooks",
            hooked_pbx.token,
            method="POST",
            body={
                "url": f"http://127.0.0.1:{server.server_address[1]}/in",
                "event_types": ["RingGroupChanged"],
            },
        )
        harness.http_json(
            f"{base}/ring-groups",
            hooked_pbx.token,
            method="POST",
            body={"number": "700", "name": "Sales", "members": ["301"]},
        )
        harness.http_json(f"{base}/webhooks/{hook['id']}/ping", hooked_pbx.token, method="POST")
        deadline = time.monotonic() + 20
        while len(_Receiver.got) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.shutdown()
        server.server_close()
    types = sorted(json.loads(body)["type"] for _, body in _Receiver.got)
    assert types == ["RingGroupChanged", "WebhookPing"], (types, hooked_pbx.server.log_tail())
    for headers, body in _Receiver.got:
        mac = hmac.new(
            hook["secret"].encode(), f"{headers['x-zvonok-timestamp']}.".encode() + body, hashlib.sha256
        )
        assert headers["x-zvonok-signature"] == "sha256=" + mac.hexdigest()
    deliveries = harness.http_json(f"{base}/webhooks/{hook['id']}/deliveries", hooked_pbx.token)
    assert sorted((d["event_type"], d["state"], d["last_status"]) for d in deliveries) == [
        ("RingGroupChanged", "delivered", 204),
        ("WebhookPing", "delivered", 204),
    ]
