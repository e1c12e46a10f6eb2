"""The call engine: a back-to-back user agent between extensions of one tenant.

How it works: an INVITE from a registered extension is authenticated (407, RFC 3261 §22.3), routed
(the dialed number names an extension of the caller's tenant) and answered as a UAS on the caller's
leg, while the engine places a new INVITE as a UAC to every registered device of the callee (parallel
forking) with its own Call-ID, tags and SDP: topology hiding, and the media always flows through our
endpoints (one per leg) so the engine can relay, transcode, record and detect silence. Provisional
responses become a 180 (or a 183 with early media) to the caller; the first 2xx wins, the other forks
are cancelled with ``Reason: SIP;cause=200;text="Call completed elsewhere"`` (RFC 3326), the endpoints
are bridged and the caller gets our 200 with our answer to its offer. BYE from either side ends both
dialogs; CANCEL before the answer ends the forks. Every step is published on the bus as a typed call
event (:mod:`zvonok.telephony.events`): the CDR writer and the websocket consume those, never SIP.

The SIP mechanics of each leg's dialog — our INVITE and its CANCEL, the 2xx and its ACK (ours re-sent
until it comes), re-INVITEs and UPDATEs with glare, RFC 4028 session timers, BYE — are not here: each leg
is a :class:`zvonok.telephony.leg.Leg` machine, fed and driven by :mod:`zvonok.telephony.leg_wiring`
(one timer per leg). This module is the call logic above the legs: what their events mean for the call.

Also here: delayed offer (an INVITE without SDP gets our offer in the 200, the answer in the ACK), blind
and attended transfer (REFER, REFER with Replaces), hold relayed to the other party (with music), in-band
ringback and busy tone (``ringback="inband"``), and an RTP inactivity timeout for vanished peers.

One call's work that awaits (answering a re-INVITE, connecting the answer, the access-number dialogue's
prompts) runs as steps of that call's inbox (:meth:`CallEngine.step`): one at a time, in order, so no
step sees the call change under it while another awaits; a step that raises ends the call cleanly (a
final response or BYE, ports and trunk slots freed, CallEnded for the CDR). What needs no await (a
response, a CANCEL, a BYE) is handled at once; ending a call is never queued behind a step.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zvonok import destination as dst
from zvonok.bus import Bus
from zvonok.logs import get_logger
from zvonok.media.errors import PortsExhausted
from zvonok.media.events import MediaTimeout
from zvonok.media.g711 import Codec as MediaCodec
from zvonok.media.hold_music import HoldMusic
from zvonok.media.interface import BUSY_RU, RINGBACK_RU, Endpoint, MediaEngine, SrtpKeys
from zvonok.pstn.routing import CallerProfile
from zvonok.sip.dialog import (
    DialogKey,
    DialogState,
    add_top_via,
    dialog_key_for_request,
)
from zvonok.sip.grammar import name_addr, uri_host
from zvonok.sip.message import Request, Response, make_response
from zvonok.sip.peer import Peer
from zvonok.sip.sdp import Direction as SdpDirection
from zvonok.sip.sdp_offer_answer import (
    Codec,
    LocalSession,
    NegotiatedMedia,
)
from zvonok.sip.transaction import (
    ServerTransaction,
)
from zvonok.sip.uas import is_sips
from zvonok.sip.uri import SipUri

from . import events as ev
from .access import AccessNumbers
from .agent_codes import AgentCodes
from .auth import Authenticator
from .call import CODECS, Call, CallSnapshot, Leg, LegState
from .call_forward import Forwarding
from .conference import Conferences
from .counters import SpendLedger
from .directory import Directory, ExtensionInfo
from .edge import route_to
from .forwarding import Reason as ForwardReason
from .info_dtmf import info_dtmf
from .ivr import Ivr
from .leg_events import (
    Answered,
    Challenged,
    MediaUpdated,
    Progress,
    ReofferFailed,
    RequestForApplication,
    T38Agreed,
    Terminated,
    TerminationCause,
)
from .leg_session_timer import session_expires_of  # one parser for the engine and the Leg
from .leg_states import LIVE, WAIT_ACK
from .leg_states import LegState as SipLegState
from .leg_wiring import LegWiringMixin, SipStack
from .location import Binding, Location
from .monitor import Monitoring
from .outside import Outside
from .owner_first import ClientOwners
from .park import Parking
from .pickup import Pickup
from .pin_guard import PinGuard
from .queue_call import QueueCalls
from .ring_group_call import RingGroupCalls
from .t38_relay import T38Relay
from .threeway import ThreeWayCalls
from .throttle import FailureThrottle
from .transfers import Transfers
from .trunks import Trunks
from .voicemail import Voicemail
from .voicemail_dialogue import GreetingKind

log = get_logger(__name__)

BUSY_STATUSES = frozenset({486, 600})
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, NOTIFY, REFER"


def _tag() -> str:
    return os.urandom(6).hex()


def _new_session() -> LocalSession:
    return LocalSession(sess_id=int.from_bytes(os.urandom(4), "big"))


def _session_expires(request: Request) -> int | None:
    found = session_expires_of(request)
    return found[0] if found is not None else None


def peer_of(binding: Binding) -> Peer:
    """Where to reach a registered device: the address its REGISTER came from (NAT-safe)."""
    transport, _, rest = binding.source.partition(":")
    host, _, port = rest.rpartition(":")
    return Peer(transport=transport, host=host.strip("[]"), port=int(port), connection=binding.connection)


class CallEngine(LegWiringMixin):
    def __init__(self, *, sip: SipStack, media: MediaEngine, auth: Authenticator, location: Location,
                 directory: Directory, bus: Bus, no_answer_timeout: float = 60.0,
                 media_timeout: float = 60.0, recordings_dir: Path | None = None,
                 record_stereo: bool = True, flood: FailureThrottle | None = None,
                 session_min_se: int = 90, ringback: str = "local", busy_tone_seconds: float = 3.0,
                 trunks: Trunks | None = None, prompt_language: str = "ru", srtp_policy: str = "optional",
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self.sip = sip
        self.media = media
        self.auth = auth
        self.location = location
        self.directory = directory
        self.bus = bus
        self.no_answer_timeout = no_answer_timeout
        self.media_timeout = media_timeout
        self.recordings_dir = recordings_dir  # None: calls are not recorded
        # every new INVITE counts; an address placing more than the limit per window gets 503
        self.flood = flood or FailureThrottle(limit=30, window=1.0, ban_time=30.0)
        self.record_stereo = record_stereo
        self.session_min_se = session_min_se
        self.trunks = trunks  # None: no outside world (extension-to-extension only)
        self.pin_guard = PinGuard()  # wrong access-number PINs, by caller ID and source
        self.prompt_language = prompt_language
        self.srtp_policy = srtp_policy  # for extensions and trunks without their own
        # "local": the caller's phone rings on our 180; "inband": a 183 and the Russian 425 Hz ringback
        # (and the busy tone before a 486) from us, for callers that play only what they receive
        self.inband_ringback = ringback == "inband"
        self.busy_tone_seconds = busy_tone_seconds
        # injected so that unit tests run calls on a fake clock (the event loop's, when virtual) and pick
        # the random delays (RFC 3261 §14.1 glare retry) deterministically
        self.clock = clock
        self.rng = rng or random.Random()
        self.calls: dict[str, Call] = {}
        # every leg of an extension, by (tenant, extension id), until its call ends: "is this extension in
        # another call" (busy, a three-way's sibling) looks at that extension's few legs, not at every call
        self.extension_legs: dict[tuple[int, int], set[Leg]] = {}
        self.dialogs: dict[DialogKey, Leg] = {}
        # the leg holding each media endpoint: the media engine's callbacks (RTP silence, keys) carry the
        # endpoint's id, so one callback serves every leg instead of a closure kept per leg for the call's life
        self.endpoint_legs: dict[str, Leg] = {}
        self._on_media_timeout = self._media_timeout  # one bound method for every leg's silence check
        self.invites: dict[ServerTransaction, Leg] = {}
        self.unacked: dict[DialogKey, Leg] = {}  # legs of ended calls whose 2xx still waits for its ACK
        self._tasks: set[asyncio.Task[None]] = set()
        self.conferences: Conferences | None = None  # set by the composition root (telephony/conference.py)
        self.ivr: Ivr | None = None  # set by the composition root (telephony/ivr.py)
        self.hold_music: HoldMusic | None = None  # set by the composition root; None: held parties hear silence
        # call pickup (*8, **<ext>) and call park (transfer to 700, dial 701–720): set by the composition
        # root (telephony/pickup.py, telephony/park.py); None: those numbers are dialed like any other
        self.forwards = Forwarding(self)  # forwarding, DND and their feature codes (telephony/call_forward.py)
        self.access_numbers = AccessNumbers(self)  # the access number + PIN service (telephony/access.py)
        self.client_owners: ClientOwners | None = None  # routing by owner (the CRM's port), set by the root
        self.ledger: SpendLedger | None = None  # spending holds of calls in progress (zvonok.pstn.holds), set by the root
        self.outside = Outside(self)  # trunks and numbers: in, out, failover, spending limits (telephony/outside.py)
        self.transfers = Transfers(self)  # REFER, blind and attended (telephony/transfers.py)
        self.group_calls = RingGroupCalls(self)  # calls to ring groups (telephony/ring_group_call.py)
        self.pickup: Pickup | None = None
        self.parking: Parking | None = None
        self.voicemail: Voicemail | None = None  # set by the composition root (telephony/voicemail.py)
        self.queue_calls: QueueCalls | None = None  # set by the composition root (telephony/queue_call.py)
        self.fax: Any = None  # telephony.fax_app.FaxApp, set by the composition root
        self.agent_codes = AgentCodes(self)  # *45 / *46 / *47: queue login, logout, pause (telephony/agent_codes.py)
        self.monitoring: Monitoring | None = None  # *33<ext>: listen / whisper / barge (telephony/monitor.py)
        self.t38_relay = T38Relay(self)  # a re-INVITE to T.38 passed on through a bridged call (telephony/t38_relay.py)
        self.threeway = ThreeWayCalls(self)  # *3 on a second call joins it with the held one (telephony/threeway.py)
        self.originator: Any = None  # telephony.originate.Originator: calls placed from the PBX (REST, CRM)

    # -- plumbing ------------------------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call engine task failed", exc_info=task.exception())

    # -- the call's inbox: its steps one at a time, and a failing step ends the call --------------------------
    def step(self, call: Call, coro: Coroutine[Any, Any, None], *,
             txn: ServerTransaction | None = None, request: Request | None = None) -> None:
        """Queue ``coro`` on ``call``'s inbox: the call's steps run in order, one at a time, so none sees
        the call change under it while another awaits. A step that raises ends the call cleanly (a final
        response or BYE, ports and trunk slots freed, CDR written); ``txn`` (the request the step
        answers) then gets a 500 if it has no response yet. Ending a call is not a step: a CANCEL or
        BYE ends it at once whatever step is waiting (the steps look at ``call.ended``)."""
        if call.ended:
            self._drop_step((coro, txn, request))
            return
        call.inbox.append((coro, txn, request))
        if call.runner is None:
            task = asyncio.ensure_future(self._run_steps(call))
            call.runner = task
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _drop_step(self, step: tuple[Coroutine[Any, Any, None], Any, Any]) -> None:
        """A step queued for a call that ended meanwhile: nothing left to do, but its request is answered
        (481: the dialog is gone, RFC 3261 §12.2.2)."""
        coro, txn, request = step
        coro.close()
        if txn is not None and request is not None and not txn.responded:
            self.sip.respond(txn, make_response(request, 481))

    async def _run_steps(self, call: Call) -> None:
        try:
            while call.inbox:
                step = call.inbox.pop(0)
                if call.ended:
                    self._drop_step(step)
                    continue
                coro, txn, request = step
                try:
                    await coro
                except Exception as exc:  # noqa: BLE001 - any failure ends this call, never a half-alive one
                    if txn is not None and request is not None and not txn.responded:
                        self.sip.respond(txn, make_response(request, 500))
                    self._step_failed(call, exc)
        finally:
            call.runner = None  # no await since the inbox was seen empty: a new step starts a new runner

    def _step_failed(self, call: Call, exc: Exception) -> None:
        log.error("a step of a call failed: ending the call", call=call.id, tenant=call.tenant_id, exc_info=exc)
        self._hangup(call, None, ev.HangupSide.SYSTEM, "no_ports" if isinstance(exc, PortsExhausted) else "failed")

    def publish(self, event_type: type[ev.CallEvent], call: Call, **fields: Any) -> None:
        self.bus.publish(event_type(tenant_id=call.tenant_id, call_id=call.id, at=time.time(), **fields))

    def contact(self, peer: Peer, *, sips: bool = False) -> str:
        """Our Contact towards ``peer``; ``sips``: the dialog is a sips: one (RFC 3261 §12.1.1: a sips:
        Request-URI gets a sips: Contact, reached over TLS only)."""
        if sips and peer.transport == "tls":
            return f"<sips:zvonok@{uri_host(self.sip.local_host)}:{self.sip.port_for('tls')}>"
        transport = "" if peer.transport == "udp" else f";transport={peer.transport}"
        return f"<sip:zvonok@{uri_host(self.sip.local_host)}:{self.sip.port_for(peer.transport)}{transport}>"

    # -- SRTP (SDES keys on TLS legs, RFC 4568) ---------------------------------------------------------
    def srtp_mode(self, policy: str | None) -> str:
        return policy or self.srtp_policy

    def _srtp_key(self, leg: Leg) -> bytes | None:
        """Our SDES master key || salt for a leg that may run SRTP: a TLS leg whose policy is not off. Never
        on UDP/TCP legs: the key would travel in the clear (RFC 4568 §8.3)."""
        if leg.srtp_key is None and leg.peer.transport == "tls" and self.srtp_mode(leg.srtp_policy) != "off":
            leg.srtp_key = os.urandom(30)
        return leg.srtp_key

    def _srtp_required(self, leg: Leg) -> bool:
        return self.srtp_mode(leg.srtp_policy) == "required"

    def reachable(self, binding: Binding, policy: str | None) -> bool:
        """A device of an extension (or trunk) that requires SRTP is rung only over TLS."""
        return self.srtp_mode(policy) != "required" or peer_of(binding).transport == "tls"

    def active_calls(self, tenant_id: int) -> list[CallSnapshot]:
        """The tenant's calls in progress, oldest first, as copied snapshots (read-only views)."""
        found = [CallSnapshot.of(c) for c in self.calls.values() if c.tenant_id == tenant_id and not c.ended]
        return sorted(found, key=lambda snap: snap.started_at)

    async def stop(self) -> None:
        for call in list(self.calls.values()):
            self._hangup(call, None, ev.HangupSide.SYSTEM, "shutdown")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    # -- a new call ---------------------------------------------------------------------------------
    def on_invite(self, txn: ServerTransaction, request: Request, peer: Peer) -> None:
        self.spawn(self._guarded_invite(txn, request, peer))

    async def _guarded_invite(self, txn: ServerTransaction, request: Request, peer: Peer) -> None:
        try:
            await self._invite(txn, request, peer)
        except Exception:  # noqa: BLE001 - answer rather than leave the phone retransmitting
            log.exception("failed to set up a call", call_id=request.call_id)
            if not txn.responded:
                self.sip.respond(txn, make_response(request, 500, to_tag=_tag()))
            leg = self.invites.get(txn)
            if leg is not None:
                self._hangup(leg.call, None, ev.HangupSide.SYSTEM, "failed", disposition=ev.Disposition.FAILED)

    async def _invite(self, txn: ServerTransaction, request: Request, peer: Peer) -> None:
        now = time.time()

        def reply(status: int, reason: str | None = None) -> None:
            self.sip.respond(txn, make_response(request, status, reason, to_tag=_tag()))

        if self.auth.blocked(peer, request):
            reply(403)
            return
        trunk = self.outside.trunk_for(request, peer)
        mono = self.clock()  # throttles count on a clock that never steps
        # an IPv6 /64 is one source, as for the auth throttle; behind a trusted edge, the phone's address
        source = self.auth.source_key(request, peer)
        if trunk is None and (self.flood.is_blocked(source, mono) or self.flood.record_failure(source, mono)):
            # a carrier's gateway brings many callers: trunks are limited by max_calls instead
            self.sip.respond(txn, make_response(request, 503, to_tag=_tag(), headers=[("Retry-After", "30")]))
            return
        uri = request.uri
        if not isinstance(uri, SipUri):
            reply(416)
            return
        session_expires = _session_expires(request)
        if session_expires is not None and session_expires < self.session_min_se:
            # RFC 4028 §8.1: too short an interval is refused with our minimum
            self.sip.respond(txn, make_response(request, 422, to_tag=_tag(),
                                                headers=[("Min-SE", str(self.session_min_se))]))
            return
        if trunk is not None:
            await self.outside.invite_from_trunk(txn, request, peer, trunk, now)
            return
        if not request.headers.get("proxy-authorization") and self.outside.calls_a_did(request):
            # a carrier we don't know (or a scanner) calling one of our numbers: never challenge, refuse
            log.warning("call to a number from an unknown address refused", source=str(peer),
                        number=uri.user_unescaped, sip_call_id=request.call_id)
            reply(403)
            return
        outcome = await self.auth.authenticate(request, peer, now, domain=self.auth.domain_of(uri), proxy=True)
        if outcome.credentials is None:
            if outcome.response is not None:
                self.sip.respond(txn, outcome.response)
            else:
                reply(403)
            return
        creds = outcome.credentials
        caller_ext = await self.directory.extension(creds.tenant_id, creds.number)
        if caller_ext is None:
            reply(403)
            return
        if request.headers.get("replaces") is not None:
            # RFC 3891: a BLF key taking a colleague's ringing call names that call's early dialog
            if self.pickup is not None:
                await self.pickup.on_replaces(txn, request, peer, creds.tenant_id, creds.realm, caller_ext,
                                              session_expires)
            else:
                reply(481)
            return
        dialed = uri.user_unescaped or ""
        if dialed.startswith("*") and await self.forwards.feature_code(txn, request, peer, creds.tenant_id, creds.realm,
                                                               caller_ext, dialed, session_expires):
            return
        if dialed.startswith("*") and await self.agent_codes.on_dial(txn, request, peer, creds.tenant_id, creds.realm,
                                                                     caller_ext, dialed, session_expires):
            return
        if dialed.startswith("*") and self.monitoring is not None and await self.monitoring.on_dial(
                txn, request, peer, creds.tenant_id, creds.realm, caller_ext, dialed, session_expires):
            return
        if dialed.startswith("*") and self.pickup is not None and await self.pickup.on_dial(
                txn, request, peer, creds.tenant_id, creds.realm, caller_ext, dialed, session_expires):
            return
        callee_ext = await self.directory.extension(creds.tenant_id, dialed) if dialed else None
        if callee_ext is None and await self._to_conference(txn, request, peer, creds, caller_ext, dialed,
                                                            session_expires):
            return
        if callee_ext is None and self.parking is not None and await self.parking.on_dial(
                txn, request, peer, creds.tenant_id, creds.realm, caller_ext, dialed, session_expires):
            return
        if callee_ext is None and await self.group_calls.dial(txn, request, peer, creds, caller_ext, dialed,
                                                              session_expires):
            return
        if callee_ext is None and await self._dial_queue(txn, request, peer, creds, caller_ext, dialed,
                                                         session_expires):
            return
        outside = callee_ext is None and self.trunks is not None and bool(dialed)
        # from here on the attempt is a call with a CDR, whatever becomes of it
        call = self._open_call(txn, request, peer, tenant_id=creds.tenant_id, party=caller_ext.party(),
                               domain=creds.realm, dialed=dialed, session_expires=session_expires,
                               srtp_policy=caller_ext.srtp,
                               direction=ev.Direction.OUTBOUND if outside else ev.Direction.INTERNAL)
        if outside:
            profile = CallerProfile(tenant_id=creds.tenant_id, employee_id=caller_ext.employee_id,
                                    department_id=caller_ext.department_id, office_id=caller_ext.office_id)
            await self.outside.route(call, dialed, profile)
            return
        if callee_ext is None:
            await self._refuse(call, 404, "no_route")
            return
        await self._ring_extensions(call, [callee_ext], now)

    async def _dial_queue(self, txn: ServerTransaction, request: Request, peer: Peer, creds: Any,
                          caller_ext: ExtensionInfo, dialed: str, session_expires: int | None) -> bool:
        """The number a phone dialed is a call-center queue of its tenant: the caller waits there (True)."""
        queue = await self.queue_calls.lookup(creds.tenant_id, dialed) if self.queue_calls is not None else None
        if queue is None or self.queue_calls is None:
            return False
        call = self._open_call(txn, request, peer, tenant_id=creds.tenant_id, party=caller_ext.party(),
                               domain=creds.realm, dialed=dialed, session_expires=session_expires,
                               srtp_policy=caller_ext.srtp, direction=ev.Direction.INTERNAL)
        await self.queue_calls.enter(call, queue, from_number=caller_ext.number)
        return True

    async def _to_conference(self, txn: ServerTransaction, request: Request, peer: Peer, creds: Any,
                             caller_ext: ExtensionInfo, dialed: str, session_expires: int | None) -> bool:
        """The dialed number is a conference room of the caller's tenant: the call goes there (True)."""
        room = await self.conferences.lookup(creds.tenant_id, dialed) if self.conferences is not None else None
        if room is None or self.conferences is None:
            return False
        call = self._open_call(txn, request, peer, tenant_id=creds.tenant_id, party=caller_ext.party(),
                               domain=creds.realm, dialed=dialed, session_expires=session_expires,
                               srtp_policy=caller_ext.srtp, direction=ev.Direction.INTERNAL)
        tenant = self.trunks.snapshot.tenants.get(call.tenant_id) if self.trunks is not None else None
        await self.conferences.enter(call, room, language=tenant.locale if tenant else self.prompt_language)
        return True

    def _open_call(self, txn: ServerTransaction, request: Request, peer: Peer, *, tenant_id: int, party: ev.Party,
                   domain: str, dialed: str, direction: ev.Direction, session_expires: int | None,
                   srtp_policy: str | None = None) -> Call:
        """The call and its caller's leg for an INVITE we take: 100 Trying, CallStarted, LegCreated."""
        call = Call(id=uuid.uuid4().hex, tenant_id=tenant_id, direction=direction, started_at=time.time(),
                    domain=domain)
        caller = Leg(id=_tag(), role=ev.LegRole.CALLER, call=call, party=party, peer=peer,
                     session=_new_session(), invite=request, server_txn=txn, local_tag=_tag(),
                     user_agent=(request.headers.get("user-agent") or "")[:255], srtp_policy=srtp_policy)
        call.caller = caller
        self._index_leg(caller)
        self.calls[call.id] = call
        self.invites[txn] = caller
        self.sip.respond(txn, make_response(request, 100))
        self.publish(ev.CallStarted, call, caller=party, callee_number=dialed, direction=direction)
        self.publish(ev.LegCreated, call, leg_id=caller.id, role=caller.role, party=party,
                     contact=request.headers.get("contact") or "", user_agent=caller.user_agent)
        return call

    async def _refuse(self, call: Call, status: int, cause: str, reason: str | None = None,
                      disposition: ev.Disposition = ev.Disposition.FAILED) -> None:
        if call.access is not None and self.access_numbers.dial_failed(call, cause):
            return  # the access-number caller hears why and may dial another number
        caller = call.caller
        if caller is not None and caller.sip is not None:
            if not call.ended:
                self._reject_caller(call, status)
        elif caller is not None and caller.server_txn is not None and caller.invite is not None and not call.ended:
            self.sip.respond(caller.server_txn, make_response(caller.invite, status, reason, to_tag=caller.local_tag))
        await self._finish(call, disposition, ev.HangupSide.SYSTEM, cause, status)

    async def _negotiate_caller(self, call: Call) -> bool:
        """Our endpoint for the caller and our answer to its offer (or our offer, for a delayed offer)."""
        caller = call.caller
        assert caller is not None and caller.invite is not None
        if caller.endpoint is not None:
            return not call.ended  # negotiated already (an access-number call dialing out)
        request = caller.invite
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if request.body and ctype != "application/sdp":
            await self._refuse(call, 415, "incompatible_media")
            return False
        if self._srtp_required(caller) and caller.peer.transport != "tls":
            await self._refuse(call, 488, "incompatible_media", "SRTP required: call over TLS")
            return False
        caller.endpoint = await self.media.create_endpoint(call.tenant_id, call.id, [MediaCodec.PCMU, MediaCodec.PCMA])
        self.endpoint_legs[caller.endpoint.id] = caller
        # the leg's dialog machine answers the offer now (or offers in its 200: delayed offer, RFC 3261
        # §13.2.1, the answer then comes in the ACK), or refuses it (488, 400) itself
        machine = self._uas_machine(caller, self._on_caller_event)
        self._drive(caller)
        if machine.state is SipLegState.TERMINATED:
            await self._finish(call, ev.Disposition.FAILED, ev.HangupSide.SYSTEM, "incompatible_media",
                               machine.status)
            return False
        if not request.body:
            caller.awaits_answer = True
        elif machine.media is not None:
            caller.media = machine.media
            call.caller_answer_sdp = machine.offer_answer.local_sdp
            await self._set_remote(caller, machine.media)
        return not call.ended

    def _offer_codecs(self, call: Call) -> list[Codec]:
        """What new legs offer: the caller's codec first, so the relay needs no transcoding."""
        caller = call.caller
        preferred = [c for c in CODECS if caller is not None and caller.media is not None
                     and c.name == caller.media.codec_name]
        return preferred + [c for c in CODECS if c not in preferred]

    async def _ring_extensions(self, call: Call, extensions: list[ExtensionInfo], now: float, *,
                               from_number: str | None = None) -> None:
        """Ring every registered device of ``extensions`` at once (parallel forking): 480 if none is. One
        extension's forwarding and DND apply (telephony/call_forward.py)."""
        call.ringing_ext = None
        if len(extensions) == 1 and await self.forwards.on_dial(call, extensions[0], now, from_number):
            return
        # a sips: call (RFC 5630 §3.1.3) reaches only devices over TLS: none, and it is a 480 as for no device
        call_sips = call.caller is not None and call.caller.invite is not None and is_sips(call.caller.invite.uri)
        targets = [(ext, binding) for ext in extensions if ext.enabled
                   for binding in self.location.lookup(call.tenant_id, ext.extension_id, now)
                   if self.reachable(binding, ext.srtp) and (not call_sips or peer_of(binding).transport == "tls")]
        if not targets:
            ringing = call.ringing_ext
            forward = self.forwards.after(call, ForwardReason.UNAVAILABLE)
            if forward is not None and ringing is not None:
                await self.forwards.forward(call, ringing, forward, now, from_number)
                return
            await self._refuse(call, 480, "unavailable")
            return
        if not await self._negotiate_caller(call):
            return
        caller = call.caller
        assert caller is not None and caller.invite is not None
        log.info("call started", call=call.id, tenant=call.tenant_id, caller=caller.party.number,
                 callee=",".join(ext.number for ext in extensions), devices=len(targets),
                 sip_call_id=caller.invite.call_id, delayed_offer=caller.media is None)
        codecs = self._offer_codecs(call)
        from_display = caller.party.display_name or caller.invite.from_.display or caller.party.number
        # every endpoint first, then every INVITE without awaiting in between: a device answering at
        # once must find all the forks it has to cancel
        endpoints = await self._endpoints(call, len(targets))
        if endpoints is None:
            return
        for (ext, binding), endpoint in zip(targets, endpoints, strict=True):
            self._fork(call, ext.party(), binding, endpoint, codecs, from_display, call.domain, from_number=from_number,
                       srtp_policy=ext.srtp)
        if not call.ended:
            loop = asyncio.get_running_loop()
            call.no_answer = loop.call_later(call.ring_timeout or self.no_answer_timeout, self._no_answer, call)

    async def _endpoints(self, call: Call, count: int) -> list[Endpoint] | None:
        """``count`` media endpoints for new legs; None (and nothing held) if the call ended meanwhile."""
        endpoints: list[Endpoint] = []
        try:
            for _ in range(count):
                endpoints.append(await self.media.create_endpoint(call.tenant_id, call.id,
                                                                  [MediaCodec.PCMU, MediaCodec.PCMA]))
        except BaseException:
            for endpoint in endpoints:
                self.spawn(self.media.release(endpoint))
            raise
        if call.ended:
            for endpoint in endpoints:
                self.spawn(self.media.release(endpoint))
            return None
        return endpoints

    def _fork(self, call: Call, party: ev.Party, binding: Binding, endpoint: Endpoint, codecs: list[Codec],
              from_display: str, domain: str, *, from_number: str | None = None,
              handler: Callable[[Leg, object], None] | None = None, srtp_policy: str | None = None,
              from_header: str | None = None, role: ev.LegRole = ev.LegRole.CALLEE) -> Leg:
        """Place one INVITE to a registered device of the callee, as a new leg of ``call``. ``from_header``
        and ``role``: a call with no caller yet (telephony/originate.py rings the employee's devices first)."""
        if from_header is None:
            assert call.caller is not None
            caller = call.caller.party
            caller_number = from_number or caller.number
            # a caller's number as its URI user came from a trunk goes on as it came (an escaped ';' differs)
            from_header = (name_addr(from_display, caller.uri_user, domain, received=True)
                           if caller.uri_user is not None and caller_number == caller.number
                           else name_addr(from_display, caller_number, domain))
        # along the binding's Path (RFC 3327) when it registered through an edge proxy
        hop = route_to(binding.contact, binding.path, peer_of(binding))
        return self._place_leg(
            call, party, hop.peer, endpoint, codecs, request_uri=hop.request_uri,
            to_header=name_addr(None, party.number, domain),
            from_header=from_header, contact=binding.contact,
            user_agent=binding.user_agent, handler=handler, srtp_policy=srtp_policy, role=role,
            extra_headers=[("Route", value) for value in hop.routes])

    def _place_leg(self, call: Call, party: ev.Party, peer: Peer, endpoint: Endpoint, codecs: list[Codec], *,
                   request_uri: str, to_header: str, from_header: str, contact: str, user_agent: str = "",
                   extra_headers: list[tuple[str, str]] | None = None,
                   handler: Callable[[Leg, object], None] | None = None, trunk_id: int | None = None,
                   srtp_policy: str | None = None, role: ev.LegRole = ev.LegRole.CALLEE) -> Leg:
        """Send our INVITE (our offer from ``endpoint``) for a new callee leg of ``call``: the leg's dialog
        machine places it (telephony/leg_wiring.py). ``handler`` gets the machine's events (Progress,
        Answered, Challenged, Terminated …); by default :meth:`_on_fork_event`."""
        leg = Leg(id=_tag(), role=role, call=call, party=party, peer=peer, session=_new_session(),
                  local_tag=_tag(), contact=contact, user_agent=user_agent, endpoint=endpoint, trunk_id=trunk_id,
                  srtp_policy=srtp_policy)
        self.endpoint_legs[endpoint.id] = leg
        self._index_leg(leg)
        machine = self._uac_machine(leg, codecs, request_uri=request_uri, from_header=from_header,
                                    to_header=to_header, extra_headers=[("User-Agent", "Zvonok"), *(extra_headers or [])],
                                    on_event=handler or self._on_fork_event)
        call.forks.append(leg)
        self.publish(ev.LegCreated, call, leg_id=leg.id, role=leg.role, party=party, contact=contact,
                     user_agent=user_agent)
        machine.invite(self.clock())
        self._drive(leg)
        return leg

    # -- what the callee's devices answer -------------------------------------------------------------
    def _on_fork_event(self, leg: Leg, event: object) -> None:
        """What a callee leg's dialog machine reports: ringing (with early media), the answer, the end."""
        call = leg.call
        if isinstance(event, Progress):
            if leg.state is LegState.ENDED or call.callee is not None:
                return
            first_ring = leg.state is LegState.TRYING
            leg.state = LegState.RINGING
            early = event.status == 183 and event.media is not None and call.early_media_from is None
            if first_ring:
                dialog = leg.sip.dialog if leg.sip is not None else None
                self.publish(ev.LegRinging, call, leg_id=leg.id, early_media=early,
                             sip_call_id=dialog.call_id if dialog is not None else "",
                             device_tag=dialog.remote_tag if dialog is not None else "",
                             our_tag=dialog.local_tag if dialog is not None else "")
            if early and event.media is not None:
                call.early_media_from = leg
                self.step(call, self._early_media(leg, event.media))
            elif first_ring and call.early_media_from is None and not call.ringback:
                if self.inband_ringback and call.caller is not None and call.caller.media is not None:
                    call.ringback = True
                    self.step(call, self._play_ringback(call))
                else:
                    self._provisional(call, 180)
        elif isinstance(event, Answered):
            self._fork_answered(leg, event.media)
        elif isinstance(event, Challenged):
            self._leg_hangup(leg)  # no credentials for a device: the leg fails with the 401/407
        elif isinstance(event, Terminated):
            status = self._unanswered_end(leg, event)
            if status is not None:
                self._fork_failed(leg, status)

    def _unanswered_end(self, leg: Leg, event: Terminated) -> int | None:
        """The status a callee leg failed with, when its machine ended before the call saw it answered."""
        if leg.state not in (LegState.TRYING, LegState.RINGING):
            return None
        cause = event.cause
        if cause is TerminationCause.REJECTED:
            return event.status or 480
        if cause is TerminationCause.TIMEOUT:
            return 408
        if cause is TerminationCause.CANCELLED:
            return event.status if event.status is not None and event.status >= 300 else 487
        return None

    def _leg_hangup(self, leg: Leg) -> None:
        """End a leg that has a dialog machine: CANCEL, BYE or nothing, as its state asks."""
        if leg.sip is not None:
            leg.sip.hangup(self.clock())
            self._drive(leg)

    def _provisional(self, call: Call, status: int, body: bytes = b"") -> None:
        caller = call.caller
        if caller is None or caller.server_txn is None or caller.invite is None or call.answered_at is not None:
            return
        # its machine sends them (a 183 with our answer to the caller's offer: ``body`` says one is wanted)
        if caller.sip is not None and caller.sip.state in (SipLegState.INCOMING, SipLegState.EARLY):
            caller.sip.ring(self.clock(), early_media=status == 183 and bool(body))
            self._drive(caller)

    async def _play_ringback(self, call: Call) -> None:
        """Ring in band (425 Hz, 1 s on / 4 s off): a 183 with our answer, then the tone on the caller's leg."""
        caller = call.caller
        if caller is None or caller.endpoint is None or call.ended:
            return
        await self.media.play(caller.endpoint, RINGBACK_RU)
        self._provisional(call, 183, call.caller_answer_sdp)

    async def _stop_tone(self, call: Call) -> None:
        if call.ringback:
            call.ringback = False
            if call.caller is not None and call.caller.endpoint is not None:
                await self.media.stop_play(call.caller.endpoint)

    async def _busy_tone(self, call: Call, status: int, disposition: ev.Disposition, cause: str) -> None:
        """The caller already hears our early media: let it hear the busy tone before the final status."""
        caller = call.caller
        if caller is not None and caller.endpoint is not None:
            await self.media.play(caller.endpoint, BUSY_RU)
            await asyncio.sleep(self.busy_tone_seconds)
        if call.ended:
            return  # the caller gave up (CANCEL) meanwhile
        self._reject_caller(call, status)
        await self._finish(call, disposition, ev.HangupSide.CALLEE, cause, status)

    async def _early_media(self, leg: Leg, media: NegotiatedMedia) -> None:
        call = leg.call
        if leg.state is LegState.ENDED or leg.endpoint is None or call.callee not in (None, leg):
            return  # that device gave up (or another answered) before this step's turn
        if call.caller is None or call.caller.media is None:
            self._provisional(call, 180)  # delayed offer: our offer must wait for the 2xx (no 100rel here)
            return
        leg.media = media
        await self._set_remote(leg, media)
        if call.caller is None or call.caller.endpoint is None or leg.endpoint is None:
            return
        await self._stop_tone(call)
        await self.media.bridge(call.caller.endpoint, leg.endpoint)
        self._provisional(call, 183, call.caller_answer_sdp)

    def _fork_answered(self, leg: Leg, media: NegotiatedMedia | None) -> None:
        """A callee leg's machine confirmed its dialog (the 2xx is ACKed): the first wins the call."""
        call = leg.call
        assert leg.sip is not None and leg.sip.dialog is not None
        leg.dialog = leg.sip.dialog
        if call.ended or call.callee is not None or leg.cancelled:
            # a second device answered too, or the caller is gone: the dialog exists, so end it with BYE
            self._send_bye(leg)
            leg.state = LegState.ENDED
            self._release(leg)
            return
        leg.media = media
        call.callee = leg
        leg.state = LegState.ANSWERED
        self.dialogs[leg.dialog.key] = leg
        if call.no_answer is not None:
            call.no_answer.cancel()
            call.no_answer = None  # a cancelled handle kept its copied context for the call's life (issue 9)
        for other in call.forks:
            if other is not leg and other.state is not LegState.ENDED:
                self._cancel_fork(other, 'SIP;cause=200;text="Call completed elsewhere"')
        self.step(call, self._connect(call, leg))

    async def _connect(self, call: Call, leg: Leg, response: Response | None = None) -> None:
        """Bridge the callee that answered with the caller and answer the caller, with the media its machine
        agreed (``leg.media``; ``response`` is kept for the callers of this name and not needed)."""
        caller = call.caller
        assert caller is not None  # (an originated call's caller leg is our UAC leg: no server transaction)
        media = leg.media
        if media is None:
            self._send_bye(leg)
            leg.state = LegState.ENDED
            await self._refuse(call, 488, "incompatible_media")
            return
        leg.media = media
        await self._set_remote(leg, media)
        assert caller.endpoint is not None and leg.endpoint is not None
        await self._stop_tone(call)
        if call.access is not None:
            await self.access_numbers.connected(call)
        await self.media.bridge(caller.endpoint, leg.endpoint)
        if call.ended:
            return
        if caller.state is LegState.ANSWERED:
            # the caller was answered by us already (the access number), or is the employee's phone of an
            # originated call (telephony/originate.py): the far end joins the call
            self.publish(ev.LegAnswered, call, leg_id=leg.id)
            if call.answered_at is None:  # an originated call: answered when its target answers
                call.answered_at = time.time()
                self.publish(ev.CallAnswered, call, answered_leg_id=leg.id)
                if call.originate is not None and self.originator is not None:
                    self.originator.connected(call)
            log.info("access number call connected", call=call.id, tenant=call.tenant_id)
            self.outside.arm_limit(call)
            await self._watch_media(call)
            if self.recordings_dir is not None:
                await self._start_recording(call, caller, leg)
            return
        self.publish(ev.LegAnswered, call, leg_id=leg.id)
        self._answer_caller(call, answered_by=leg)
        log.info("call answered", call=call.id, tenant=call.tenant_id, codec_in=caller.media and caller.media.codec_name,
                 codec_out=media.codec_name)
        self.outside.arm_limit(call)
        await self._watch_media(call)
        if self.recordings_dir is not None:
            await self._start_recording(call, caller, leg)
        await self.threeway.connected(call)

    def _answer_caller(self, call: Call, answered_by: Leg | None = None) -> None:
        """Our 200 to the caller (the callee answered, or we are the far end: the access number), with our
        SDP, Allow and session-timer headers; the caller's dialog is confirmed on its ACK."""
        caller = call.caller
        assert caller is not None and caller.invite is not None and caller.server_txn is not None
        assert caller.sip is not None  # negotiated: its machine answers (and re-sends the 200 until the ACK)
        call.answered_at = time.time()
        caller.sip.answer(self.clock())
        self._drive(caller)
        assert caller.sip.dialog is not None
        caller.dialog = caller.sip.dialog
        if caller.awaits_answer:
            call.caller_answer_sdp = caller.sip.offer_answer.local_sdp  # our offer went in the 200
        caller.state = LegState.ANSWERED
        self.dialogs[caller.dialog.key] = caller
        self.publish(ev.LegAnswered, call, leg_id=caller.id)
        self.publish(ev.CallAnswered, call, answered_leg_id=(answered_by or caller).id)

    async def _watch_media(self, call: Call) -> None:
        """End the call when a leg sends no RTP for ``media_timeout`` (a vanished phone), except on hold,
        when silence is expected."""
        held = any(leg.held for leg in (call.caller, call.callee) if leg is not None)
        for leg in (call.caller, call.callee):
            if leg is not None and leg.endpoint is not None:
                callback = None if held else self._on_media_timeout
                await self.media.on_inactivity(leg.endpoint, self.media_timeout, callback)

    async def _start_recording(self, call: Call, caller: Leg, callee: Leg, part: int = 1) -> None:
        assert self.recordings_dir is not None and caller.endpoint is not None and callee.endpoint is not None
        day = datetime.fromtimestamp(call.started_at, UTC).strftime("%Y-%m-%d")
        name = f"{call.id}.wav" if part == 1 else f"{call.id}-{part}.wav"
        relative = Path(str(call.tenant_id)) / day / name
        path = self.recordings_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        call.recording = await self.media.record([caller.endpoint, callee.endpoint], path, stereo=self.record_stereo)
        call.recording_path = str(relative)
        self.publish(ev.RecordingStarted, call, path=str(relative))

    def _fork_failed(self, leg: Leg, status: int) -> None:
        call = leg.call
        if leg.state is LegState.ENDED:
            return
        leg.state = LegState.ENDED
        leg.final_status = status
        cause = "busy" if status in BUSY_STATUSES else "cancelled" if leg.cancelled else f"sip_{status}"
        self.publish(ev.LegEnded, call, leg_id=leg.id, cause=cause)
        self._release(leg)
        if call.ended or call.callee is not None or call.forward_pending or call.voicemail is not None:
            return  # (forwarding: the forks of the extension it leaves end as they may)
        if self.queue_calls is not None and self.queue_calls.holds(call):
            return  # in a queue (a ring group's no-answer destination): the group's last forks decide nothing
        if leg.trunk_id is not None and self.outside.failover(leg, status):
            return
        if any(fork.state is not LegState.ENDED for fork in call.forks):
            return
        if call.access is not None and self.access_numbers.dial_failed(call, "busy" if status in BUSY_STATUSES else f"sip_{status}"):
            return
        if self.group_calls.next_step(call):  # a ring group's step: its next one
            return
        # every device refused: answer the caller with the most telling status (§16.7 step 6 in spirit)
        # (the forks of the current target: an extension that forwarded the call is no part of its outcome)
        statuses = [fork.final_status or 480 for fork in call.forks[call.forks_from:] or call.forks]
        if leg.trunk_id is not None and status not in BUSY_STATUSES:
            # the carrier's answer is the caller's (a challenge we could not answer: unavailable)
            final = 503 if status in (401, 407) else status
            self._reject_caller(call, final)
            self.spawn(self._finish(call, ev.Disposition.FAILED, ev.HangupSide.CALLEE, f"sip_{status}", final))
            return
        if any(s in BUSY_STATUSES for s in statuses):
            final, disposition, cause = 486, ev.Disposition.BUSY, "busy"
        elif any(s == 603 for s in statuses):
            final, disposition, cause = 603, ev.Disposition.BUSY, "declined"
        else:
            final, disposition, cause = 480, ev.Disposition.FAILED, "unavailable"
        if final == 486 and self.forwards.later(call, ForwardReason.BUSY):
            return
        if call.ringback and final == 486 and self.busy_tone_seconds > 0:
            call.ringback = False
            self.step(call, self._busy_tone(call, final, disposition, cause))
            return
        self._reject_caller(call, final)
        self.spawn(self._finish(call, disposition, ev.HangupSide.CALLEE, cause, final))

    def _reject_caller(self, call: Call, status: int) -> None:
        caller = call.caller
        if caller is not None and caller.state is LegState.ANSWERED:
            # a caller whose dialog is up already (an originated call's employee, a caller a menu answered):
            # no final response is left to give, the call ends with BYE
            self._send_bye(caller)
            return
        if caller is not None and caller.sip is not None:
            if caller.sip.state in (SipLegState.INCOMING, SipLegState.EARLY):
                caller.sip.reject(status, self.clock())
                self._drive(caller)
            return
        if caller is not None and caller.server_txn is not None and caller.invite is not None:
            self.sip.respond(caller.server_txn, make_response(caller.invite, status, to_tag=caller.local_tag))

    def _no_answer(self, call: Call) -> None:
        if call.ended or call.callee is not None:
            return
        if call.access is not None and self.access_numbers.dial_failed(call, "no_answer"):
            return
        if self.group_calls.next_step(call):
            return
        if self.forwards.later(call, ForwardReason.NO_ANSWER):
            return
        for fork in call.forks:
            self._cancel_fork(fork, None)
        self._reject_caller(call, 480)
        self.spawn(self._finish(call, ev.Disposition.NO_ANSWER, ev.HangupSide.SYSTEM, "no_answer", 480))

    def _cancel_fork(self, leg: Leg, reason: str | None) -> None:
        """CANCEL a callee leg's INVITE (its machine sends it once a provisional response came, §9.1)."""
        machine = leg.sip
        if leg.state is LegState.ENDED:
            return
        if machine is None:
            if leg.client_txn is not None:
                leg.cancelled = True
                self.sip.cancel(leg.client_txn, reason)
            return
        if machine.state in (SipLegState.CALLING, SipLegState.EARLY):
            leg.cancelled = True
            machine.cancel(self.clock(), reason=reason)
        elif machine.state is SipLegState.CHALLENGED:
            leg.cancelled = True
            machine.hangup(self.clock())
        self._drive(leg)

    # -- requests from the caller or in a dialog ----------------------------------------------------------
    def on_cancel(self, txn: ServerTransaction, request: Request, invite: ServerTransaction | None) -> None:
        leg = self.invites.get(invite) if invite is not None else None
        if leg is None:
            self.sip.respond(txn, make_response(request, 481, to_tag=_tag()))
            return
        if leg.sip is not None:
            leg.sip.receive_cancel(request, txn, self.clock())  # 200, and 487 to the INVITE (§9.2)
            self._drive(leg)  # the machine's Terminated ends the call (_on_caller_event)
            return
        self.sip.respond(txn, make_response(request, 200, to_tag=leg.local_tag))
        self._caller_cancelled(leg.call)

    def _caller_cancelled(self, call: Call) -> None:
        if call.answered_at is not None or call.ended:
            return  # CANCEL lost the race with our 200: the caller ACKs and sends BYE
        for fork in call.forks:
            self._cancel_fork(fork, None)
        self._reject_caller(call, 487)
        self.spawn(self._finish(call, ev.Disposition.CANCELLED, ev.HangupSide.CALLER, "cancelled", 487))

    def _on_caller_event(self, leg: Leg, event: object) -> None:
        """What the caller's leg machine reports: the ACK came (with the answer to a delayed offer), the
        caller cancelled."""
        if isinstance(event, Answered) and leg.awaits_answer:
            leg.awaits_answer = False
            self.step(leg.call, self._answer_in_ack(leg, event.media))
        elif isinstance(event, Terminated) and event.cause is TerminationCause.REMOTE_CANCEL:
            self._caller_cancelled(leg.call)

    def _leg_gave_up(self, leg: Leg, cause: TerminationCause) -> None:
        """A leg's machine ended its established dialog itself and sent the BYE: our 2xx never got its ACK
        (RFC 3261 §13.3.1.4), the session expired or its refresh failed (RFC 4028 §10)."""
        if cause is TerminationCause.NO_ACK:
            log.info("no ACK for our 2xx: ending the call", call=leg.call.id)
            self._hangup(leg.call, None, ev.HangupSide.SYSTEM, "no_ack")
        else:
            log.info("session timer expired or its refresh failed: ending the call", call=leg.call.id, leg=leg.id,
                     cause=cause.value)
            self._hangup(leg.call, None, ev.HangupSide.SYSTEM, "session_timeout")

    def on_ack(self, request: Request, peer: Peer) -> None:
        key = dialog_key_for_request(request)
        leg = self.dialogs.get(key) if key is not None else None
        if leg is None:
            leg = self.unacked.get(key) if key is not None else None  # the call ended before this ACK
        if leg is None:
            return
        if leg.sip is not None:
            leg.sip.receive_ack(request, self.clock())  # the initial 2xx's ACK (a delayed offer's answer)
            self._drive(leg)

    async def _answer_in_ack(self, leg: Leg, media: NegotiatedMedia | None) -> None:
        """The caller's answer to the offer of our 2xx (delayed offer), as its machine took it from the ACK;
        without a usable one the call ends (RFC 3261 §13.2.2.4: the UAC should then BYE — we do it for it)."""
        if media is None:
            log.info("no usable answer in the ACK: ending the call", call=leg.call.id)
            self._hangup(leg.call, None, ev.HangupSide.SYSTEM, "incompatible_media")
            return
        leg.media = media
        if leg.endpoint is not None:
            await self._set_remote(leg, media)

    def on_invite_timeout(self, txn: ServerTransaction) -> None:
        """Timer H: our non-2xx final response to an INVITE was never acknowledged; nothing to do."""
        self.invites.pop(txn, None)

    def on_request(self, txn: ServerTransaction, request: Request, peer: Peer) -> None:
        """A request inside a dialog (it has a To tag): for the dialog machine of its leg. A re-INVITE or
        UPDATE is a step of the call (its answer waits for our endpoint, :meth:`_reoffer`); the rest the
        machine answers itself (BYE, OPTIONS) or hands to :meth:`_on_dialog_event` (REFER, INFO …)."""
        key = dialog_key_for_request(request)
        leg = self.dialogs.get(key) if key is not None else None
        machine = leg.sip if leg is not None else None
        if leg is None or machine is None:
            self.sip.respond(txn, make_response(request, 481, to_tag=_tag()))
            return
        method = request.method
        if method in ("INVITE", "UPDATE"):
            self.step(leg.call, self._reoffer(txn, request, leg), txn=txn, request=request)
            return
        before = machine.state
        machine.receive_request(request, txn, self.clock())
        self._drive(leg)
        if method == "BYE" and before is not SipLegState.TERMINATED and machine.state is SipLegState.TERMINATED:
            side = ev.HangupSide.CALLER if leg.role is ev.LegRole.CALLER else ev.HangupSide.CALLEE
            self._hangup(leg.call, leg, side, "normal_clearing")

    def _on_dialog_event(self, leg: Leg, event: object) -> None:
        """What a leg's machine reports about its established dialog, whatever the leg's role."""
        machine = leg.sip
        if isinstance(event, RequestForApplication) and machine is not None:
            txn, request = event.transaction, event.request
            if request.method == "REFER":
                self.step(leg.call, self.transfers.refer(txn, request, leg), txn=txn, request=request)
            elif request.method in ("INFO", "NOTIFY") or leg.dialog is None:
                machine.respond(txn, request, 200, self.clock())  # sent by the _drive that reported it
                if request.method == "INFO" and leg.endpoint is not None:  # a desk phone's keys: as RFC 4733 ones
                    self.step(leg.call, info_dtmf(self.media, leg.endpoint, request))
            else:
                self.sip.respond(txn, leg.dialog.create_response(request, 405, extra_headers=[("Allow", ALLOW)]))
        elif isinstance(event, MediaUpdated):
            # the answer to our re-offer, or to our offer in the 200 to an offerless re-INVITE (in its ACK)
            self.step(leg.call, self._media_updated(leg, event.media))
        elif isinstance(event, T38Agreed):
            if not self.t38_relay.answered(leg, event.image) and self.fax is not None:
                self.step(leg.call, self.fax.switch_to_t38(leg.call, leg, event.image))
        elif isinstance(event, ReofferFailed):
            self.t38_relay.answered(leg, None)  # (a hold or resume that failed: nobody waits, nothing to do)

    async def _media_updated(self, leg: Leg, media: NegotiatedMedia) -> None:
        leg.media = media
        if leg.endpoint is not None and leg.state is not LegState.ENDED:
            await self._set_remote(leg, media)

    async def _reoffer(self, txn: ServerTransaction, request: Request, leg: Leg) -> None:
        """A re-INVITE or UPDATE from a leg: its machine answers it (or refuses it: 491 in glare, 488 …),
        and the answer goes once our endpoint sends to the new address; hold and resume (RFC 3264 §8.4)."""
        machine = leg.sip
        if machine is None or leg.endpoint is None or leg.state is LegState.ENDED:
            # the leg left the call (a transferor) before this step's turn
            self.sip.respond(txn, make_response(request, 481))
            return
        other = self.t38_relay.wanted(leg, request)
        if other is not None:
            await self.t38_relay.ask_other(leg, other, request)  # T.38 through the bridge, if the other side takes it
            if leg.call.ended:
                self.sip.respond(txn, make_response(request, 481))
                return
        machine.receive_request(request, txn, self.clock())
        answer = self._drive(leg, hold=txn)
        accepted = any(200 <= action.response.status < 300 for action in answer)
        media = machine.media
        if accepted and request.body and media is not None:
            image = machine.offer_answer.take_image()
            if image is not None and leg.call.fax is not None and self.fax is not None:
                await self.fax.switch_to_t38(leg.call, leg, image)  # UDPTL from before the 200 goes
            elif image is not None:
                await self.t38_relay.connect(leg, image)
            elif machine.offer_answer.image is not None:
                pass  # T.38 offered again as agreed (a session refresh): the UDPTL path stays as it is
            else:
                leg.media = media
                await self._set_remote(leg, media)  # a failure here answers the request 500 and ends the call
        for action in answer:
            self._execute(leg, action)
        held = machine.remote_held
        if accepted and request.body and held != leg.held:
            leg.held = held
            self.publish(ev.LegHeld if held else ev.LegResumed, leg.call, leg_id=leg.id)
            await self._watch_media(leg.call)
            other = leg.call.other(leg)
            if leg.call.threeway is not None:  # in a three-way room the others go on talking: no music
                await self.threeway.hold_changed(leg)
            elif other is not None and other.state is LegState.ANSWERED:
                self._reinvite(other, SdpDirection.SENDONLY if held else SdpDirection.SENDRECV)
                await self._music_on_hold(other, held)

    async def _music_on_hold(self, leg: Leg, on: bool) -> None:
        """Play the company's music on hold to ``leg``'s device while its party holds the call (the device
        is also told it is held: we offered sendonly, so it plays what we send); stop it on resume."""
        if leg.endpoint is None or on == leg.hearing_music:
            return
        if not on:  # (also a queue's ringback tone, played in its stead: queue_call.py)
            leg.hearing_music = False
            await self.media.stop_play(leg.endpoint)
            return
        if self.hold_music is None:
            return
        try:
            source = self.hold_music.source_for(leg.call.tenant_id)  # a stat: the track is made at start
            await self.media.play(leg.endpoint, source)
        except (OSError, ValueError) as exc:  # an unreadable track: the party hears silence, the call goes on
            log.warning("music on hold failed", call=leg.call.id, tenant=leg.call.tenant_id, error=str(exc))
            return
        leg.hearing_music = True

    def _reinvite(self, leg: Leg, direction: SdpDirection, *, refresh: bool = False) -> None:
        """Offer ``direction`` to a leg's device (tell the other party it is held, or resumed). Its machine
        sends one re-INVITE at a time (§14.1: a later offer waits for the one in flight) and sends it again
        after a 491 (§14.1's random wait); session refreshes are the machine's own (``refresh`` is kept for
        the callers of this name and means nothing more)."""
        machine = leg.sip
        if machine is None or leg.endpoint is None or leg.media is None:
            return
        leg.held_by_us = direction is not SdpDirection.SENDRECV
        if machine.state in LIVE or machine.state is SipLegState.ACCEPTED:
            machine.reoffer(direction, self.clock())
            self._drive(leg)

    # -- ending -----------------------------------------------------------------------------------------
    def _media_timeout(self, event: MediaTimeout) -> None:
        leg = self.endpoint_legs.get(event.endpoint_id)
        if leg is None or leg.call.ended:
            return  # released since the check fired
        log.info("no RTP from a leg: ending the call", call=leg.call.id, leg=leg.id, silent_for=event.silent_for)
        self._hangup(leg.call, None, ev.HangupSide.SYSTEM, "media_timeout")

    def _hangup(self, call: Call, from_leg: Leg | None, side: ev.HangupSide, cause: str,
                disposition: ev.Disposition | None = None) -> None:
        """End an answered call (or any call, for shutdown): BYE to the legs that did not hang up."""
        if call.ended:
            return
        if call.threeway is not None and from_leg is not None and self.threeway.leg_hung_up(call, from_leg):
            return  # that party left a three-way room; the call goes on with its other leg
        if call.answered_at is None and disposition is None:
            # not answered yet (shutdown, failure): cancel forks, refuse the caller
            for fork in call.forks:
                self._cancel_fork(fork, None)
            self._reject_caller(call, 503 if cause in ("shutdown", "no_ports") else 500)
            if side is ev.HangupSide.CALLER and call.caller is not None and call.caller.state is LegState.ANSWERED:
                disposition = ev.Disposition.CANCELLED  # an originated call's employee gave up while it rang
        for leg in (call.caller, call.callee):
            if leg is not None and leg is not from_leg and leg.state is LegState.ANSWERED:
                self._send_bye(leg)
        final = disposition or (ev.Disposition.ANSWERED if call.answered_at is not None else ev.Disposition.FAILED)
        self.spawn(self._finish(call, final, side, cause, None))

    def _send_bye(self, leg: Leg) -> None:
        if leg.dialog is None or leg.dialog.state is DialogState.TERMINATED:
            return  # e.g. the leg's device hung up, or we sent a BYE already (a media timeout racing a BYE)
        if leg.sip is not None:
            if leg.sip.state in LIVE or leg.sip.state is SipLegState.ACCEPTED:
                self._leg_hangup(leg)  # (before the ACK of our 2xx the BYE waits for it, §15)  # its machine sends the BYE (and nothing when one is out already)
            return
        bye = leg.dialog.create_request("BYE")
        add_top_via(bye, leg.peer.transport, self.sip.local_host, self.sip.port_for(leg.peer.transport))
        self.sip.send_request(bye, leg.peer, lambda event: None)
        leg.dialog.terminate()

    async def _finish(self, call: Call, disposition: ev.Disposition, side: ev.HangupSide, cause: str,
                      sip_status: int | None) -> None:
        if call.ended:
            return
        if self.ivr is not None:
            self.ivr.left(call, side)  # before ``ended``: a failed transfer's caller gets its BYE
        if call.queue is not None and self.queue_calls is not None:
            self.queue_calls.left(call, side)  # before ``ended``: an abandon or a completed queue call
        call.ended = True
        call.hangup_side = side
        if call.no_answer is not None:
            call.no_answer.cancel()
            call.no_answer = None
        for timer in call.limit_timers:
            timer.cancel()
        call.limit_timers = []
        if call.access is not None and call.access.timer is not None:
            call.access.timer.cancel()
            call.access.timer = None
        if call.conference is not None and self.conferences is not None:
            self.conferences.left(call)
        if call.threeway is not None:
            self.threeway.left(call)
        if call.park is not None and self.parking is not None:
            self.parking.left(call)
        if (call.monitor is not None or call.monitored is not None) and self.monitoring is not None:
            self.monitoring.left(call)
        if call.voicemail is not None and self.voicemail is not None:
            disposition = await self.voicemail.ended(call, disposition)
        if call.fax is not None and self.fax is not None:
            disposition = await self.fax.ended(call, disposition)
        if call.originate is not None and self.originator is not None:
            self.originator.ended(call, disposition, cause)
        if call.recording is not None:
            recording, call.recording = call.recording, None
            try:
                await self.media.stop_record(recording)  # complete and fsynced when this returns
            except Exception:  # noqa: BLE001 - a lost recording must not lose the CDR
                log.exception("failed to finish a recording", call=call.id)
            else:
                self.publish(ev.RecordingStopped, call, path=call.recording_path or "")
        for leg in call.legs():
            if leg.state in (LegState.TRYING, LegState.RINGING) and leg.role is ev.LegRole.CALLEE \
                    and not leg.cancelled:
                self._cancel_fork(leg, None)  # a transfer's or an access number's attempt still ringing
            self._leg_over(call, leg, cause)
        self.calls.pop(call.id, None)
        for leg in (*call.indexed, *call.legs()):  # made for it (replaced or not), or moved in (a pickup's)
            self._unindex_leg(leg, call)
        call.indexed.clear()
        while call.inbox:
            self._drop_step(call.inbox.pop(0))
        self.outside.publish_crossings(call, time.time())
        if call.budgets:
            self.outside.spend_ledger().settle(call.id)  # its CDR carries the real cost from now on
        if self.queue_calls is not None:
            self.queue_calls.finished(call)  # its agents, if busy on it, may take queue calls again
        self.publish(ev.CallEnded, call, disposition=disposition, hangup_side=side, cause=cause,
                     sip_status=sip_status)
        log.info("call ended", call=call.id, tenant=call.tenant_id, disposition=disposition.value, cause=cause)
        # the call no longer holds its legs (each leg keeps its call): no call <-> leg cycle is left, so what
        # still holds a leg for a while (a client transaction's handler until Timer D/K, a 2xx retransmitted
        # until the ACK, a task finishing) frees the whole call by reference counting when it lets go. A cycle
        # outlived the young collections and waited for a rare full one (the GC is tuned for throughput):
        # memory grew with every call (issue 8)
        call.caller = call.callee = call.early_media_from = None
        call.forks = []

    def _leg_over(self, call: Call, leg: Leg, cause: str) -> None:
        """One leg is over (its call ending, or a party leaving a three-way room while the call goes on)."""
        if leg.sip is not None and leg.sip.state in WAIT_ACK and leg.dialog is not None:
            self.unacked[leg.dialog.key] = leg  # our 2xx goes on until its ACK (then a BYE, if we hung up)
        elif leg.sip_timer is not None:
            leg.sip_timer.cancel()
            leg.sip_timer = None
        if leg.state is not LegState.ENDED:
            leg.state = LegState.ENDED
            self.publish(ev.LegEnded, call, leg_id=leg.id, cause=cause)
        self._release(leg)
        if leg.dialog is not None:
            self.dialogs.pop(leg.dialog.key, None)
        if leg.server_txn is not None:
            self.invites.pop(leg.server_txn, None)

    def _extension_busy(self, call: Call, extension_id: int) -> bool:
        """In an answered call (as its caller or its callee)."""
        return any(leg.state is LegState.ANSWERED for _, leg in self.other_extension_calls(call, extension_id))

    def _index_leg(self, leg: Leg) -> None:
        extension = leg.party.extension_id
        if extension is not None:
            self.extension_legs.setdefault((leg.call.tenant_id, extension), set()).add(leg)
            leg.call.indexed.append(leg)

    def _unindex_leg(self, leg: Leg, call: Call) -> None:
        extension = leg.party.extension_id
        if extension is None or leg.call is not call:  # moved to another call (pickup, transfer, park): kept
            return
        key = (call.tenant_id, extension)
        legs = self.extension_legs.get(key)
        if legs is not None:
            legs.discard(leg)
            if not legs:
                del self.extension_legs[key]

    def other_extension_calls(self, call: Call, extension_id: int) -> Iterator[tuple[Call, Leg]]:
        """The other calls in progress where the extension is the caller or the callee (the fork that answered),
        each with that leg, in no order and one at a time: "is there one that ..." stops at the first (an
        extension in hundreds of calls at once, as a benchmark's callee is, made every connect scan them all)."""
        legs = self.extension_legs.get((call.tenant_id, extension_id))
        if not legs:
            return
        gone = []
        try:
            for leg in legs:
                other = leg.call
                if other.ended or self.calls.get(other.id) is not other:
                    gone.append(leg)  # its call ended without it (a leg moved out and dropped): forget it now
                elif other is not call and (leg is other.caller or leg is other.callee):
                    yield other, leg
        finally:
            legs.difference_update(gone)

    async def _to_destination(self, call: Call, dest: dst.Destination | None, now: float, *, from_number: str,
                              language: str | None = None, billed_to: CallerProfile | None = None,
                              greeting: GreetingKind = GreetingKind.UNAVAILABLE) -> None:
        """Send the call where a typed destination says (the one place for DIDs, schedule branches, a ring
        group's no-answer, a queue's overflow, an IVR menu's keys and an employee's forwarding); ``None``
        (nowhere, or a stored kind this version cannot read) and kinds this process cannot route answer 480.
        A caller we answered already (a voice menu's) whom nothing takes gets BYE instead, as an answered call
        ended by us. ``billed_to``: a forward's outside number is rated to, and permitted by, the forwarding
        employee; ``greeting``: which greeting a mailbox plays (busy for a forward on busy)."""
        tenant = self.trunks.snapshot.tenants.get(call.tenant_id) if self.trunks else None
        language = language or (tenant.locale if tenant else self.prompt_language)

        async def nowhere(status: int, cause: str) -> None:
            if call.answered_at is not None:
                self._hangup(call, None, ev.HangupSide.SYSTEM, cause)
            else:
                await self._refuse(call, status, cause)

        if isinstance(dest, (dst.Extension, dst.Ring)):
            numbers = [dest.number] if isinstance(dest, dst.Extension) else list(dest.numbers)
            extensions = [ext for n in numbers if (ext := await self.directory.extension(call.tenant_id, n)) is not None]
            if not extensions:
                await nowhere(404, "no_route")
                return
            if isinstance(dest, dst.Ring) and dest.timeout:
                call.ring_timeout = float(dest.timeout)
            await self._ring_extensions(call, extensions, now, from_number=from_number)
        elif isinstance(dest, dst.Access):
            await self.access_numbers.answer(call, dest.payload(), caller_e164=from_number, language=language,
                                      source_address=None)  # a carrier's gateway carries many callers
        elif isinstance(dest, dst.Conference):
            room = await self.conferences.lookup(call.tenant_id, dest.number) if self.conferences is not None else None
            if room is None or self.conferences is None:
                await nowhere(404, "no_route")
                return
            await self.conferences.enter(call, room, language=language)
        elif isinstance(dest, dst.Ivr) and self.ivr is not None:
            await self.ivr.enter(call, dest.menu, from_number=from_number, language=language)
        elif isinstance(dest, dst.RingGroup):
            await self.group_calls.to_destination(call, dest.payload(), from_number=from_number)
        elif isinstance(dest, dst.External):
            if self.trunks is None:
                await nowhere(480, "unavailable")
            elif billed_to is not None:
                await self.outside.route(call, dest.number, billed_to, billed=True)
            else:
                await self.outside.route(call, dest.number, CallerProfile(tenant_id=call.tenant_id), forwarded=True)
        elif isinstance(dest, dst.Voicemail) and self.voicemail is not None:
            await self.voicemail.leave(call, dest.number, greeting)
        elif isinstance(dest, dst.Queue) and self.queue_calls is not None:
            await self.queue_calls.to_queue(call, dest.payload(), from_number=from_number)
        elif isinstance(dest, dst.Fax) and self.fax is not None:
            await self.fax.receive(call, dest.payload(), from_number=from_number)
        else:  # park (no place routes there yet), None: nobody takes calls now (or no call center / fax here)
            await nowhere(480, "unavailable")

    def _release(self, leg: Leg) -> None:
        if leg.trunk_id is not None and not leg.trunk_released and self.trunks is not None:
            leg.trunk_released = True
            self.trunks.release(leg.trunk_id)
        endpoint, leg.endpoint = leg.endpoint, None
        if endpoint is not None:
            self.endpoint_legs.pop(endpoint.id, None)
            self.spawn(self.media.release(endpoint))

    # -- helpers -------------------------------------------------------------------------------------------
    async def _set_remote(self, leg: Leg, media: NegotiatedMedia) -> None:
        assert leg.endpoint is not None
        await self.media.set_remote(leg.endpoint, media.remote_host, media.remote_port,
                                    payload_type=media.payload_type, codec=MediaCodec(media.codec_name),
                                    telephone_event_pt=media.telephone_event_pt,
                                    srtp=SrtpKeys(local=leg.srtp_key, remote=media.srtp_key)
                                    if leg.srtp_key is not None and media.srtp_key is not None else None)
