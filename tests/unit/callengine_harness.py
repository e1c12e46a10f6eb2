"""A harness that drives the real :class:`~zvonok.telephony.b2bua.CallEngine` without sockets or waiting.

What is real and what is fake:

- the engine, its mixins, :class:`~zvonok.telephony.location.Location`,
  :class:`~zvonok.telephony.trunks.Trunks` and the SIP message, dialog and SDP code are the real ones;
- the SIP stack is :class:`FakeSip`: it records every response, request, CANCEL and stateless message
  the engine sends (``harness.sip.log``) and hands each client transaction to the test, which answers it
  (:meth:`Harness.reply`) or fails it (:meth:`Harness.timeout`) — the transaction layer itself is tested
  on its own in ``test_transaction.py``;
- the media engine is :class:`FakeMedia` (ports from a small pool, so exhaustion is one argument away;
  what plays, what is bridged; DTMF injected with :meth:`Harness.dtmf`);
- authentication accepts every extension listed in :class:`FakeDirectory`;
- the clock is virtual: the engine runs on :class:`VirtualTimeLoop`, whose ``time()`` only moves when the
  test says so (or when the loop would otherwise sleep until a timer), and the engine's ``clock`` is that
  loop's time. No test waits in real time; a 60 s no-answer timer fires in microseconds.

How to drive a call (a sync test; the harness owns its loop)::

    with Harness() as h:
        alice = h.extension("101")          # a registered extension with one device
        bob = h.extension("102")
        call = h.call(alice, "102")         # alice's phone sends INVITE sip:102@…; the engine runs
        fork = h.invites_to(bob)[0]         # the INVITE the engine placed to bob's device
        h.reply(fork, 180)
        h.reply(fork, 200)                  # bob answers (an SDP answer to the engine's offer)
        assert call.final_status() == 200   # alice got our 200
        call.ack()
        call.bye()                          # alice hangs up: the engine BYEs bob
        assert h.sent_requests("BYE", to=bob)

Every ``h.…`` step runs the loop until nothing is runnable (:meth:`Harness.settle`) without moving the
clock; :meth:`Harness.advance` moves it, firing the engine's timers in order. Entry points of the engine
are called exactly as :class:`~zvonok.telephony.service.SipService` calls them (``on_invite``,
``on_cancel``, ``on_ack``, ``on_request``, client-transaction handlers). ``h.events`` holds what the
engine published on the bus (``CallEnded`` is what the CDR writer turns into a CDR).

Trunks: :meth:`Harness.trunk` adds a carrier trunk and a platform route through it; :meth:`Harness.did`
adds a number (kind ``extension`` or ``access``) that calls from trunks reach; :meth:`Harness.call_from_trunk`
places such a call.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import selectors
import wave
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from zvonok.media.errors import PortsExhausted
from zvonok.media.events import DtmfReceived, MediaTimeout, PlaybackFinished
from zvonok.media.g711 import Codec as MediaCodec
from zvonok.media.interface import Address, Endpoint, Recording, RecordingInfo
from zvonok.org.service import SipCredentials
from zvonok.pstn.routing import NumberInfo, PolicyInfo, PstnSnapshot, RouteInfo, TenantInfo, TrunkInfo
from zvonok.sip.dialog import Dialog, add_top_via, dialog_response
from zvonok.sip.message import Headers, Request, Response, make_response
from zvonok.sip.peer import Peer
from zvonok.sip.sdp import Direction, parse_sdp
from zvonok.sip.sdp_offer_answer import PCMA, PCMU, TELEPHONE_EVENT, LocalSession, build_offer, negotiate
from zvonok.sip.transaction import ResponseReceived, TransactionTimeout
from zvonok.telephony.auth import AuthOutcome
from zvonok.telephony.b2bua import CallEngine
from zvonok.telephony.call import Call
from zvonok.telephony.directory import ExtensionInfo
from zvonok.telephony.location import Binding, Location
from zvonok.telephony.trunks import Trunks

TENANT = 1
DOMAIN = "acme.test"
OUR_HOST = "192.0.2.10"
PHONE_CODECS = (PCMU, PCMA, TELEPHONE_EVENT)


# -- virtual time -------------------------------------------------------------------------------------
class _VirtualSelector:
    """Wraps the loop's selector: never sleeps; a wait for a timer moves the virtual clock instead."""

    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop) -> None:
        self._real = real
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if not ready and timeout is not None and timeout > 0:
            self._loop.now += timeout
        return ready

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on a virtual clock: ``time()`` moves only to the next timer when nothing else can run."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self._selector = _VirtualSelector(self._selector, self)  # type: ignore[has-type,assignment]

    def time(self) -> float:
        return self.now

    @property
    def runnable(self) -> int:
        return len(self._ready)  # type: ignore[attr-defined]


