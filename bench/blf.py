"""NOTIFY fan-out: one extension watched by ``--watchers`` BLF keys (issue 11's bench: 200 phones), the time
from a state change to the last NOTIFY on the wire.

What it does: a :class:`zvonok.telephony.presence.BusyLamps` with the real subscription table, dialog
bodies and SIP serialization, whose "SIP stack" writes each NOTIFY with ``sendto`` to a UDP socket on
loopback (stand-ins for the authenticator and directory accept every subscriber of one tenant: digest is
measured by bench/register.py). ``--watchers`` SUBSCRIBEs to extension 102 come from as many source
ports; then, ``--rounds`` times, one call's events (ringing, answered, hung up: three changes; the first
is two NOTIFYs each, trying and early) are fed to the lamps as the bus delivers them, and the receiver
counts datagrams until every watcher has its NOTIFYs of each change. Printed: per change, the time to the last NOTIFY received (median, p95, max), and
NOTIFYs per second. Pacing (5 at once, then 2 a second per watcher) is off the path measured here: the
rounds are spaced so that no watcher is over its share.

Run: ``PYTHONPATH=src python bench/blf.py [--watchers 200] [--rounds 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time
from typing import Any

from zvonok.org.service import SipCredentials
from zvonok.sip.message import Headers, Request, Response
from zvonok.sip.peer import Peer
from zvonok.telephony import events as ev
from zvonok.telephony.auth import AuthOutcome
from zvonok.telephony.directory import ExtensionInfo
from zvonok.telephony.location import Location
from zvonok.telephony.presence import BusyLamps

DOMAIN = "bench.test"
TENANT = 1


class Sip:
    local_host = "127.0.0.1"

    def __init__(self, sock: socket.socket, target: tuple[str, int]) -> None:
        self.sock = sock
        self.target = target  # every watcher's NOTIFY goes to the one receiver (its Via/peer differ)

    def port_for(self, transport: str) -> int:
        return 5060

    def respond(self, txn: Any, response: Response) -> None:
        pass

    def send_request(self, request: Request, peer: Peer, handler: Any) -> None:
        self.sock.sendto(request.to_bytes(), self.target)


class Everyone:
    """Authenticator and directory stand-ins: the From user is an extension of tenant 1."""

    def domain_of(self, uri: Any) -> str:
        return DOMAIN

    async def authenticate(
        self, request: Request, peer: Peer, now: float, *, domain: str, **_: Any
    ) -> AuthOutcome:
        number = request.from_.uri.user_unescaped  # type: ignore[union-attr]
        return AuthOutcome(
            credentials=SipCredentials(
                tenant_id=TENANT,
                extension_id=int(number or 0),
                number=number or "",
                display_name="",
                realm=DOMAIN,
                ha1_md5="",
                ha1_sha256="",
                max_devices=5,
                enabled=True,
                tenant_suspended=False,
            )
        )

    async def extension(self, tenant_id: int, number: str) -> ExtensionInfo | None:
        return ExtensionInfo(
            tenant_id=tenant_id,
            extension_id=int(number),
            number=number,
            display_name=number,
            employee_id=None,
            office_id=None,
            department_id=None,
            enabled=True,
        )


class Txn:
    responded = False


def subscribe(number: int, port: int) -> Request:
    headers = Headers()
    for name, value in (
        ("Via", f"SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKb{number}"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:{number}@{DOMAIN}>;tag=k{number}"),
        ("To", f"<sip:102@{DOMAIN}>"),
        ("Call-ID", f"blf-{number}"),
        ("CSeq", "1 SUBSCRIBE"),
        ("Event", "dialog"),
        ("Expires", "3600"),
        ("Contact", f"<sip:{number}@127.0.0.1:{port}>"),
    ):
        headers.add(name, value)
    return Request("SUBSCRIBE", f"sip:102@{DOMAIN}", headers)


def call(n: int) -> list[list[object]]:
    """One call to 102 as three changes: ringing, answered, hung up (each a burst of events)."""
    base: dict[str, Any] = {"tenant_id": TENANT, "call_id": f"c{n}", "at": 0.0}
    caller = ev.Party(number="101", extension_id=101)
    callee = ev.Party(number="102", extension_id=102)
    return [
        [
            ev.CallStarted(**base, caller=caller, callee_number="102", direction=ev.Direction.INTERNAL),
            ev.LegCreated(**base, leg_id=f"a{n}", role=ev.LegRole.CALLER, party=caller),
            ev.LegCreated(**base, leg_id=f"b{n}", role=ev.LegRole.CALLEE, party=callee),
            ev.LegRinging(**base, leg_id=f"b{n}"),
        ],
        [ev.LegAnswered(**base, leg_id=f"b{n}"), ev.CallAnswered(**base, answered_leg_id=f"b{n}")],
        [
            ev.LegEnded(**base, leg_id=f"b{n}", cause="normal_clearing"),
            ev.LegEnded(**base, leg_id=f"a{n}", cause="normal_clearing"),
            ev.CallEnded(
                **base,
                disposition=ev.Disposition.ANSWERED,
                hangup_side=ev.HangupSide.CALLER,
                cause="normal_clearing",
            ),
        ],
    ]


async def main(watchers: int, rounds: int) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stub: Any = Everyone()
    lamps = BusyLamps(sip=Sip(sender, receiver.getsockname()), auth=stub, directory=stub, location=Location())
    loop = asyncio.get_running_loop()

    async def drain(count: int) -> None:
        got = 0
        while got < count:
            await loop.sock_recv(receiver, 65536)
            got += 1

    for i in range(watchers):
        txn: Any = Txn()
        lamps.on_subscribe(
            txn, subscribe(1000 + i, 20000 + i), Peer(transport="udp", host="127.0.0.1", port=20000 + i)
        )
    await asyncio.wait_for(drain(watchers), 30)  # the first NOTIFY of each
    assert len(lamps.subscriptions) == watchers, len(lamps.subscriptions)
    times: list[float] = []
    for n in range(rounds):
        # NOTIFYs per watcher: trying and early, confirmed, terminated
        for change, per_watcher in zip(call(n), (2, 1, 1), strict=True):
            started = time.perf_counter()
            for event in change:
                await lamps.on_call_event(event)
            await asyncio.wait_for(drain(watchers * per_watcher), 30)
            times.append(time.perf_counter() - started)
        await asyncio.sleep(2.1)  # below the pacing: the 4 NOTIFYs of a round refill in 2 s
    await lamps.stop()
    times.sort()
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    print(
        f"{watchers} watchers, {len(times)} changes: to the last NOTIFY median {statistics.median(times) * 1000:.1f} ms, "
        f"p95 {p95 * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.watchers, args.rounds))
