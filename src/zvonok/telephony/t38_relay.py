"""T.38 through the B2BUA: a re-INVITE to T.38 on one leg of a bridged call is offered on to the other
leg, and once both agree the legs' sockets relay UDPTL datagrams as they are.

How it works: a carrier (or a gateway) re-INVITEs its leg with ``m=image udptl t38`` while the call is
bridged to another device (an ATA, another trunk, or our own fax application on a second server). Our
two legs each run their own offer/answer, so the offer cannot simply pass: :meth:`T38Relay.ask_other`
re-INVITEs the other leg with the first leg's T.38 parameters (on the other leg's own address and
port) and waits for its answer (the leg's ``T38Agreed``, or ``ReofferFailed``, resolved by
:meth:`T38Relay.answered`; at most :data:`ANSWER_WAIT` seconds). Agreed: the first leg's offer/answer
is given the other side's agreed parameters (its maximum datagram, since datagrams pass unchanged), so
the re-INVITE is answered with T.38, and :meth:`T38Relay.connect` switches both endpoints to UDPTL mode
with no terminal behind them: the media engine sends each datagram on to the bridged endpoint. Refused:
the re-INVITE goes to its leg's machine unchanged, which answers 488 for an image-only offer (the carrier
then stays on G.711 pass-through, which the relay carries as any audio). A trunk with ``t38: off`` on
either side refuses the same way.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from zvonok.logs import get_logger
from zvonok.sip.message import Request
from zvonok.sip.sdp import Direction, SdpError, parse_sdp
from zvonok.sip.sdp_t38 import NegotiatedT38, image_stream, t38_params

from .call import Leg, LegState
from .leg_states import LIVE

log = get_logger(__name__)

ANSWER_WAIT = 32.0  # RFC 3261's 64*T1: the other leg's re-INVITE transaction has given up by then


def trunk_t38(engine: Any, leg: Leg) -> str:
    """The T.38 mode of the leg's trunk (off | accept | offer); accept for a leg of no trunk."""
    trunks = getattr(engine, "trunks", None)
    if leg.trunk_id is None or trunks is None:
        return "accept"
    trunk = trunks.snapshot.trunks.get(leg.trunk_id)
    return str(getattr(trunk, "t38", "accept")) if trunk is not None else "accept"


class T38Relay:
    def __init__(self, engine: Any) -> None:
        self.engine = engine  # zvonok.telephony.b2bua.CallEngine
        self.pending: dict[str, asyncio.Future[NegotiatedT38 | None]] = {}  # other leg's id → its answer

    def wanted(self, leg: Leg, request: Request) -> Leg | None:
        """The other leg to ask, when ``request`` re-INVITEs a bridged, non-fax call to T.38."""
        call = leg.call
        if request.method != "INVITE" or not request.body or call.fax is not None or call.threeway is not None:
            return None
        machine = leg.sip
        if machine is None or machine.offer_answer.image is not None:
            return None  # (a re-INVITE of a relay already running is answered by the leg's machine)
        other = call.other(leg)
        if other is None or other.state is not LegState.ANSWERED or other.sip is None or other.endpoint is None:
            return None
        if other.sip.state not in LIVE or "off" in (trunk_t38(self.engine, leg), trunk_t38(self.engine, other)):
            return None
        try:
            offer = parse_sdp(request.body)
        except SdpError:
            return None
        return other if image_stream(offer) is not None else None

    async def ask_other(self, leg: Leg, other: Leg, request: Request) -> None:
        """Offer the other leg T.38 as ``leg``'s peer asks for it; on its agreement, ``leg``'s machine will
        answer the re-INVITE with T.38 (else 488)."""
        media = image_stream(parse_sdp(request.body))
        assert media is not None and leg.sip is not None and other.sip is not None
        theirs = t38_params(media)
        offer_answer = other.sip.offer_answer
        offer_answer.t38 = replace(theirs, fill_bit_removal=False, mmr=False, jbig=False)
        offer_answer.offer_image = True
        future: asyncio.Future[NegotiatedT38 | None] = asyncio.get_running_loop().create_future()
        self.pending[other.id] = future
        try:
            other.sip.reoffer(Direction.SENDRECV, self.engine.clock())
            self.engine._drive(other)
            agreed = await asyncio.wait_for(future, ANSWER_WAIT)
        except TimeoutError:
            agreed = None
        finally:
            self.pending.pop(other.id, None)
        if agreed is None or leg.call.ended:
            offer_answer.t38 = None
            offer_answer.offer_image = False
            log.info("t38: the other leg refused T.38", call=leg.call.id, leg=other.id)
            return
        leg.sip.offer_answer.t38 = replace(agreed.params, max_datagram=agreed.remote_max_datagram)

    def answered(self, leg: Leg, image: NegotiatedT38 | None) -> bool:
        """The other leg's answer to :meth:`ask_other`'s offer; False when nobody waits for it."""
        future = self.pending.get(leg.id)
        if future is None:
            return False
        if not future.done():
            future.set_result(image)
        return True

    async def connect(self, leg: Leg, image: NegotiatedT38) -> None:
        """``leg`` answered T.38: both endpoints carry UDPTL, relayed as they are to each other."""
        other = leg.call.other(leg)
        machine = other.sip if other is not None else None
        theirs = machine.offer_answer.image if machine is not None else None
        if other is None or other.endpoint is None or leg.endpoint is None or theirs is None:
            return
        media: Any = self.engine.media
        await media.set_udptl(other.endpoint, theirs.remote_host, theirs.remote_port)
        await media.set_udptl(leg.endpoint, image.remote_host, image.remote_port)
        log.info("t38: relaying UDPTL", call=leg.call.id, a=f"{image.remote_host}:{image.remote_port}",
                 b=f"{theirs.remote_host}:{theirs.remote_port}")