# -- the SIP stack ----------------------------------------------------------------------------------------
@dataclass(eq=False)
class FakeServerTxn:
    """A server transaction as the engine sees it: the request, where it came from, what we answered."""

    request: Request
    peer: Peer
    responses: list[Response] = field(default_factory=list)
    dropped: list[Response] = field(default_factory=list)  # sent after a final one: the real layer drops them

    @property
    def responded(self) -> bool:
        return bool(self.responses)


@dataclass(eq=False)
class FakeClientTxn:
    """A request the engine sent in a client transaction; the test answers it through :meth:`Harness.reply`."""

    request: Request
    peer: Peer
    handler: Callable[[object], None]
    provisional: bool = False
    final: int | None = None
    cancelled: str | None = None  # the Reason of our CANCEL ("" without one)


@dataclass(frozen=True)
class Sent:
    kind: str  # response | request | cancel | stateless
    message: Request | Response
    peer: Peer | None = None
    txn: FakeServerTxn | FakeClientTxn | None = None


class FakeSip:
    """The engine's :class:`~zvonok.telephony.b2bua.SipStack`, recording everything it is asked to send."""

    local_host = OUR_HOST
    local_port = 5060
    t1 = 0.5
    t2 = 4.0

    def __init__(self) -> None:
        self.log: list[Sent] = []
        self.clients: list[FakeClientTxn] = []

    def port_for(self, transport: str) -> int:
        return 5061 if transport == "tls" else 5060

    def respond(self, txn: FakeServerTxn, response: Response) -> None:
        if any(r.status >= 200 for r in txn.responses):
            txn.dropped.append(response)
            return
        txn.responses.append(response)
        self.log.append(Sent("response", response, txn.peer, txn))

    def send_request(self, request: Request, peer: Peer, handler: Callable[[object], None]) -> FakeClientTxn:
        txn = FakeClientTxn(request, peer, handler)
        self.clients.append(txn)
        self.log.append(Sent("request", request, peer, txn))
        return txn

    def cancel(self, invite: FakeClientTxn, reason: str | None = None) -> None:
        if invite.final is not None or invite.cancelled is not None:
            return  # as the real stack: nothing to cancel once a final response came
        invite.cancelled = reason or ""
        self.log.append(Sent("cancel", invite.request, invite.peer, invite))

    def send_stateless(self, message: Request | Response, peer: Peer) -> None:
        self.log.append(Sent("stateless", message, peer))

    # -- what the tests look at ------------------------------------------------------------------------
    def requests(self, method: str, peer: Peer | None = None) -> list[FakeClientTxn]:
        return [t for t in self.clients if t.request.method == method and (peer is None or t.peer == peer)]

    def acks(self, peer: Peer | None = None) -> list[Request]:
        return [s.message for s in self.log if s.kind == "stateless" and isinstance(s.message, Request)
                and s.message.method == "ACK" and (peer is None or s.peer == peer)]


