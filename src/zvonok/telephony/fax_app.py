"""Fax in the call engine: a DID whose destination is ``fax`` answers and receives with spandsp.

How it works: the caller's leg is answered like voicemail's (:meth:`CallControl._negotiate_caller`,
``_answer_caller``), then its media endpoint is given to one :class:`~zvonok.fax.endpoint.FaxEndpoint`
both ways: the media engine's audio tap (:meth:`InProcessMediaEngine.tap`) hands it what the caller
sends as a continuous 20 ms stream, and a player sends what it produces (its ``read_frame``), paced by
the engine's absolute deadlines. This is G.711 pass-through fax (T.30 over the V.17/V.29/V.27ter modems
inside the audio).

T.38: unless the leg's trunk says ``t38: off``, the leg's offer/answer may take T.38 (our parameters in
``OfferAnswer.t38``). A carrier's re-INVITE to T.38 is answered there, and before its 200 goes the engine
calls :meth:`FaxApp.switch_to_t38`: the audio terminal is replaced by a :class:`~zvonok.fax.t38.T38Endpoint`
(same role and file, T.30 afresh), the endpoint's socket is switched to UDPTL (the media engine's
``set_udptl``: datagrams to our sink, ours sent with ``send_datagram``) and a 20 ms ticker, on absolute
deadlines, drives spandsp's T.38 timing. A trunk with ``t38: offer`` gets our own re-INVITE to T.38 when
it answers a fax we send (:meth:`FaxApp.offer_t38`); its 2xx comes back as the leg's ``T38Agreed`` and the
same switch follows; a refusal (488) leaves the fax on G.711.

When T.30 reaches phase E the tap's write sees ``endpoint.done`` and queues one step that hangs up; the
engine's ``_finish`` then calls :meth:`FaxApp.ended`, which stops the media, frees spandsp and hands the
TIFF to :class:`FaxPort` (the fax domain: PDF, row, event). A caller who hangs up mid-page ends the same
way, with T.30's failure code. No SQL here: documents are rows behind the port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from zvonok.fax.endpoint import FaxEndpoint, FaxResult
from zvonok.fax.spandsp import SpandspUnavailable
from zvonok.fax.t38 import T38Endpoint
from zvonok.logs import get_logger
from zvonok.media.interface import Endpoint, MediaEngine, Recording
from zvonok.sip.sdp import Direction
from zvonok.sip.sdp_t38 import REDUNDANCY, NegotiatedT38, T38Params
from zvonok.sip.uri import SipUri

from . import events as ev
from .call import Call

log = get_logger(__name__)

# a fax call that goes on this long is stuck (a 50-page document at 9600 bit/s takes ~25 minutes)
MAX_FAX_SECONDS = 1800.0
# what we declare: T.38 version 0 (what every carrier speaks), V.17's 14400 bit/s, transferred TCF,
# redundancy; the largest UDPTL datagram we take (our receive path has no smaller limit)
OUR_T38 = T38Params(version=0, max_bit_rate=14400, max_datagram=400, udp_ec=REDUNDANCY)
T38_TICK = 0.020


@dataclass(frozen=True, slots=True, kw_only=True)
class IncomingFax:
    id: int
    tiff: Path  # where spandsp writes (or, sending, reads) the pages
    emails: tuple[str, ...] = ()  # receiving: where the document is e-mailed (the fax destination's)


class FaxPort(Protocol):
    async def begin_receive(
        self, tenant_id: int, *, call_id: str, remote_number: str, local_number: str, emails: tuple[str, ...] = (),
        extension: str | None = None,
    ) -> IncomingFax:
        """A row for the fax arriving; ``extension``: the employee's own fax line, whose fax address is
        added to ``emails``."""
        ...

    async def finish_receive(
        self, tenant_id: int, fax: IncomingFax, result: FaxResult | None, reason: str
    ) -> int:
        """Keep the received pages (TIFF → PDF, the row updated, the e-mail queued); the page count kept."""
        ...

    async def start_send(self, tenant_id: int, fax_id: int, call_id: str) -> None: ...

    async def finish_send(
        self, tenant_id: int, fax_id: int, result: FaxResult | None, reason: str, *, status: int | None
    ) -> float | None:
        """Record how sending ended (``status``: the SIP status of a call never answered); the delay
        after which to try again (busy, no answer: a few times), or None when it is over."""
        ...


class CallControl(Protocol):
    media: MediaEngine

    trunks: Any  # telephony.trunks: its snapshot has the trunks' T.38 modes

    def step(self, call: Call, coro: Coroutine[Any, Any, None]) -> None: ...

    clock: Callable[[], float]

    def _drive(self, leg: Any, *, hold: object | None = None) -> Any: ...

    def publish(self, event_type: type[ev.CallEvent], call: Call, **fields: Any) -> None: ...

    async def _negotiate_caller(self, call: Call) -> bool: ...

    def _answer_caller(self, call: Call, answered_by: Any = None) -> None: ...

    async def _refuse(
        self,
        call: Call,
        status: int,
        cause: str,
        reason: str | None = None,
        disposition: ev.Disposition = ev.Disposition.FAILED,
    ) -> None: ...

    def _hangup(
        self,
        call: Call,
        from_leg: Any,
        side: ev.HangupSide,
        cause: str,
        disposition: ev.Disposition | None = None,
    ) -> None: ...


@dataclass(eq=False)
class FaxSession:
    """One call's fax (``call.fax``)."""

    fax: IncomingFax
    remote_number: str
    endpoint: FaxEndpoint | T38Endpoint | None = None
    direction: str = "in"  # "in": a DID answered; "out": telephony.fax_sender placed the call
    tap: Recording | None = None
    hanging_up: bool = False
    guard: asyncio.TimerHandle | None = None
    status: int | None = None  # out: the final SIP status of a call never answered
    ticker: asyncio.TimerHandle | None = None  # T.38: the next 20 ms tick of the terminal


