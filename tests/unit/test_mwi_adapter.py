"""The MWI adapter (telephony/mwi.py) with the call-engine harness's fake SIP stack and directory: a
SUBSCRIBE is answered 200 and followed by a NOTIFY with the summary; another event is 489; someone else's
mailbox 403; a refresh of an unknown subscription 481; a change notifies the subscriber and, unasked,
the registered devices that do not subscribe; Expires 0 ends it with a terminated NOTIFY; 481 to a
NOTIFY forgets the subscription."""

from __future__ import annotations

import asyncio
from typing import Any

from callengine_harness import DOMAIN, TENANT, FakeAuth, FakeClientTxn, FakeDirectory, FakeServerTxn, FakeSip

from zvonok.sip.message import Headers, Request, make_response
from zvonok.sip.message_summary import parse_summary
from zvonok.sip.peer import Peer
from zvonok.sip.transaction import ResponseReceived
from zvonok.telephony.directory import ExtensionInfo
from zvonok.telephony.location import Binding, Location
from zvonok.telephony.mwi import Mwi

PHONE = Peer(transport="udp", host="198.51.100.7", port=5062)
DESK = Peer(transport="udp", host="198.51.100.8", port=5060)


def subscribe(number: str, *, event: str = "message-summary", expires: int | None = 600, to_tag: str = "",
              call_id: str = "sub-1", cseq: int = 1, user: str | None = None) -> Request:
    headers = Headers()
    for name, value in (("Via", f"SIP/2.0/UDP {PHONE.host}:{PHONE.port};branch=z9hG4bK{call_id}{cseq}"),
                        ("Max-Forwards", "70"), ("From", f"<sip:{number}@{DOMAIN}>;tag=phone"),
                        ("To", f"<sip:{user or number}@{DOMAIN}>" + (f";tag={to_tag}" if to_tag else "")),
                        ("Call-ID", call_id), ("CSeq", f"{cseq} SUBSCRIBE"), ("Event", event),
                        ("Contact", f"<sip:{number}@{PHONE.host}:{PHONE.port}>")):
        headers.add(name, value)
    if expires is not None:
        headers.add("Expires", str(expires))
    return Request("SUBSCRIBE", f"sip:{user or number}@{DOMAIN}", headers)


class Setup:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.sip = FakeSip()
        self.directory = FakeDirectory()
        self.directory.extensions[(TENANT, "101")] = ExtensionInfo(
            tenant_id=TENANT, extension_id=11, number="101", display_name="A", employee_id=None, office_id=None,
            department_id=None, enabled=True)
        self.directory.extensions[(TENANT, "102")] = ExtensionInfo(
            tenant_id=TENANT, extension_id=12, number="102", display_name="B", employee_id=None, office_id=None,
            department_id=None, enabled=True)
        self.location = Location()
        self.counts: dict[int, tuple[int, int] | None] = {11: (0, 2), 12: None}

        async def counts(tenant_id: int, extension_id: int) -> tuple[int, int] | None:
            return self.counts.get(extension_id)

        self.mwi = Mwi(sip=self.sip, auth=FakeAuth(self.directory), directory=self.directory,  # type: ignore[arg-type]
                       location=self.location, counts=counts)

    def run(self, coro: Any) -> Any:
        result = self.loop.run_until_complete(coro)
        self.loop.run_until_complete(asyncio.sleep(0.01))
        return result

    def send(self, request: Request) -> FakeServerTxn:
        txn = FakeServerTxn(request, PHONE)

        async def go() -> None:
            self.mwi.on_subscribe(txn, request, PHONE)  # type: ignore[arg-type]
        self.run(go())
        return txn

    def notifies(self) -> list[FakeClientTxn]:
        return self.sip.requests("NOTIFY")