# -- media -------------------------------------------------------------------------------------------------
class FakeMedia:
    """The :class:`~zvonok.media.interface.MediaEngine` without sockets: endpoints from ``ports`` pairs.

    ``play_delay``: how long (virtual seconds) :meth:`play` takes before the prompt starts, as the real
    engine reads a WAV file in a thread. ``in_flight_plays`` is the most plays ever awaited at once on
    one endpoint.
    """

    def __init__(self, ports: int = 100, play_delay: float = 0.0) -> None:
        self.free = ports
        self.exhausted = False  # True: every new endpoint fails as if other calls held every port
        self.play_delay = play_delay
        self._ids = itertools.count(1)
        self.endpoints: dict[str, Endpoint] = {}
        self.released: list[str] = []
        self.remotes: dict[str, tuple[str, int]] = {}
        self.bridges: list[tuple[str, str]] = []
        self.playing: dict[str, object] = {}
        self.played: list[tuple[str, object]] = []
        self.on_finished: dict[str, Callable[[PlaybackFinished], None] | None] = {}
        self.dtmf_callbacks: dict[str, Callable[[DtmfReceived], None] | None] = {}
        self.inband: dict[str, bool] = {}  # in-band key detection, by endpoint
        self.dtmf_gates: dict[str, tuple[tuple[str, ...], float]] = {}  # endpoint id -> feature codes, timeout
        self._in_flight: dict[str, int] = {}
        self.in_flight_plays = 0
        self.recordings: dict[str, tuple[Recording, float, Any]] = {}
        self.mixes: dict[str, dict[str, dict[str, Any]]] = {}  # bridge id -> endpoint id -> speaks, listens, hears
        self.taps: dict[str, Any] = {}
        self.stopped_recordings: list[Recording] = []
        self.udptl: dict[str, tuple[str, int, Any]] = {}  # T.38: endpoint id -> remote host, port, sink

    async def set_udptl(self, endpoint: Endpoint, host: str, port: int, sink: Any = None) -> None:
        self.udptl[endpoint.id] = (host, port, sink)

    def send_datagram(self, endpoint: Endpoint, data: bytes) -> None:
        pass

    async def create_endpoint(self, tenant_id: int, call_id: str, codecs: Sequence[MediaCodec]) -> Endpoint:
        if self.free <= 0 or self.exhausted:
            raise PortsExhausted("no free RTP port pair")
        self.free -= 1
        n = next(self._ids)
        endpoint = Endpoint(id=f"e{n}", tenant_id=tenant_id, call_id=call_id,
                            local_address=Address(host=OUR_HOST, port=20000 + 2 * n), codecs=tuple(codecs))
        self.endpoints[endpoint.id] = endpoint
        return endpoint

    async def set_remote(self, endpoint: Endpoint, host: str, port: int, **_: Any) -> None:
        self.remotes[endpoint.id] = (host, port)

    async def bridge(self, a: Endpoint, b: Endpoint) -> None:
        self._leave_mix(a.id)
        self._leave_mix(b.id)
        self.bridges.append((a.id, b.id))

    def _leave_mix(self, endpoint_id: str) -> None:
        for bridge_id, members in list(self.mixes.items()):
            if members.pop(endpoint_id, None) is not None and not members:
                del self.mixes[bridge_id]  # as the real engine: a mix goes with its last member

    async def mix_bridge(self, bridge_id: str, endpoint: Endpoint, *, speaks: bool = True,
                         listens: bool = True) -> None:
        self._leave_mix(endpoint.id)
        self.mixes.setdefault(bridge_id, {})[endpoint.id] = {"speaks": speaks, "listens": listens, "hears": {}}

    async def set_matrix(self, bridge_id: str, endpoint: Endpoint, *, speaks: bool | None = None,
                         listens: bool | None = None, hears: Any = None) -> None:
        row = self.mixes[bridge_id][endpoint.id]
        if speaks is not None:
            row["speaks"] = speaks
        if listens is not None:
            row["listens"] = listens
        row["hears"].update(hears or {})

    async def leave_bridge(self, endpoint: Endpoint) -> None:
        self._leave_mix(endpoint.id)

    async def unbridge(self, endpoint: Endpoint) -> None:
        pass

    def _end_play(self, endpoint_id: str, *, stopped: bool) -> None:
        if self.playing.pop(endpoint_id, None) is None:
            return
        callback = self.on_finished.pop(endpoint_id, None)
        if callback is not None:
            endpoint = self.endpoints[endpoint_id]
            asyncio.get_running_loop().call_soon(callback, PlaybackFinished(
                tenant_id=endpoint.tenant_id, call_id=endpoint.call_id, endpoint_id=endpoint_id, stopped=stopped))

    async def play(self, endpoint: Endpoint, source: object, *,
                   on_finished: Callable[[PlaybackFinished], None] | None = None) -> None:
        self._in_flight[endpoint.id] = self._in_flight.get(endpoint.id, 0) + 1
        self.in_flight_plays = max(self.in_flight_plays, self._in_flight[endpoint.id])
        try:
            if self.play_delay:
                await asyncio.sleep(self.play_delay)
        finally:
            self._in_flight[endpoint.id] -= 1
        if endpoint.id not in self.endpoints:
            return
        self._end_play(endpoint.id, stopped=True)  # as the real engine: a new source replaces the old one
        self.playing[endpoint.id] = source
        self.on_finished[endpoint.id] = on_finished
        self.played.append((endpoint.id, source))

    def finish_playing(self, endpoint: Endpoint) -> None:
        """The source playing on ``endpoint`` ran out."""
        self._end_play(endpoint.id, stopped=False)

    async def stop_play(self, endpoint: Endpoint) -> None:
        self._end_play(endpoint.id, stopped=True)

    async def record(self, endpoints: Sequence[Endpoint], path: Any, *, stereo: bool, on_silence: Any = None,
                     silence_seconds: float = 0.0) -> Recording:
        """A recording whose file :meth:`stop_record` writes: a 500 Hz tone as long as it ran (virtual time)."""
        recording = Recording(id=f"r{next(self._ids)}", path=Path(path), endpoint_ids=tuple(e.id for e in endpoints),
                              stereo=stereo)
        self.recordings[recording.id] = (recording, asyncio.get_running_loop().time(), on_silence)
        return recording

    def silence(self, recording: Recording, seconds: float) -> None:
        """The recorded caller has been quiet ``seconds`` (the real engine's silence detector)."""
        _rec, _started, callback = self.recordings[recording.id]
        assert callback is not None, "the recording watches no silence"
        endpoint = self.endpoints[recording.endpoint_ids[0]]
        callback(MediaTimeout(tenant_id=endpoint.tenant_id, call_id=endpoint.call_id, endpoint_id=endpoint.id,
                              silent_for=seconds))

    async def tap(self, endpoint: Endpoint, sink: Any) -> Recording:
        """The in-process engine's audio tap (fax): the sink is kept in ``taps``; nothing is written."""
        tap = Recording(id=f"t{next(self._ids)}", path=Path("/dev/null"), endpoint_ids=(endpoint.id,), stereo=False)
        self.taps[tap.id] = sink
        return tap

    async def stop_record(self, recording: Recording) -> RecordingInfo:
        if self.taps.pop(recording.id, None) is not None:
            return RecordingInfo(path=recording.path, seconds=0.0, channels=1)
        rec, started, _callback = self.recordings.pop(recording.id)
        seconds = asyncio.get_running_loop().time() - started
        t = np.arange(int(seconds * 8000)) / 8000
        with wave.open(str(rec.path), "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(8000)
            writer.writeframes((0.3 * 32767 * np.sin(2 * np.pi * 500 * t)).astype("<i2").tobytes())
        self.stopped_recordings.append(rec)
        return RecordingInfo(path=rec.path, seconds=t.size / 8000, channels=1)

    async def on_dtmf(self, endpoint: Endpoint, callback: Callable[[DtmfReceived], None] | None) -> None:
        self.dtmf_callbacks[endpoint.id] = callback

    async def gate_dtmf(self, endpoint: Endpoint, codes: Sequence[str], timeout: float) -> None:
        self.dtmf_gates[endpoint.id] = (tuple(codes), timeout)

    def dtmf(self, endpoint: Endpoint, digit: str) -> None:
        callback = self.dtmf_callbacks.get(endpoint.id)
        assert callback is not None, "nobody listens for keys on this endpoint"
        callback(DtmfReceived(tenant_id=endpoint.tenant_id, call_id=endpoint.call_id, endpoint_id=endpoint.id,
                              digit=digit, duration_ms=100))

    async def on_inactivity(self, endpoint: Endpoint, timeout: float, callback: Any) -> None:
        pass

    async def detect_inband(self, endpoint: Endpoint, on: bool) -> None:
        self.inband[endpoint.id] = on

    async def inject_dtmf(self, endpoint: Endpoint, digit: str, duration_ms: int) -> None:
        callback = self.dtmf_callbacks.get(endpoint.id)
        if callback is not None:
            asyncio.get_running_loop().call_soon(callback, DtmfReceived(
                tenant_id=endpoint.tenant_id, call_id=endpoint.call_id, endpoint_id=endpoint.id, digit=digit,
                duration_ms=duration_ms))

    async def stats(self, endpoint: Endpoint) -> Any:
        raise AssertionError("not used by the call engine")

    async def release(self, endpoint: Endpoint) -> None:
        if self.endpoints.pop(endpoint.id, None) is not None:
            self._leave_mix(endpoint.id)
            self.free += 1
            self.released.append(endpoint.id)
            self.playing.pop(endpoint.id, None)

    @property
    def in_use(self) -> int:
        return len(self.endpoints)


# -- who calls and who is called ----------------------------------------------------------------------------
class FakeDirectory:
    def __init__(self) -> None:
        self.extensions: dict[tuple[int, str], ExtensionInfo] = {}
        self.db = None  # telephony reads PINs and spending from the database: not on these paths

    async def extension(self, tenant_id: int, number: str) -> ExtensionInfo | None:
        return self.extensions.get((tenant_id, number))


class FakeAuth:
    """Every listed extension of the tenant is authenticated (digest is tested in test_digest.py)."""

    def __init__(self, directory: FakeDirectory) -> None:
        self.directory = directory

    def blocked(self, peer: Peer, request: Request | None = None) -> bool:
        return False

    def source_key(self, request: Request, peer: Peer) -> str:
        return peer.host

    def domain_of(self, uri: Any) -> str:
        return str(uri.host_lower)

    async def authenticate(self, request: Request, peer: Peer, now: float, *, domain: str,
                           user: str | None = None, proxy: bool = False) -> AuthOutcome:
        number = request.from_.uri.user_unescaped  # type: ignore[union-attr]
        ext = self.directory.extensions.get((TENANT, number or ""))
        if ext is None:
            return AuthOutcome(response=make_response(request, 403, to_tag="refused"))
        return AuthOutcome(credentials=SipCredentials(
            tenant_id=TENANT, extension_id=ext.extension_id, number=ext.number, display_name=ext.display_name,
            realm=DOMAIN, ha1_md5="", ha1_sha256="", max_devices=5, enabled=True, tenant_suspended=False))


class RecordingBus:
    """Records what the engine publishes; subscribers (the engine's own, e.g. ring groups' memory) get
    the events they want as tasks on the harness loop, as :class:`zvonok.bus.LocalBus` delivers them."""

    def __init__(self) -> None:
        self.events: list[object] = []
        self.subscribers: list[tuple[Callable[[object], Coroutine[Any, Any, None]], tuple[type, ...], Any]] = []

    def publish(self, event: object) -> None:
        self.events.append(event)
        for handler, types, where in self.subscribers:
            if isinstance(event, types) and (where is None or where(event)):
                asyncio.ensure_future(handler(event))

    def subscribe(self, handler: Callable[[object], Coroutine[Any, Any, None]], *, event_types: Sequence[type],
                  where: Any = None, name: str = "") -> None:
        self.subscribers.append((handler, tuple(event_types), where))


@dataclass(eq=False)
class Device:
    """One registered phone of an extension (or a trunk's far end): where the engine sends its INVITEs."""

    number: str
    peer: Peer
    session: LocalSession = field(default_factory=lambda: LocalSession(sess_id=random.getrandbits(31)))


@dataclass(eq=False)
class PhoneCall:
    """A call as the calling phone sees it: its INVITE's server transaction, its dialog once answered."""

    harness: Harness
    device: Device
    invite: Request
    txn: FakeServerTxn
    dialog: Dialog | None = None

    def statuses(self) -> list[int]:
        return [r.status for r in self.txn.responses]

    def final_status(self) -> int | None:
        finals = [s for s in self.statuses() if s >= 200]
        return finals[-1] if finals else None

    @property
    def engine_call(self) -> Call | None:
        leg = self.harness.engine.invites.get(self.txn)  # type: ignore[call-overload]
        return leg.call if leg is not None else None

    def cancel(self) -> None:
        cancel = Request("CANCEL", self.invite.uri, Headers([
            (name, value) for name, value in self.invite.headers
            if name.lower() in ("via", "from", "to", "call-id", "max-forwards")] + [
            ("CSeq", f"{self.invite.cseq.number} CANCEL")]))
        txn = FakeServerTxn(cancel, self.device.peer)
        self.harness.deliver(self.harness.engine.on_cancel, txn, cancel, self.txn)

    def _confirmed(self) -> Dialog:
        if self.dialog is None:
            ok = next(r for r in self.txn.responses if 200 <= r.status < 300)
            self.dialog = Dialog.from_uac(self.invite, ok)
        return self.dialog

    def ack(self) -> None:
        dialog = self._confirmed()
        ack = dialog.create_ack(self.invite.cseq.number)
        _via(ack, self.device.peer)
        self.harness.deliver(self.harness.engine.on_ack, ack, self.device.peer)

    def request(self, method: str, body: bytes = b"", content_type: str | None = None) -> FakeServerTxn:
        dialog = self._confirmed()
        request = dialog.create_request(method, body=body, content_type=content_type)
        _via(request, self.device.peer)
        txn = FakeServerTxn(request, self.device.peer)
        self.harness.deliver(self.harness.engine.on_request, txn, request, self.device.peer)
        self.harness.ack_2xx(dialog, txn, self.device.peer)
        return txn

    def bye(self) -> FakeServerTxn:
        return self.request("BYE")


def _via(request: Request, peer: Peer) -> None:
    add_top_via(request, peer.transport, peer.host, peer.port, branch=f"{random.getrandbits(48):x}")


def _sdp_offer(device: Device, direction: Direction = Direction.SENDRECV) -> bytes:
    return build_offer(device.peer.host, 4000, PHONE_CODECS, direction, device.session).to_bytes()


# -- the harness -------------------------------------------------------------------------------------------
class Harness:
    def __init__(self, *, ports: int = 100, play_delay: float = 0.0, seed: int = 7,
                 **engine_options: Any) -> None:
        self.loop = VirtualTimeLoop()
        self.sip = FakeSip()
        self.media = FakeMedia(ports=ports, play_delay=play_delay)
        self.directory = FakeDirectory()
        self.location = Location()
        self.bus = RecordingBus()
        self.trunks = Trunks(sip=self.sip)  # type: ignore[arg-type]
        self.rng = random.Random(seed)
        self._hosts = itertools.count(1)
        self._ids = itertools.count(1)
        self._far_dialogs: dict[int, Dialog] = {}
        self._batching = False
        self.engine = CallEngine(
            sip=self.sip, media=self.media, auth=FakeAuth(self.directory),  # type: ignore[arg-type]
            location=self.location, directory=self.directory, bus=self.bus,  # type: ignore[arg-type]
            trunks=self.trunks, clock=self.loop.time, rng=self.rng, **engine_options)

    # -- lifecycle ----------------------------------------------------------------------------------------
    def __enter__(self) -> Harness:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if kind is None:
                self.run(self.engine.stop())
        finally:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` on the harness loop, then :meth:`settle`."""
        result = self.loop.run_until_complete(coro)
        self.settle()
        return result

    def settle(self) -> None:
        """Run everything runnable now (tasks, callbacks), without moving the clock."""
        async def idle() -> None:
            quiet = 0
            while quiet < 3:  # our own wake-up is the only ready callback, three times in a row
                await asyncio.sleep(0)
                quiet = quiet + 1 if self.loop.runnable == 0 else 0
        self.loop.run_until_complete(idle())

    def deliver(self, handler: Callable[..., Any], *args: Any) -> Any:
        """Call one of the engine's entry points inside the loop (as the SIP service does), then settle.
        Inside :meth:`at_once` the call is made at once and nothing else runs in between."""
        if self._batching:
            return handler(*args)

        async def call() -> Any:
            return handler(*args)
        return self.run(call())

    def at_once(self, *steps: Callable[[], object]) -> None:
        """Deliver several messages in one go, with nothing of the engine running in between (two messages
        that crossed on the wire and arrive in one datagram burst), then settle."""
        async def burst() -> None:
            self._batching = True
            try:
                for step in steps:
                    step()
            finally:
                self._batching = False
        self.run(burst())

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead, running every timer that falls due on the way, in order."""
        self.run(asyncio.sleep(seconds))

    @property
    def now(self) -> float:
        return self.loop.now

    @property
    def events(self) -> list[object]:
        return self.bus.events

    def events_of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.bus.events if isinstance(e, kind)]

    # -- configuration --------------------------------------------------------------------------------------
    def _peer(self) -> Peer:
        return Peer(transport="udp", host=f"198.51.100.{next(self._hosts)}", port=5060)

    def extension(self, number: str, *, devices: int = 1) -> list[Device]:
        """An enabled extension of the tenant with ``devices`` registered phones."""
        extension_id = next(self._ids)
        self.directory.extensions[(TENANT, number)] = ExtensionInfo(
            tenant_id=TENANT, extension_id=extension_id, number=number, display_name=f"Ext {number}",
            employee_id=None, office_id=None, department_id=None, enabled=True)
        found = []
        for n in range(devices):
            device = Device(number, self._peer())
            self.location.put(Binding(
                tenant_id=TENANT, extension_id=extension_id, aor=f"sip:{number}@{DOMAIN}",
                contact=f"sip:{number}@{device.peer.host}:{device.peer.port}", expires_at=4e9,
                source=f"udp:{device.peer.host}:{device.peer.port}", call_id=f"reg-{number}-{n}"))
            found.append(device)
        return found

    def _snapshot(self, **changes: Any) -> None:
        old = self.trunks.snapshot
        fields = dict(trunks=dict(old.trunks), numbers=dict(old.numbers), routes=list(old.routes),
                      offices=dict(old.offices),
                      policies=dict(old.policies) or {(TENANT, "tenant", None): PolicyInfo(
                          tenant_id=TENANT, level="tenant", ref_id=None, service_class="international")},
                      tenants=dict(old.tenants) or {TENANT: TenantInfo(id=TENANT, domain=DOMAIN, timezone="UTC",
                                                                       currency="RUB", locale="ru", suspended=False)})
        for name, value in changes.items():
            fields[name].update(value) if isinstance(value, dict) else fields[name].extend(value)
        self.trunks.snapshot = PstnSnapshot(**fields)

    def trunk(self, *, priority: int = 1, max_calls: int | None = None) -> tuple[TrunkInfo, Device]:
        """A carrier trunk with a platform route for every number, and the device that is its far end."""
        device = Device("carrier", self._peer())
        info = TrunkInfo(id=next(self._ids), tenant_id=None, name=f"carrier{priority}", kind="carrier",
                         host=device.peer.host, address=device.peer.host, port=device.peer.port, transport="udp",
                         max_calls=max_calls)
        self._snapshot(trunks={info.id: info}, routes=[RouteInfo(tenant_id=None, prefix="", trunk_id=info.id,
                                                                  priority=priority)])
        return info, device

    def did(self, number: str, kind: str, destination: dict[str, Any]) -> None:
        self._snapshot(numbers={number: NumberInfo(id=next(self._ids), tenant_id=TENANT, number=number,
                                                   office_id=None, kind=kind, destination=destination)})

    # -- calls ------------------------------------------------------------------------------------------------
    def _invite(self, device: Device, ruri: str, from_user: str) -> Request:
        request = Request("INVITE", ruri, Headers([
            ("Max-Forwards", "70"),
            ("From", f"<sip:{from_user}@{DOMAIN}>;tag={random.getrandbits(32):x}"),
            ("To", f"<{ruri}>"),
            ("Call-ID", f"{random.getrandbits(64):x}@{device.peer.host}"),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:{from_user}@{device.peer.host}:{device.peer.port}>"),
            ("Content-Type", "application/sdp"),
        ]), _sdp_offer(device))
        _via(request, device.peer)
        return request

    def call(self, caller: Device | list[Device], dialed: str) -> PhoneCall:
        """The caller's phone sends an INVITE for ``dialed`` (an extension or an outside number)."""
        device = caller[0] if isinstance(caller, list) else caller
        request = self._invite(device, f"sip:{dialed}@{DOMAIN}", device.number)
        return self._send_invite(device, request)

    def call_from_trunk(self, trunk: Device, caller_number: str, did: str) -> PhoneCall:
        """A carrier sends an INVITE for one of our numbers."""
        request = self._invite(trunk, f"sip:{did}@{OUR_HOST}", caller_number)
        return self._send_invite(trunk, request)

    def _send_invite(self, device: Device, request: Request) -> PhoneCall:
        txn = FakeServerTxn(request, device.peer)
        self.deliver(self.engine.on_invite, txn, request, device.peer)
        return PhoneCall(self, device, request, txn)

    def invites_to(self, device: Device | list[Device]) -> list[FakeClientTxn]:
        device = device[0] if isinstance(device, list) else device
        return [t for t in self.sip.requests("INVITE", device.peer) if t.request.headers.get("to")
                and ";tag=" not in (t.request.headers.get("to") or "")]

    def reply(self, txn: FakeClientTxn, status: int, *, to_tag: str = "callee", body: bytes | None = None,
              headers: Sequence[tuple[str, str]] = (), device: Device | None = None) -> Response:
        """The far end answers a request the engine sent: a 2xx to an INVITE carries an SDP answer."""
        request = txn.request
        if body is None and request.method == "INVITE" and (status == 183 or 200 <= status < 300):
            session = device.session if device is not None else LocalSession(sess_id=1)
            answer, _ = negotiate(parse_sdp(request.body), PHONE_CODECS, txn.peer.host, 4000, session)
            body = answer.to_bytes()
        if status == 100:
            response = make_response(request, 100)
        else:
            tag = (request.to.tag or to_tag) if request.to.tag else to_tag
            response = dialog_response(request, status, tag, f"<sip:far@{txn.peer.host}:{txn.peer.port}>",
                                       body=body or b"", content_type="application/sdp" if body else None,
                                       extra_headers=headers)
        if status < 200:
            txn.provisional = True
        elif txn.final is None:
            txn.final = status
        self.deliver(txn.handler, ResponseReceived(response=response, peer=txn.peer, transaction=txn))  # type: ignore[arg-type]
        return response

    def dtmf(self, endpoint: Endpoint, digits: str) -> None:
        """The caller presses ``digits`` (RFC 4733 events on ``endpoint``), each delivered on its own."""
        for digit in digits:
            self.deliver(self.media.dtmf, endpoint, digit)

    def timeout(self, txn: FakeClientTxn) -> None:
        self.deliver(txn.handler, TransactionTimeout(transaction=txn, timer="B"))  # type: ignore[arg-type]

    def request_from(self, txn: FakeClientTxn, response: Response, method: str, *, body: bytes = b"",
                     headers: Sequence[tuple[str, str]] = ()) -> FakeServerTxn:
        """The far end of a dialog the engine created (with ``txn``'s INVITE, answered by ``response``)
        sends ``method`` in it (BYE, a re-INVITE, a REFER with its Refer-To in ``headers``)."""
        dialog = self._far_dialogs.get(id(txn))
        if dialog is None:
            dialog = Dialog.from_uas(txn.request, response, f"<sip:far@{txn.peer.host}:{txn.peer.port}>",
                                     secure=False)
            self._far_dialogs[id(txn)] = dialog
        request = dialog.create_request(method, body=body, content_type="application/sdp" if body else None,
                                        extra_headers=list(headers))
        _via(request, txn.peer)
        server_txn = FakeServerTxn(request, txn.peer)
        self.deliver(self.engine.on_request, server_txn, request, txn.peer)
        self.ack_2xx(dialog, server_txn, txn.peer)
        return server_txn

    def ack_2xx(self, dialog: Dialog, txn: FakeServerTxn, peer: Peer) -> None:
        """A device ACKs the 2xx to its re-INVITE as a real one does (RFC 3261 §13.2.2.4), at once."""
        request = txn.request
        if request.method == "INVITE" and any(200 <= r.status < 300 for r in txn.responses):
            ack = dialog.create_ack(request.cseq.number)
            _via(ack, peer)
            self.deliver(self.engine.on_ack, ack, peer)

    # -- assertions' helpers ----------------------------------------------------------------------------------
    def sent_requests(self, method: str, to: Device | list[Device] | None = None) -> list[FakeClientTxn]:
        device = to[0] if isinstance(to, list) else to
        return self.sip.requests(method, device.peer if device is not None else None)

    def offer(self, device: Device, direction: Direction = Direction.SENDRECV) -> bytes:
        return _sdp_offer(device, direction)