class _Listener:
    """The audio tap's sink: feeds the terminal, and asks for the hang-up once T.30 is over."""

    def __init__(self, app: FaxApp, call: Call, session: FaxSession, endpoint: FaxEndpoint) -> None:
        self.app, self.call, self.session, self.endpoint = app, call, session, endpoint

    def write(self, samples: npt.NDArray[np.int16]) -> None:
        self.endpoint.write(samples)
        if self.endpoint.done and not self.session.hanging_up:
            self.session.hanging_up = True
            self.app.engine.step(self.call, self.app.over(self.call, "fax_done"))


class FaxApp:
    def __init__(self, engine: CallControl, port: FaxPort) -> None:
        self.engine = engine
        self.port = port
        # a send to try again later (busy, no answer): telephony.fax_sender's, set by the composition root
        self.on_retry: Callable[[int, int], None] | None = None

    async def receive(self, call: Call, destination: Any, *, from_number: str) -> None:
        """An inbound call to a ``fax`` destination (a DID's, or an IVR key's): answer it (unless a menu
        did) and receive a document."""
        caller = call.caller
        assert caller is not None
        uri = caller.invite.uri if caller.invite is not None else None
        did = (uri.user_unescaped or "") if isinstance(uri, SipUri) else ""
        emails = destination.get("emails") if isinstance(destination, dict) else None
        extension = destination.get("number") if isinstance(destination, dict) else None
        fax = await self.port.begin_receive(
            call.tenant_id, call_id=call.id, remote_number=from_number, local_number=did,
            emails=tuple(emails or ()), extension=extension,
        )
        session = FaxSession(fax=fax, remote_number=from_number)
        call.fax = session
        try:
            session.endpoint = FaxEndpoint(calling=False, rx_tiff=fax.tiff, ident=did[:20])
        except SpandspUnavailable:
            log.error("fax: libspandsp is not installed", call=call.id)
            if call.answered_at is None:
                await self.engine._refuse(call, 503, "fax_unavailable")
            else:
                self.engine._hangup(call, None, ev.HangupSide.SYSTEM, "fax_unavailable")
            return
        if not await self.engine._negotiate_caller(call):
            return
        if call.answered_at is None:  # else a voice menu answered it and sent the caller here (a key)
            self.engine._answer_caller(call)
        assert caller.endpoint is not None
        await self.attach(call, session, caller.endpoint, caller)
        log.info("fax: receiving", call=call.id, tenant=call.tenant_id, fax=fax.id, caller=from_number)

    def t38_mode(self, leg: Any) -> str:
        """The T.38 mode of the leg's trunk (off | accept | offer); accept for a leg of no trunk."""
        trunk_id = getattr(leg, "trunk_id", None)
        trunks = getattr(self.engine, "trunks", None)
        if trunk_id is None or trunks is None:
            return "accept"
        trunk = trunks.snapshot.trunks.get(trunk_id)
        return str(getattr(trunk, "t38", "accept")) if trunk is not None else "accept"

    async def attach(self, call: Call, session: FaxSession, media_endpoint: Endpoint, leg: Any = None) -> None:
        """Wire the terminal to the answered leg's media: a player sends, the audio tap listens; the leg
        may go T.38 unless its trunk says off."""
        endpoint = session.endpoint
        assert isinstance(endpoint, FaxEndpoint)
        machine = getattr(leg, "sip", None)
        if machine is not None and self.t38_mode(leg) != "off":
            machine.offer_answer.t38 = OUR_T38
        media: Any = self.engine.media  # the audio tap is the in-process engine's
        await media.play(media_endpoint, endpoint)
        session.tap = await media.tap(media_endpoint, _Listener(self, call, session, endpoint))
        session.guard = asyncio.get_running_loop().call_later(
            MAX_FAX_SECONDS, lambda: self.engine.step(call, self.over(call, "fax_timeout"))
        )

    def offer_t38(self, call: Call, leg: Any) -> None:
        """Re-INVITE the answered leg to T.38 (its trunk says ``offer``)."""
        machine = getattr(leg, "sip", None)
        if machine is None or call.ended or machine.offer_answer.t38 is None:
            return
        machine.offer_answer.offer_image = True
        machine.reoffer(Direction.SENDRECV, self.engine.clock())
        self.engine._drive(leg)
        log.info("fax: offering T.38", call=call.id)

    async def switch_to_t38(self, call: Call, leg: Any, image: NegotiatedT38) -> None:
        """T.38 was agreed on the fax leg: replace the audio terminal and carry UDPTL on its socket."""
        session: FaxSession | None = call.fax
        media: Any = self.engine.media
        if session is None or call.ended or leg.endpoint is None:
            return
        current = session.endpoint
        if isinstance(current, T38Endpoint):  # a re-INVITE that moved the peer: send there from now on
            await media.set_udptl(leg.endpoint, image.remote_host, image.remote_port, sink=self._sink(call, session, current, leg.endpoint))
            return
        if current is None:
            return
        if session.tap is not None:
            tap, session.tap = session.tap, None
            await media.stop_record(tap)
        await media.stop_play(leg.endpoint)
        terminal = T38Endpoint.replacing(
            current, version=image.params.version, max_datagram=image.remote_max_datagram,
            max_bit_rate=image.params.max_bit_rate, redundancy=3 if image.redundancy else 0,
        )
        current.close()
        session.endpoint = terminal
        await media.set_udptl(leg.endpoint, image.remote_host, image.remote_port,
                              sink=self._sink(call, session, terminal, leg.endpoint))
        loop = asyncio.get_running_loop()
        self._tick(loop, loop.time() + T38_TICK, call, session, terminal, leg.endpoint)
        log.info("fax: switched to T.38", call=call.id, tenant=call.tenant_id, fax=session.fax.id,
                 remote=f"{image.remote_host}:{image.remote_port}", version=image.params.version,
                 max_datagram=image.remote_max_datagram, redundancy=image.redundancy)

    def _sink(self, call: Call, session: FaxSession, terminal: T38Endpoint, media_endpoint: Endpoint) -> Callable[[bytes], None]:
        media: Any = self.engine.media

        def received(datagram: bytes) -> None:
            terminal.receive(datagram)
            for out in terminal.datagrams():
                media.send_datagram(media_endpoint, out)
            self._check_done(call, session, terminal)

        return received

    def _tick(self, loop: asyncio.AbstractEventLoop, when: float, call: Call, session: FaxSession,
              terminal: T38Endpoint, media_endpoint: Endpoint) -> None:
        session.ticker = None
        if session.endpoint is not terminal or call.ended:
            return
        media: Any = self.engine.media
        for out in terminal.tick():
            media.send_datagram(media_endpoint, out)
        self._check_done(call, session, terminal)
        now = loop.time()
        when += T38_TICK
        if when < now - 1.0:  # the loop stalled for a second: do not burst to catch up
            when = now
        session.ticker = loop.call_at(when, self._tick, loop, when, call, session, terminal, media_endpoint)

    def _check_done(self, call: Call, session: FaxSession, terminal: T38Endpoint) -> None:
        if terminal.done and not session.hanging_up:
            session.hanging_up = True
            self.engine.step(call, self.over(call, "fax_done"))

    async def over(self, call: Call, cause: str) -> None:
        if not call.ended:
            self.engine._hangup(call, None, ev.HangupSide.SYSTEM, cause)

    async def ended(self, call: Call, disposition: ev.Disposition) -> ev.Disposition:
        """The call ends (the engine's ``_finish``): stop the media, keep the document, report it."""
        session: FaxSession | None = call.fax
        if session is None:
            return disposition
        call.fax = None
        if session.guard is not None:
            session.guard.cancel()
        if session.ticker is not None:
            session.ticker.cancel()
            session.ticker = None
        leg = call.caller if session.direction == "in" else call.callee
        if session.tap is not None:
            tap, session.tap = session.tap, None
            await self.engine.media.stop_record(tap)
            if leg is not None and leg.endpoint is not None:
                await self.engine.media.stop_play(leg.endpoint)
        result: FaxResult | None = None
        if session.endpoint is not None:
            session.endpoint.close()  # T.30 reports how far it got when the other side hung up first
            result = session.endpoint.result
        if session.status is not None and call.answered_at is None:
            reason = f"not answered (SIP {session.status})"
        elif result is not None:
            reason = result.text
        else:
            reason = "no fax call"
        ok = result is not None and result.ok
        try:
            if session.direction == "in":
                pages = await self.port.finish_receive(call.tenant_id, session.fax, result, reason)
            else:
                pages = result.pages_tx if result is not None else 0
                retry = await self.port.finish_send(
                    call.tenant_id, session.fax.id, result, reason, status=session.status
                )
                if retry is not None and self.on_retry is not None:
                    asyncio.get_running_loop().call_later(
                        retry, self.on_retry, call.tenant_id, session.fax.id
                    )
        except Exception:  # noqa: BLE001 - a lost document must not lose the CDR
            log.exception("fax: failed to keep a document", call=call.id, direction=session.direction)
            return disposition
        log.info(
            "fax: finished",
            call=call.id,
            tenant=call.tenant_id,
            fax=session.fax.id,
            direction=session.direction,
            ok=ok,
            pages=pages,
            result=reason,
        )
        self.engine.publish(
            ev.FaxFinished,
            call,
            fax_id=session.fax.id,
            direction=session.direction,
            ok=ok,
            pages=pages,
            result=reason,
            remote_number=session.remote_number,
            transport=result.transport if result is not None else "audio",
        )
        return disposition
