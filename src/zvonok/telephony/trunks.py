"""Trunks at run time: the routing snapshot, registrations to carriers, and calls in progress per trunk.

How it works: :class:`Trunks` holds the current :class:`~zvonok.pstn.routing.PstnSnapshot` and swaps in a
fresh one (:meth:`reload`) when the outside world's tables change. For every trunk with ``register`` it
runs a sans-I/O :class:`~zvonok.sip.registration_client.RegistrationClient`, sending its REGISTERs through
the SIP service's transaction layer and re-arming one loop timer per client from ``get_timer()``.
:meth:`acquire`/:meth:`release` count each trunk's calls against its ``max_calls`` through a
:class:`~zvonok.telephony.counters.TrunkSlots` (this process's memory, or shared by the nodes of a cluster:
:mod:`zvonok.pstn.holds`); :meth:`shared_status` is what the REST API shows (registered, last error, the calls in
progress: every node's when they share the trunk's channels, else this node's).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from zvonok import metrics
from zvonok.logs import get_logger
from zvonok.pstn.routing import PstnSnapshot, TrunkInfo
from zvonok.sip.errors import SipError
from zvonok.sip.grammar import escape_user, uri_host
from zvonok.sip.message import Request
from zvonok.sip.peer import Peer
from zvonok.sip.registration_client import Registered, RegistrationClient, RegistrationFailed
from zvonok.sip.transaction import ClientTransaction, ResponseReceived, TransactionTimeout, TransportError

from .counters import TrunkSlots

log = get_logger(__name__)


class _Sip(Protocol):
    @property
    def local_host(self) -> str: ...

    @property
    def local_port(self) -> int: ...

    def port_for(self, transport: str) -> int: ...

    def send_request(self, request: Request, peer: Peer,
                     handler: Callable[[object], None]) -> ClientTransaction: ...


def _token() -> str:
    return os.urandom(6).hex()


def _registration_of(trunk: TrunkInfo) -> tuple[object, ...]:
    """What a trunk's registration depends on: only a change of these restarts it."""
    return (trunk.host, trunk.address, trunk.port, trunk.transport, trunk.username, trunk.password,
            trunk.auth_username, trunk.from_domain, trunk.register_expires)


def trunk_peer(trunk: TrunkInfo) -> Peer:
    return Peer(transport=trunk.transport, host=trunk.address, port=trunk.port)