def test_subscribe_notify_change_refresh_and_unsubscribe() -> None:
    s = Setup()
    try:
        txn = s.send(subscribe("101"))
        (ok,) = txn.responses
        assert ok.status == 200 and ok.headers.get("expires") == "600" and ok.to.tag
        (first,) = s.notifies()
        request = first.request
        assert first.peer == PHONE and request.uri_text == f"sip:101@{PHONE.host}:{PHONE.port}"
        assert request.headers.get("event") == "message-summary"
        assert request.headers.get("subscription-state") or "".startswith("active;expires=")
        assert request.headers.get("content-type") == "application/simple-message-summary"
        assert request.call_id == "sub-1" and request.to.tag == "phone" and request.from_.tag == ok.to.tag
        summary = parse_summary(request.body)
        assert (summary.waiting, summary.account) == (False, f"sip:101@{DOMAIN}")
        assert (summary.classes["Voice-Message"].new, summary.classes["Voice-Message"].old) == (0, 2)
        # a message is left: the subscriber hears "yes"; a second device of 101 that does not subscribe
        # gets the same summary unasked, out of any dialog
        s.location.put(Binding(tenant_id=TENANT, extension_id=11, aor=f"101@{DOMAIN}",
                               contact=f"sip:101@{DESK.host}:{DESK.port}", expires_at=4e9, source=str(DESK)))
        s.location.put(Binding(tenant_id=TENANT, extension_id=11, aor=f"101@{DOMAIN}",
                               contact=f"sip:101@{PHONE.host}:{PHONE.port}", expires_at=4e9, source=str(PHONE)))
        s.counts[11] = (1, 2)
        s.run(s.mwi.mailbox_changed(TENANT, 11))
        in_dialog, unasked = s.notifies()[1:]
        assert in_dialog.peer == PHONE and in_dialog.request.cseq.number == first.request.cseq.number + 1
        assert parse_summary(in_dialog.request.body).waiting is True
        assert unasked.peer == DESK and unasked.request.uri_text == f"sip:101@{DESK.host}:{DESK.port}"
        assert unasked.request.to.tag is None and unasked.request.headers.get("event") == "message-summary"
        assert parse_summary(unasked.request.body).account == f"sip:101@{DOMAIN}"
        assert len(s.notifies()) == 3  # the subscribed phone got no unsolicited copy
        # a refresh in the dialog, then Expires: 0
        refresh = s.send(subscribe("101", to_tag=ok.to.tag or "", cseq=2, expires=1200))
        assert refresh.responses[0].status == 200 and refresh.responses[0].headers.get("expires") == "1200"
        end = s.send(subscribe("101", to_tag=ok.to.tag or "", cseq=3, expires=0))
        assert end.responses[0].status == 200
        last = s.notifies()[-1].request
        assert last.headers.get("subscription-state") or "".startswith("terminated")
        assert len(s.mwi.subscriptions) == 0
    finally:
        s.loop.close()


def test_refusals() -> None:
    s = Setup()
    try:
        r = s.send(subscribe("101", event="presence"))
        assert r.responses[0].status == 489 and r.responses[0].headers.get("allow-events") == "message-summary"
        assert s.send(subscribe("101", user="102")).responses[0].status == 403  # another's mailbox
        assert s.send(subscribe("101", to_tag="nope", cseq=2)).responses[0].status == 481
        assert s.send(subscribe("999")).responses[0].status == 403  # not an extension
        assert s.notifies() == []
        # an extension without a mailbox: a subscriber is told "no", unregistered devices nothing unasked
        s.location.put(Binding(tenant_id=TENANT, extension_id=12, aor=f"102@{DOMAIN}",
                               contact=f"sip:102@{DESK.host}:{DESK.port}", expires_at=4e9, source=str(DESK)))
        s.run(s.mwi.mailbox_changed(TENANT, 12))
        assert s.notifies() == []
    finally:
        s.loop.close()


def test_481_to_a_notify_forgets_the_subscription() -> None:
    s = Setup()
    try:
        s.send(subscribe("101"))
        (notify,) = s.notifies()
        assert len(s.mwi.subscriptions) == 1
        notify.handler(ResponseReceived(transaction=notify, response=make_response(notify.request, 481),  # type: ignore[arg-type]
                                        peer=PHONE))
        assert len(s.mwi.subscriptions) == 0
    finally:
        s.loop.close()
