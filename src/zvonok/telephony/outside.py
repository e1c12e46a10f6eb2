"""Calls to and from the outside world: carriers and office PBXs joined as trunks, numbers (DIDs).

An application of the call engine (:class:`Outside`, ``engine.outside``). How a call goes:

- **In from a trunk.** The source address names the trunk (:meth:`Outside.trunk_for`); an unknown
  address calling one of our numbers gets 403 and a log line, never a challenge. From a carrier, the
  number called (Request-URI, else To) is normalized to E.164 and looked up: unknown → 404, a suspended
  tenant's → an announcement and 403, else its destination (resolved through its time schedule) — one
  extension, several at once, an outside number (forwarding), or the access-number service. From an
  office PBX the dialed string is an extension of its tenant or an outside number, dialed out under
  the office's permissions, caller ID and cost.
- **Out to a trunk.** The dialed string is normalized with the caller's office dial plan (Russian:
  8-prefix, 810, local numbers with the area code; emergency numbers always go out), the caller's class
  of service and deny prefixes are checked (most specific level wins), the sell rate and the monthly
  spending limits decide whether the call may start and for how long; the route's trunks are tried in
  order (longest prefix, priority, cheapest buy rate), the next one when a trunk answers 408/5xx or not
  at all. The carrier's digest challenge (401/407) is answered with the trunk's credentials.
- A refused call hears why (a short prompt in the tenant's language as early media) before its 403.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zvonok.billing.limits import crossings
from zvonok.cdr.state import rate, whole_seconds
from zvonok.destination import (
    stored,
)
from zvonok.dialing import Destination as Destination_
from zvonok.dialing import DestinationClass, InvalidNumber, normalize, russian_plan
from zvonok.logs import get_logger
from zvonok.media.interface import Prompt, Tone
from zvonok.media.prompts import prompt_path
from zvonok.pstn import schedule
from zvonok.pstn.holds import LocalHolds
from zvonok.pstn.routing import CallerProfile, NumberInfo, OutboundRules, PstnSnapshot, TrunkInfo
from zvonok.sip.digest import DigestError, parse_credentials
from zvonok.sip.digest_client import authorize_request
from zvonok.sip.grammar import escape_user, name_addr, uri_host
from zvonok.sip.message import Request, make_response
from zvonok.sip.peer import Peer
from zvonok.sip.transaction import ServerTransaction
from zvonok.sip.uri import SipUri

from . import events as ev
from .access_number import split_dialed_access
from .call import Call, Leg
from .counters import SpendLedger, StoreUnavailable
from .leg_events import Challenged
from .owner_first import ring_owner_first
from .trunks import trunk_peer

if TYPE_CHECKING:
    from .b2bua import CallEngine

log = get_logger(__name__)

FAILOVER_STATUSES = frozenset({408, 500, 502, 503, 504})
WARNING_TONE = Tone(frequencies=(1400.0,), cadence=(0.2, 0.2))
WARNING_SECONDS = 10  # the warning tone this long before a spending limit cuts the call
CUT_MARGIN = 0.4  # seconds: timer and signalling latency before the billed end


def _token() -> str:
    return os.urandom(6).hex()


_CARRIER_PLAN = russian_plan(None)  # numbers as carriers write them: +7…, 7…, 8… (no local forms)


def _e164(user: str) -> str | None:
    """A number as a carrier sends it (+7…, 7…, 8…) in E.164, or None."""
    try:
        dest = normalize(user, _CARRIER_PLAN)
    except InvalidNumber:
        return None
    return dest.e164


class OutsideRefused(Exception):
    """An outside number that may not be dialed: ``status`` is the SIP answer, ``cause`` the CDR's."""

    def __init__(self, status: int, cause: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.cause = cause


@dataclass(frozen=True, slots=True)
class OutsideNumber:
    dest: Destination_
    rules: OutboundRules


def check_outside(snapshot: PstnSnapshot, profile: CallerProfile, dialed: str, *,
                  forwarded: bool = False) -> OutsideNumber:
    """``dialed`` as an outside number of ``profile``'s dial plan, allowed by its calling permissions
    (``forwarded``: a number's outside destination, not checked). One check for a phone's outside call,
    a fax being sent and an originated call (telephony/originate.py), which checks before ringing anyone."""
    try:
        dest = normalize(dialed, snapshot.plan_for(profile.tenant_id, profile.office_id))
    except InvalidNumber as exc:
        # a short string that is no extension is "no such number"; a malformed long one is incomplete
        status = 404 if len(dialed) <= 4 else exc.sip_status
        raise OutsideRefused(status, "no_route" if status == 404 else "invalid_number", str(exc)) from exc
    if dest.klass is DestinationClass.INTERNAL:
        raise OutsideRefused(404, "no_route", f"{dialed!r}: no such extension")
    rules = snapshot.rules_for(profile)
    if not forwarded:
        decision = rules.policy.check(dest)
        if not decision.allowed:
            raise OutsideRefused(403, "not_allowed",
                                 f"not allowed by the calling permissions ({decision.reason}, {decision.level})")
    return OutsideNumber(dest, rules)


def _our_realm(request: Request, snapshot: PstnSnapshot) -> bool:
    """Does the request carry digest credentials for one of our domains (the answer to our challenge)?"""
    for name in ("proxy-authorization", "authorization"):
        value = request.headers.get(name)
        if not value:
            continue
        try:
            realm = parse_credentials(value).realm
        except DigestError:
            continue
        if snapshot.tenant_of_domain(realm) is not None:
            return True
    return False


def _own_number(trunk: TrunkInfo, uri: SipUri, snapshot: PstnSnapshot) -> bool:
    """A tenant's carrier delivering one of its tenant's numbers: carriers address a number to our IP
    address, not to a domain, and the number names its tenant whatever the default domain is. (A PBX's
    calls name no tenant so: it addresses its tenant's domain.)"""
    number = _e164(uri.user_unescaped or "") if trunk.kind == "carrier" else None
    info = snapshot.number(number) if number is not None else None
    return info is not None and info.tenant_id == trunk.tenant_id


class Outside:
    """Calls in from trunks and numbers (DIDs), and out through trunks with failover and spending limits."""

    def __init__(self, engine: CallEngine) -> None:
        self.engine = engine

    # -- in from a trunk ------------------------------------------------------------------------------
    def trunk_for(self, request: Request, peer: Peer) -> TrunkInfo | None:
        """The trunk an INVITE comes through, or None (then it is a phone's, authenticated by digest).

        A source address inside a trunk's allow-list is not enough, because a tenant's list may cover
        other companies' phones (a shared NAT address, a range too wide): a request answering our
        digest challenge is a phone's, never a trunk's, and a tenant's trunk takes only requests
        addressed to no other tenant's domain (its numbers are checked when the call is routed); one to
        our bare address is the default domain's, unless a carrier delivers its own tenant's number.
        """
        if self.engine.trunks is None:
            return None
        snapshot = self.engine.trunks.snapshot
        trunk: TrunkInfo | None = snapshot.trunk_from(peer.host)
        if trunk is None or _our_realm(request, snapshot):
            return None
        if trunk.transport == "tls" and peer.transport != "tls":
            return None  # a TLS trunk's calls come over TLS: a UDP packet with its source address may be forged
        if trunk.tenant_id is not None and isinstance(request.uri, SipUri):
            # the domain the request is for as authentication sees it: a phone set up with only our
            # address sends its first INVITE to sip:102@<our IP>, which is the default domain's call
            domain = self.engine.auth.domain_of(request.uri)
            owner = snapshot.tenant_of_domain(domain)
            if owner is not None and owner != trunk.tenant_id and not (
                    domain != request.uri.host_lower and _own_number(trunk, request.uri, snapshot)):
                return None
        return trunk

    def calls_a_did(self, request: Request) -> bool:
        if self.engine.trunks is None or not isinstance(request.uri, SipUri):
            return False
        number = _e164(request.uri.user_unescaped or "")
        return number is not None and self.engine.trunks.snapshot.number(number) is not None

    async def invite_from_trunk(self, txn: ServerTransaction, request: Request, peer: Peer, trunk: TrunkInfo,
                                 now: float) -> None:
        assert self.engine.trunks is not None
        snapshot = self.engine.trunks.snapshot
        uri = request.uri
        assert isinstance(uri, SipUri)
        caller_user = request.from_.uri.user if isinstance(request.from_.uri, SipUri) else None
        caller_number = request.from_.uri.user_unescaped if isinstance(request.from_.uri, SipUri) else None
        caller_e164 = _e164(caller_number or "") or (caller_number or "anonymous")
        display = request.from_.display or ""
        if trunk.kind == "pbx" and trunk.tenant_id is not None:
            await self._invite_from_pbx(txn, request, peer, trunk, snapshot,
                                        ev.Party(number=caller_number or "", display_name=display,
                                                 office_id=trunk.office_id, uri_user=caller_user), now)
            return
        number: NumberInfo | None = None
        for candidate in (uri.user_unescaped, request.to.uri.user_unescaped if isinstance(request.to.uri, SipUri)
                          else None):
            e164 = _e164(candidate or "")
            if e164 is not None and (number := snapshot.number(e164)) is not None:
                break
        if number is None or number.tenant_id is None or (trunk.tenant_id not in (None, number.tenant_id)):
            self.engine.sip.respond(txn, make_response(request, 404, to_tag=_token()))
            log.info("call from a trunk to an unknown number", trunk=trunk.id, number=uri.user_unescaped)
            return
        tenant = snapshot.tenants.get(number.tenant_id)
        if tenant is None:  # the snapshot is behind the number's assignment: answer, don't leave it retrying
            self.engine.sip.respond(txn, make_response(request, 404, to_tag=_token()))
            return
        party = ev.Party(number=caller_e164, display_name=display, external=True,
                         uri_user=caller_user if caller_e164 == caller_number else None)
        call = self.engine._open_call(txn, request, peer, tenant_id=tenant.id, party=party, domain=tenant.domain,
                               dialed=number.number, direction=ev.Direction.INBOUND,
                               session_expires=None, srtp_policy=trunk.srtp)
        assert call.caller is not None
        if not await self.engine.trunks.acquire(trunk, call.id):
            await self.engine._refuse(call, 503, "trunk_busy")
            return
        call.caller.trunk_id = trunk.id
        if call.ended:  # cancelled while the slot was taken: no leg release will come for it
            self.engine._release(call.caller)
            return
        self.engine.publish(ev.CallRouted, call, destination_class="inbound", number=caller_e164, did=number.number,
                     trunk_id=trunk.id)
        if tenant.suspended:
            await self._announce_and_refuse(call, "service_suspended", 403, "tenant_suspended")
            return
        office = snapshot.offices.get(number.office_id) if number.office_id else None
        zone = (office.timezone if office and office.timezone else None) or tenant.timezone
        kind, destination = schedule.resolve(number.kind, number.destination, now, zone)
        log.info("inbound call", call=call.id, tenant=tenant.id, did=number.number, caller=caller_e164,
                 destination=kind, trunk=trunk.id)
        if await ring_owner_first(self.engine, call, kind, destination, caller=caller_e164):
            return
        await self.engine._to_destination(call, stored(kind, destination), now, from_number=caller_e164)

    async def _invite_from_pbx(self, txn: ServerTransaction, request: Request, peer: Peer, trunk: TrunkInfo,
                               snapshot: PstnSnapshot, party: ev.Party, now: float) -> None:
        """An office PBX joined as a trunk: its users call our extensions, or out through our carriers."""
        assert trunk.tenant_id is not None and self.engine.trunks is not None
        tenant = snapshot.tenants.get(trunk.tenant_id)
        uri = request.uri
        assert isinstance(uri, SipUri) and tenant is not None
        dialed = uri.user_unescaped or ""
        caller_number = party.number
        access = split_dialed_access(dialed)
        if access is not None:
            # <access number>*<PIN>*<destination> from the office PBX: the access service, keys typed ahead
            number = snapshot.number(_e164(access[0]) or "")
            if number is not None and number.tenant_id == tenant.id and number.kind == "access":
                call = self.engine._open_call(txn, request, peer, tenant_id=tenant.id, party=party, domain=tenant.domain,
                                       dialed=number.number, direction=ev.Direction.INBOUND, session_expires=None,
                                       srtp_policy=trunk.srtp)
                if not await self.engine.trunks.acquire(trunk, call.id):
                    await self.engine._refuse(call, 503, "trunk_busy")
                    return
                assert call.caller is not None
                call.caller.trunk_id = trunk.id
                if call.ended:
                    self.engine._release(call.caller)
                    return
                await self.engine.access_numbers.answer(call, number.destination, caller_e164=caller_number,
                                          language=tenant.locale, source_address=peer.host,
                                          dialed=(access[1], access[2]))
                return
        callee_ext = await self.engine.directory.extension(tenant.id, dialed) if dialed else None
        call = self.engine._open_call(txn, request, peer, tenant_id=tenant.id, party=party, domain=tenant.domain,
                               dialed=dialed, session_expires=None, srtp_policy=trunk.srtp,
                               direction=ev.Direction.INTERNAL if callee_ext else ev.Direction.OUTBOUND)
        assert call.caller is not None
        if not await self.engine.trunks.acquire(trunk, call.id):
            await self.engine._refuse(call, 503, "trunk_busy")
            return
        call.caller.trunk_id = trunk.id
        if call.ended:
            self.engine._release(call.caller)
            return
        if callee_ext is not None:
            await self.engine._ring_extensions(call, [callee_ext], now, from_number=caller_number)
            return
        await self.route(call, dialed, CallerProfile(tenant_id=tenant.id, office_id=trunk.office_id))

    # -- out to a trunk ---------------------------------------------------------------------------------
    async def route(self, call: Call, dialed: str, profile: CallerProfile, *,
                             forwarded: bool = False, billed: bool = False) -> None:
        """``forwarded``: a number's outside destination (no permission check, the caller's number shown);
        ``billed``: the call is billed to ``profile`` (an extension's call forwarding), not to its caller."""
        assert self.engine.trunks is not None and call.caller is not None
        snapshot = self.engine.trunks.snapshot
        now = time.time()
        try:
            checked = check_outside(snapshot, profile, dialed, forwarded=forwarded)
        except OutsideRefused as refused:
            if refused.cause != "not_allowed":
                await self.engine._refuse(call, refused.status, refused.cause)
                return
            log.warning("outside call refused by calling permissions", call=call.id, tenant=call.tenant_id,
                        caller=call.caller.party.number, number=dialed, detail=str(refused))
            await self._announce_and_refuse(call, "not_allowed", 403, "not_allowed")
            return
        dest, rules = checked.dest, checked.rules
        tenant = snapshot.tenants.get(profile.tenant_id)
        emergency = dest.klass is DestinationClass.EMERGENCY
        sell = None if emergency else snapshot.sell_rate(profile.tenant_id, dest.number)
        zone = tenant.timezone if tenant else "UTC"
        price = None
        period = None
        if sell is not None:
            period, price = sell[0].price_at(sell[1], now, zone)
        elif tenant is not None and tenant.tariff is not None and not emergency:
            log.warning("no rate for an outside number: refused", call=call.id, number=dest.number)
            await self._announce_and_refuse(call, "not_allowed", 403, "no_rate")
            return
        if sell is not None and price is not None and rules.limits and not emergency:
            try:
                reservation = await self.spend_ledger().reserve(call.id, profile, zone, rules.limits, sell[1], price)
            except StoreUnavailable:
                # the month's spend cannot be known: refuse cleanly, the phone may retry (issue 14)
                await self.engine._refuse(call, 503, "ledger_unavailable", "Spending ledger unavailable")
                return
            if call.ended:  # the caller gave up meanwhile: _finish has run, free what was just held
                self.spend_ledger().settle(call.id)
                return
            call.budgets = reservation.budgets
            verdict = reservation.verdict
            if not verdict.allowed:
                log.warning("spending limit reached: outside call refused", call=call.id, tenant=call.tenant_id,
                            levels=[b.level.value for b in verdict.exceeded])
                await self._announce_and_refuse(call, "limit_reached", 403, "limit_reached")
                return
            call.max_duration = verdict.max_duration
        trunks = [t for t in snapshot.outbound_trunks(profile.tenant_id, dest.number, now)]
        if not trunks:
            await self.engine._refuse(call, 503, "no_trunk")
            return
        call.outside_number = dest.number
        call.caller_id = call.caller.party.number if forwarded else (rules.caller_id or call.caller.party.number)
        rate = sell[1] if sell is not None else None
        # published with each trunk tried (failover): the CDR keeps the last, the one that carried the call
        billed = billed or call.access is not None
        call.route_fields = dict(
            employee_id=profile.employee_id if billed else None,
            office_id=profile.office_id if billed else None,
            department_id=profile.department_id if billed else None,
            destination_class=dest.klass.value, number=dest.number, rate_prefix=rate.prefix if rate else None,
            rate_destination=rate.destination if rate else None,
            price_per_minute=str(price) if price is not None else None,
            connection_fee=str(rate.connection_fee) if rate else "0",
            increment=str(rate.increment) if rate else "60/60", minimum=rate.minimum if rate else 0,
            currency=sell[0].currency if sell else None, period=period)
        if not await self.engine._negotiate_caller(call):
            return
        log.info("outside call", call=call.id, tenant=call.tenant_id, number=dest.number, klass=dest.klass.value,
                 trunks=[t.id for t in trunks], caller_id=call.caller_id)
        call.next_trunks = trunks
        await self.next_trunk(call)

    async def next_trunk(self, call: Call) -> None:
        """Place the call on the next trunk that has room; 503 when none is left."""
        assert self.engine.trunks is not None and call.caller is not None and call.outside_number is not None
        while call.next_trunks:
            trunk: TrunkInfo = call.next_trunks.pop(0)
            if self.engine.srtp_mode(trunk.srtp) == "required" and trunk.transport != "tls":
                log.info("trunk requires SRTP, which needs TLS: next one", call=call.id, trunk=trunk.id)
                continue
            if not await self.engine.trunks.acquire(trunk, call.id):
                log.info("trunk at its call limit: next one", call=call.id, trunk=trunk.id)
                continue
            if call.ended:  # cancelled while the slot was taken
                self.engine.trunks.release(trunk.id)
                return
            try:
                endpoints = await self.engine._endpoints(call, 1)
            except BaseException:
                self.engine.trunks.release(trunk.id)  # no leg holds this slot yet
                raise
            if endpoints is None:
                self.engine.trunks.release(trunk.id)
                return
            number = trunk.format_number(call.outside_number)
            caller_id = trunk.format_number(call.caller_id or "")
            display = call.caller.party.display_name or caller_id
            target = f"sip:{escape_user(number)}@{uri_host(trunk.host)}:{trunk.port}" + ("" if trunk.transport == "udp"
                                                                   else f";transport={trunk.transport}")
            party = ev.Party(number=call.outside_number, external=True)
            self.engine.publish(ev.CallRouted, call, trunk_id=trunk.id, **call.route_fields)
            self.engine._place_leg(
                call, party, trunk_peer(trunk), endpoints[0], self.engine._offer_codecs(call), request_uri=target,
                to_header=name_addr(None, number, trunk.domain),
                from_header=name_addr(display, caller_id, trunk.domain), contact=target,
                user_agent=trunk.name,
                extra_headers=[("P-Asserted-Identity", name_addr(None, caller_id, trunk.domain))],
                handler=self.on_trunk_event, trunk_id=trunk.id, srtp_policy=trunk.srtp)
            if call.no_answer is None and not call.ended:
                call.no_answer = asyncio.get_running_loop().call_later(self.engine.no_answer_timeout, self.engine._no_answer, call)
            return
        await self.engine._refuse(call, 503, "no_trunk")

    def on_trunk_event(self, leg: Leg, event: object) -> None:
        """A carrier's leg: answer its digest challenge once (RFC 3261 §22.2), else as any callee's leg."""
        if isinstance(event, Challenged) and self.engine.trunks is not None and leg.invite is not None \
                and leg.sip is not None and not leg.cancelled:
            trunk = self.engine.trunks.snapshot.trunks.get(leg.trunk_id or -1)
            if trunk is not None and trunk.username and trunk.password and not leg.auth_answered:
                retry = authorize_request(leg.invite, event.response, trunk.auth_username or trunk.username,
                                          trunk.password, _token, {})
                if retry is not None:
                    leg.auth_answered = True
                    credentials = [(name, value) for name, value in retry.headers
                                   if name.lower() in ("authorization", "proxy-authorization")]
                    leg.sip.authenticate(credentials, self.engine.clock())  # the engine drives the leg after this event
                    return
            log.warning("trunk refused our credentials", call=leg.call.id, trunk=leg.trunk_id)
        self.engine._on_fork_event(leg, event)

    def failover(self, leg: Leg, status: int) -> bool:
        """After a trunk failed with ``status``: try the next one? (True: it is being tried.)"""
        call = leg.call
        if leg.cancelled or call.ended or call.callee is not None or not call.next_trunks:
            return False
        if status not in FAILOVER_STATUSES:
            return False
        log.info("trunk failed: trying the next one", call=call.id, trunk=leg.trunk_id, status=status)
        if call.no_answer is not None:
            call.no_answer.cancel()
            call.no_answer = None
        self.engine.step(call, self.next_trunk(call))
        return True

    # -- announcements, limits ---------------------------------------------------------------------------
    async def _announce_and_refuse(self, call: Call, prompt: str, status: int, cause: str) -> None:
        """Tell the caller why (a prompt as early media, RFC 3960 style 183) and then refuse the call."""
        if call.access is not None:
            await self.engine._refuse(call, status, cause)  # the access-number dialogue says why itself
            return
        caller = call.caller
        tenant = self.engine.trunks.snapshot.tenants.get(call.tenant_id) if self.engine.trunks else None
        lang = tenant.locale if tenant is not None else self.engine.prompt_language
        if caller is not None and caller.invite is not None and caller.invite.body \
                and await self.engine._negotiate_caller(call) and caller.endpoint is not None:
            done = asyncio.get_running_loop().create_future()
            def played(_event: object) -> None:
                if not done.done():
                    done.set_result(None)

            await self.engine.media.play(caller.endpoint, Prompt(path=prompt_path(prompt, lang)), on_finished=played)
            self.engine._provisional(call, 183, call.caller_answer_sdp)
            try:
                await asyncio.wait_for(done, timeout=10)
            except TimeoutError:
                pass
        await self.engine._refuse(call, status, cause)

    def spend_ledger(self) -> SpendLedger:
        """The spending ledger: the composition root's (shared by the nodes of a cluster), else this
        process's own on the directory's database."""
        if self.engine.ledger is None:
            self.engine.ledger = LocalHolds(self.engine.directory.db)
        return self.engine.ledger

    def arm_limit(self, call: Call) -> None:
        """A call with a spending limit: a warning tone before the limit, then the call is cut."""
        if call.max_duration is None:
            return
        loop = asyncio.get_running_loop()
        warn_at = max(0, call.max_duration - WARNING_SECONDS)
        call.limit_timers.append(loop.call_later(warn_at, lambda: self.engine.step(call, self._warning_tone(call))))
        # billing rounds a started second up: cut a little early so the call never costs more than is left
        call.limit_timers.append(loop.call_later(max(0.5, call.max_duration - CUT_MARGIN), self._limit_reached, call))

    async def _warning_tone(self, call: Call) -> None:
        caller = call.caller
        if call.ended or caller is None or caller.endpoint is None:
            return
        await self.engine.media.play(caller.endpoint, WARNING_TONE)
        # a timer, not a sleep: the call's other steps (a hold, a transfer) must not wait behind the tone
        call.limit_timers.append(asyncio.get_running_loop().call_later(
            1.2, lambda: self.engine.step(call, self._warning_tone_over(call))))

    async def _warning_tone_over(self, call: Call) -> None:
        caller = call.caller
        if caller is not None and caller.endpoint is not None:
            await self.engine.media.stop_play(caller.endpoint)

    def publish_crossings(self, call: Call, ended_at: float) -> None:
        """Warning and limit thresholds this call's cost took its levels across: one event each."""
        if not call.budgets or call.answered_at is None or not call.route_fields.get("price_per_minute"):
            return
        route = ev.CallRouted(tenant_id=call.tenant_id, call_id=call.id, at=ended_at, **call.route_fields)
        cost = rate(route, whole_seconds(ended_at - call.answered_at)).cost  # as the CDR will bill it
        for crossing in crossings(call.budgets, cost):
            log.warning("spending threshold crossed", call=call.id, tenant=call.tenant_id, level=crossing.level.value,
                        owner=crossing.owner_id, threshold=crossing.threshold.value, spent=str(crossing.spent),
                        limit=str(crossing.limit))
            self.engine.publish(ev.SpendingThresholdCrossed, call, level=crossing.level.value, owner_id=crossing.owner_id,
                         threshold=crossing.threshold.value, limit=str(crossing.limit), spent=str(crossing.spent))

    def _limit_reached(self, call: Call) -> None:
        log.info("spending limit reached: call cut", call=call.id, tenant=call.tenant_id)
        self.engine._hangup(call, None, ev.HangupSide.SYSTEM, "limit_reached")