class _Registration:
    def __init__(self, trunks: Trunks, trunk: TrunkInfo) -> None:
        sip = trunks.sip
        assert trunk.username and trunk.password
        self.trunks = trunks
        self.trunk = trunk
        self.timer: asyncio.TimerHandle | None = None
        transport = "" if trunk.transport == "udp" else f";transport={trunk.transport}"
        port = sip.port_for(trunk.transport)  # over TLS: our TLS port, where the carrier sends our calls
        self.client = RegistrationClient(
            registrar=f"sip:{uri_host(trunk.host)}:{trunk.port}{transport}",
            aor=f"sip:{escape_user(trunk.username)}@{uri_host(trunk.domain)}",
            username=trunk.auth_username or trunk.username, password=trunk.password,
            contact=f"sip:{escape_user(trunk.username)}@{uri_host(sip.local_host)}:{port}{transport}",
            peer=trunk_peer(trunk), local_host=sip.local_host, local_port=port,
            call_id_gen=lambda: _token() + _token(), tag_gen=_token, branch_gen=lambda: "z9hG4bK" + _token(),
            cnonce_gen=_token, expires=trunk.register_expires, user_agent="Zvonok",
        )

    def start(self) -> None:
        self.client.start(time.time())
        self.pump()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.client.stop(time.time())
        self.pump()

    def pump(self) -> None:
        """Send what the client wants sent, report its events, re-arm its timer."""
        for request in self.client.requests_to_send():
            self.trunks.sip.send_request(request, self.client.peer, functools.partial(self._on_event, request))
        while (event := self.client.next_event()) is not None:
            if isinstance(event, Registered):
                log.info("trunk registered", trunk=self.trunk.id, name=self.trunk.name, expires=event.expires)
            elif isinstance(event, RegistrationFailed):
                log.warning("trunk registration failed", trunk=self.trunk.id, name=self.trunk.name,
                            error=event.error, retry_at=event.retry_at)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        deadline = self.client.get_timer()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(max(0.0, deadline - time.time()), self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.client.handle_timer(time.time())
        self.pump()

    def _on_event(self, request: Request, event: object) -> None:
        now = time.time()
        if isinstance(event, ResponseReceived):
            if event.response.status < 200:
                return
            self.client.receive_response(event.response, now)
        elif isinstance(event, TransactionTimeout):
            self.client.transaction_failed(now, request=request, reason="timeout")
        elif isinstance(event, TransportError):
            self.client.transaction_failed(now, request=request, reason="transport error")
        else:
            return
        self.pump()


class _LocalSlots:
    """One process's count of calls per trunk (the default, and what unit tests drive)."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    async def acquire(self, trunk_id: int, limit: int | None, call_id: str) -> bool:
        count = self._counts.get(trunk_id, 0)
        if limit is not None and count >= limit:
            return False
        self._counts[trunk_id] = count + 1
        return True

    def release(self, trunk_id: int) -> None:
        count = self._counts.get(trunk_id, 0)
        if count <= 1:
            self._counts.pop(trunk_id, None)
        else:
            self._counts[trunk_id] = count - 1

    def active(self, trunk_id: int) -> int:
        return self._counts.get(trunk_id, 0)

    def counts(self) -> dict[int, int]:
        return dict(self._counts)

    async def by_node(self, trunk_id: int) -> dict[str, int] | None:
        return None  # one node: its own count is the whole count


class Trunks:
    def __init__(self, sip: _Sip, loader: Callable[[], Awaitable[PstnSnapshot]] | None = None,
                 slots: TrunkSlots | None = None) -> None:
        self.sip = sip
        self.loader = loader
        self.snapshot = PstnSnapshot()
        self.slots: TrunkSlots = slots or _LocalSlots()
        self._registrations: dict[int, _Registration] = {}
        self._failed: dict[int, str] = {}  # trunk id -> why its registration could not start
        self._reload_lock = asyncio.Lock()

    async def reload(self) -> None:
        """Read the tables again and swap the snapshot; restart registrations whose settings changed."""
        if self.loader is None:
            return
        async with self._reload_lock:
            snapshot = await self.loader()
            self.snapshot = snapshot
            metrics.ROUTING_SNAPSHOTS.inc()
            wanted = {t.id: t for t in snapshot.trunks.values() if t.register and t.username and t.password}
            for trunk_id, reg in list(self._registrations.items()):
                trunk = wanted.get(trunk_id)
                if trunk is not None and _registration_of(trunk) == _registration_of(reg.trunk):
                    reg.trunk = trunk  # a change elsewhere (limits, tariff): the registration goes on
                    continue
                reg.stop()
                del self._registrations[trunk_id]
            self._failed = {k: v for k, v in self._failed.items() if k in wanted}
            for trunk_id, trunk in wanted.items():
                if trunk_id not in self._registrations:
                    try:
                        reg = _Registration(self, trunk)
                        reg.start()
                    except (SipError, ValueError) as exc:
                        # one trunk's bad settings must not keep the others (or the server) from starting
                        log.error("trunk registration cannot start", trunk=trunk_id, name=trunk.name, error=str(exc))
                        self._failed[trunk_id] = str(exc)
                        continue
                    self._failed.pop(trunk_id, None)
                    self._registrations[trunk_id] = reg

    def dial_target(self, peer: Peer) -> tuple[str, bool] | None:
        """A trunk at ``peer`` (address, port, transport): its host name (SNI, the name its TLS certificate
        must carry) and whether to verify that certificate; None: no trunk there, nothing to connect to."""
        for trunk in self.snapshot.trunks.values():
            if (trunk.address, trunk.port, trunk.transport) == (peer.host, peer.port, peer.transport):
                return trunk.host, trunk.tls_verify
        return None

    def stop(self) -> None:
        for reg in self._registrations.values():
            reg.stop()
        self._registrations.clear()

    # -- calls per trunk ---------------------------------------------------------------------------------
    async def acquire(self, trunk: TrunkInfo, call_id: str = "") -> bool:
        """Count one more call on ``trunk``; False (nothing counted) when it is at its limit."""
        return await self.slots.acquire(trunk.id, trunk.max_calls, call_id)

    def release(self, trunk_id: int) -> None:
        self.slots.release(trunk_id)

    @property
    def active(self) -> dict[int, int]:
        """This node's calls per trunk (those with any)."""
        return self.slots.counts()

    async def shared_status(self, trunk_id: int) -> dict[str, Any]:
        """:meth:`status` with ``active_calls`` counted on every node when the nodes share the trunk's
        channels (a trunk with ``max_calls`` on a cluster: what its limit is checked against), with
        ``active_calls_here`` (this node's) and ``active_calls_by_node``; ``active_calls_scope`` says which
        count ``active_calls`` is (``cluster`` or ``node``). What the REST API shows."""
        out = self.status(trunk_id)
        here = out["active_calls"]
        trunk = self.snapshot.trunks.get(trunk_id)
        # calls on a trunk without a limit are not written anywhere (no round trip for them): this node's
        by_node = await self.slots.by_node(trunk_id) if trunk is not None and trunk.max_calls is not None else None
        out["active_calls_here"] = here
        if by_node is None:
            out["active_calls_scope"] = "node"
        else:
            out["active_calls"] = sum(by_node.values())
            out["active_calls_scope"] = "cluster"
            out["active_calls_by_node"] = by_node
        return out

    def status(self, trunk_id: int) -> dict[str, Any]:
        trunk = self.snapshot.trunks.get(trunk_id)
        reg = self._registrations.get(trunk_id)
        out: dict[str, Any] = {"trunk_id": trunk_id, "loaded": trunk is not None,
                               "active_calls": self.slots.active(trunk_id),
                               "max_calls": trunk.max_calls if trunk else None,
                               "registration": None}
        problem = self.snapshot.rejected.get(trunk_id) or self._failed.get(trunk_id)
        if problem is not None:
            out["registered"] = False if trunk is None or trunk.register else None
            out["last_error"] = f"configuration: {problem}"
        if reg is not None:
            st = reg.client.status()
            out["registration"] = {"state": st.state.value, "last_error": st.last_error,
                                   "registered_until": st.registered_until, "last_attempt_at": st.last_attempt_at,
                                   "next_attempt_at": st.next_attempt_at}
            out["registered"] = st.state.value == "registered"
            out["last_error"] = st.last_error
        return out
